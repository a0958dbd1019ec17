import CUring
import Glibc
import Synchronization
import SystemPackage

/// The deadline in force for the current task, set by ``withDeadline(_:_:)``.
enum DeadlineScope {
    @TaskLocal static var current: RingClock.Instant?

    /// How many `withDeadline` scopes are open in the process. While none
    /// is, operations skip the task-local lookup (a few percent of an
    /// awaited NOP).
    static let open = Atomic<Int>(0)

    /// The current task's deadline, if any scope is open anywhere.
    static var inForce: RingClock.Instant? {
        open.load(ordering: .relaxed) == 0 ? nil : current
    }
}

/// Runs `body` with a deadline on every ring operation it awaits.
///
/// Each single-shot operation started inside `body`, on any ring and in any
/// child task, is linked to a kernel timer (`IORING_OP_LINK_TIMEOUT`) that
/// fires at `deadline`. If the timer fires first, the kernel cancels the
/// operation, the operation's buffer is the caller's again, and the call
/// throws ``UringError`` of kind ``UringError/Kind/timedOut``. An operation
/// that completes first is unaffected. An operation that would start after
/// the deadline fails at once, without reaching the kernel.
///
/// Deadlines nest: an inner deadline later than an outer one has no effect.
///
/// Multishot sequences (received chunks, accepted connections, arrivals,
/// readiness, ticks) are bounded too: an element already waiting is
/// returned, and a wait for the next one that outlasts the deadline ends the
/// sequence with ``UringError/Kind/timedOut``, stopping its request in the
/// kernel. Ring messages (``RingActor/messages``) are not bounded.
///
/// ```swift
/// let n = try await withDeadline(.now + .seconds(2)) {
///     try await connection.receive(into: &buffer)
/// }
/// ```
public nonisolated(nonsending) func withDeadline<Result>(
    _ deadline: RingClock.Instant,
    _ body: nonisolated(nonsending) () async throws -> Result
) async throws -> Result {
    let effective = DeadlineScope.current.map { min($0, deadline) } ?? deadline
    // Opened before the scope's first operation can read it, on this task;
    // child tasks start after this store too.
    DeadlineScope.open.add(1, ordering: .relaxed)
    defer { DeadlineScope.open.subtract(1, ordering: .relaxed) }
    return try await DeadlineScope.$current.withValue(effective) {
        try await body()
    }
}

/// Runs `body` with a deadline `duration` from now; see ``withDeadline(_:_:)``.
public nonisolated(nonsending) func withTimeout<Result>(
    _ duration: Duration,
    _ body: nonisolated(nonsending) () async throws -> Result
) async throws -> Result {
    try await withDeadline(.now + duration, body)
}

extension RingCore {
    /// Performs one request linked to a timeout at `deadline`; see
    /// ``withDeadline(_:_:)``.
    nonisolated(nonsending) func perform(
        _ operation: UringOperation, path: FilePath?, address: SocketAddress?, keepAlive: AnyObject?,
        deadline: RingClock.Instant, _ prepare: (inout io_uring_sqe) -> Void
    ) async throws -> Int32 {
        try admit(operation, path: path, address: address)
        guard isSupported(.linkTimeout) else { throw UringError.unsupported(.linkTimeout, path: path).about(address) }
        guard submissionEntries >= 2 else {
            throw UringError.invalid(
                operation, path: path, "a deadline needs a ring of at least 2 entries (this one has 1)"
            ).about(address)
        }
        guard deadline > .now else { throw UringError.timedOut(operation, path: path).about(address) }
        let time = KernelTimespec(absolute: deadline)
        let slots = submitChain(2) { step, request in
            if step == 0 {
                prepare(&request)
                return keepAlive
            }
            io_uring_prep_link_timeout(&request, time.pointer, CU_IORING_TIMEOUT_ABS)
            return time
        }
        let completion = await completion(of: slots[0])
        let timer = await self.completion(of: slots[1])
        if completion.result == -ECANCELED && timer.result == -ETIME && !Task.isCancelled {
            throw UringError.timedOut(operation, path: path).about(address)
        }
        return try check(completion, operation, path: path, address: address)
    }
}
