import Glibc

/// State guarded by a POSIX mutex.
///
/// Used instead of `Synchronization.Mutex` because ThreadSanitizer
/// intercepts `pthread_mutex_lock` but cannot see inside the standard
/// library's futex-based lock, which made every locked access look like a
/// race under `swift test --sanitize=thread`. The package's integration
/// modules use it for the same reason.
///
/// Like `Mutex`, it is `Sendable` only when `State` is, and `withLock` takes
/// and gives back values as `sending`, so no non-`Sendable` value escapes
/// the lock still shared with the state.
package final class Locked<State> {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// The state, behind a pointer so `withLock` can lend it `inout
    /// sending` the way `Mutex` does.
    private let state: UnsafeMutablePointer<State>

    package init(_ state: sending State) {
        self.state = .allocate(capacity: 1)
        self.state.initialize(to: state)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
    }

    /// Runs `body` with exclusive access to the state.
    package func withLock<Result, Failure: Error>(
        _ body: (inout sending State) throws(Failure) -> sending Result
    ) throws(Failure) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        // Moved out and back (a bitwise copy, nothing retained), through a
        // local the region checker leaves alone: it cannot see that the lock
        // makes the state exclusive to this call, which is what makes
        // lending it as `sending` sound.
        nonisolated(unsafe) var value = state.move()
        defer { state.initialize(to: value) }
        return try body(&value)
    }
}

/// Why `@unchecked Sendable` is sound: `state` is read and written only
/// inside `withLock`, between `pthread_mutex_lock` and
/// `pthread_mutex_unlock`, and it is itself `Sendable`.
extension Locked: @unchecked Sendable where State: Sendable {}
