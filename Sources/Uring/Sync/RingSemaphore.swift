import CUring
import Glibc
import Synchronization

/// A counting semaphore on a futex: tasks wait through a ring without
/// holding a thread (`IORING_OP_FUTEX_WAIT`, kernel 6.7+), and plain threads
/// outside any ring can wait and signal on the same semaphore.
///
/// Use it to bound concurrency (a semaphore of N), as an async lock (a
/// semaphore of 1), or to hand work between a C thread and Swift tasks.
///
/// ```swift
/// let slots = RingSemaphore(value: 4)
/// try await slots.wait(on: ring)      // suspends; no thread blocks
/// defer { slots.signal() }            // any thread, any context
/// ```
///
/// The count lives in one 32-bit word that the kernel watches; waiters
/// sleep in the kernel's futex queue, so a waiter inside a ring and a
/// thread blocked in ``waitBlocking()`` are woken alike.
public final class RingSemaphore: @unchecked Sendable {
    // `@unchecked Sendable`: `word` is touched only through atomic C
    // operations and by the kernel's futex code; `waiters` is an atomic.
    /// The free permits. Its address is what the kernel's futex queue keys on.
    private let word: UnsafeMutablePointer<UInt32>
    /// Waiters that may be asleep, so `signal()` skips the wake-up when none.
    private let waiters = Atomic<Int>(0)

    /// A semaphore with `value` permits (at least 0).
    public init(value: Int) {
        word = .allocate(capacity: 1)
        word.initialize(to: UInt32(clamping: max(0, value)))
    }

    deinit { word.deallocate() }

    /// The permits free right now (for diagnostics; it may change at once).
    public var availablePermits: Int { Int(cu_atomic_load32(word)) }

    /// Takes a permit if one is free, without waiting.
    public func tryWait() -> Bool {
        var value = cu_atomic_load32(word)
        while value > 0 {
            if cu_atomic_cas32(word, value, value - 1) != 0 { return true }
            value = cu_atomic_load32(word)
        }
        return false
    }

    /// Takes a permit, suspending the task through `ring` until one is free.
    ///
    /// - Throws: `CancellationError` if the task is cancelled while waiting
    ///   (no permit is taken); ``UringError`` of kind
    ///   ``UringError/Kind/unsupported`` on kernels without futex requests.
    public func wait(on ring: RingActor) async throws {
        if tryWait() { return }
        let core = ring.core
        guard core.isSupported(.futexWait) else { throw UringError.unsupported(.futexWait) }
        waiters.add(1, ordering: .sequentiallyConsistent)
        defer { waiters.subtract(1, ordering: .sequentiallyConsistent) }
        while true {
            if tryWait() { return }
            do {
                // Sleeps only while the word is still 0: a signal between the
                // check above and the kernel's own check is not lost.
                _ = try await core.perform(.futexWait, keepAlive: self, honorsDeadline: true) {
                    cu_prep_futex_wait(&$0, word, 0)
                }
            } catch let error as UringError where error.kind == .system && error.errno == .resourceTemporarilyUnavailable {
                continue  // EAGAIN: the word changed before the kernel slept
            } catch {
                // This waiter may have taken a wake-up meant for a permit it
                // will not use now: pass it on.
                if cu_atomic_load32(word) > 0 { _ = cu_futex_wake(word, 1) }
                throw error
            }
        }
    }

    /// Takes a permit, blocking the calling thread until one is free. For
    /// threads outside Swift Concurrency; never call it from a task.
    public func waitBlocking() {
        if tryWait() { return }
        waiters.add(1, ordering: .sequentiallyConsistent)
        defer { waiters.subtract(1, ordering: .sequentiallyConsistent) }
        while !tryWait() {
            _ = cu_futex_wait_blocking(word, 0)
        }
    }

    /// Returns a permit and wakes one waiter, from any thread or task
    /// (`futex(2)` wake; no ring needed).
    public func signal() {
        _ = cu_atomic_add32(word, 1)
        if waiters.load(ordering: .sequentiallyConsistent) > 0 { _ = cu_futex_wake(word, 1) }
    }

    /// Returns a permit and wakes one waiter through `ring`
    /// (`IORING_OP_FUTEX_WAKE`), which costs the calling task no system call.
    ///
    /// - Returns: How many waiters were woken (0 or 1).
    @discardableResult
    public func signal(on ring: RingActor) async throws -> Int {
        _ = cu_atomic_add32(word, 1)
        guard waiters.load(ordering: .sequentiallyConsistent) > 0 else { return 0 }
        guard ring.core.isSupported(.futexWake) else { return Int(cu_futex_wake(word, 1)) }
        do {
            return Int(try await ring.core.perform(.futexWake, keepAlive: self, honorsDeadline: false) {
                cu_prep_futex_wake(&$0, word, 1)
            })
        } catch {
            // The permit is already back, so the wake-up must happen even when
            // this task was cancelled; an extra wake-up is harmless (the
            // waiter checks the count again).
            return Int(max(0, cu_futex_wake(word, 1)))
        }
    }
}
