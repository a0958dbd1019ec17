import CUring
import Glibc
import Synchronization

/// A counting semaphore on a futex: tasks wait through a ring without
/// holding a thread (`IORING_OP_FUTEX_WAIT`, kernel 6.7+; a polled eventfd
/// before), and plain threads
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
///
/// Before Linux 6.7, which has no futex requests, a task waits by polling
/// an eventfd of the semaphore through the ring, and every signal that may
/// have a task waiting writes to it; still no thread blocks.
public final class RingSemaphore: @unchecked Sendable {
    // `@unchecked Sendable`: `word` is touched only through atomic C
    // operations and by the kernel's futex code; `waiters` and
    // `pollingWaiters` are atomics; `wakeFD` is set once, under its lock.
    /// The free permits. Its address is what the kernel's futex queue keys on.
    private let word: UnsafeMutablePointer<UInt32>
    /// Waiters that may be asleep, so `signal()` skips the wake-up when none.
    private let waiters = Atomic<Int>(0)
    /// Tasks that wait by polling `wakeFD` (kernels without futex requests).
    private let pollingWaiters = Atomic<Int>(0)
    /// The eventfd those tasks poll, made on first use; -1 until then.
    private let wakeFD = Locked<Int32>(-1)

    /// A semaphore with `value` permits (at least 0).
    public init(value: Int) {
        word = .allocate(capacity: 1)
        word.initialize(to: UInt32(clamping: max(0, value)))
    }

    deinit {
        let fd = wakeFD.withLock { $0 }
        if fd >= 0 { close(fd) }
        word.deallocate()
    }

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
    ///   (no permit is taken).
    public func wait(on ring: RingActor) async throws {
        if tryWait() { return }
        let core = ring.core
        guard core.isSupported(.futexWait) else { return try await waitPolling(on: core) }
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

    /// The wait before futex requests: poll the eventfd through the ring
    /// until a permit is taken. A signal after this task's last look at the
    /// count sees it counted in `pollingWaiters` and adds a unit to the
    /// eventfd, so the poll ends; every waiter looks at the count again
    /// before it polls. Units outlive a waiter that did not need them, which
    /// costs a later waiter a spurious turn, never a lost wake-up.
    private func waitPolling(on core: RingCore) async throws {
        let fd = try wakeDescriptor()
        pollingWaiters.add(1, ordering: .sequentiallyConsistent)
        defer { pollingWaiters.subtract(1, ordering: .sequentiallyConsistent) }
        while true {
            if tryWait() { return }
            // The request keeps the semaphore, and so the eventfd, alive.
            _ = try await core.perform(.poll, keepAlive: self, honorsDeadline: true) {
                io_uring_prep_poll_add(&$0, fd, UInt32(POLLIN))
            }
            // Take one signal's unit (a semaphore-mode eventfd gives one per
            // read): units meant for other waiters stay, so a waiter that
            // polls after this one's read still finds them.
            var unit: UInt64 = 0
            _ = read(fd, &unit, 8)
        }
    }

    /// The eventfd polled by waiting tasks, made on first use.
    private func wakeDescriptor() throws(UringError) -> Int32 {
        try wakeFD.withLock { (fd: inout Int32) throws(UringError) -> Int32 in
            if fd < 0 {
                fd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE))
                if fd < 0 { throw .system(.poll, Glibc.errno) }
            }
            return fd
        }
    }

    /// Wakes every task polling the eventfd; they take permits in turn.
    private func wakePollingWaiters() {
        guard pollingWaiters.load(ordering: .sequentiallyConsistent) > 0 else { return }
        let fd = wakeFD.withLock { $0 }
        guard fd >= 0 else { return }
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
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
        wakePollingWaiters()
    }

    /// Returns a permit and wakes one waiter through `ring`
    /// (`IORING_OP_FUTEX_WAKE`), which costs the calling task no system call.
    ///
    /// - Returns: How many waiters were woken (0 or 1).
    @discardableResult
    public func signal(on ring: RingActor) async throws -> Int {
        _ = cu_atomic_add32(word, 1)
        wakePollingWaiters()
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
