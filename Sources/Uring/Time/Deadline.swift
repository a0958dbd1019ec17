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
    let effective = TaskDeadline.current.map { min($0, deadline) } ?? deadline
    // Opened before the scope's first operation can read it, on this task;
    // child tasks start after this store too.
    TaskDeadline.open.add(1, ordering: .relaxed)
    defer { TaskDeadline.open.subtract(1, ordering: .relaxed) }
    return try await TaskDeadline.$current.withValue(effective) {
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
