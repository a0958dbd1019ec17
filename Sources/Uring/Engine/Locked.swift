import Glibc

/// State guarded by a POSIX mutex.
///
/// Used instead of `Synchronization.Mutex` because ThreadSanitizer
/// intercepts `pthread_mutex_lock` but cannot see inside the standard
/// library's futex-based lock, which made every locked access look like a
/// race under `swift test --sanitize=thread`.
///
/// Why `@unchecked Sendable` is sound: `state` is read and written only inside
/// `withLock`, between `pthread_mutex_lock` and `pthread_mutex_unlock`.
final class Locked<State>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var state: State

    init(_ state: State) {
        self.state = state
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the state.
    func withLock<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}
