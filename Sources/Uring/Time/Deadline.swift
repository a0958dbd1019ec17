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
public nonisolated(nonsending) func withDeadline<Result: ~Copyable>(
    _ deadline: RingClock.Instant,
    _ body: nonisolated(nonsending) () async throws -> Result
) async throws -> Result {
    let effective = TaskDeadline.current.map { min($0, deadline) } ?? deadline
    // Opened before the scope's first operation can read it, on this task;
    // child tasks start after this store too.
    TaskDeadline.open.add(1, ordering: .relaxed)
    defer { TaskDeadline.open.subtract(1, ordering: .relaxed) }
    // Through an optional, as the task-local scope hands back only copyable
    // values, and a noncopyable result (a `File`, a connection) must come
    // out whole.
    var result: Result? = nil
    try await TaskDeadline.$current.withValue(effective) {
        result = try await body()
    }
    guard let value = result.take() else { preconditionFailure("withValue returned without running its body") }
    return value
}

/// Runs `body` with a deadline `duration` from now; see ``withDeadline(_:_:)``.
///
/// The result may be noncopyable, so an operation that makes a descriptor
/// hands it back:
///
/// ```swift
/// let connection = try await withTimeout(.seconds(5)) {
///     try await StreamConnection.connect(to: address, on: ring)
/// }
/// ```
public nonisolated(nonsending) func withTimeout<Result: ~Copyable>(
    _ duration: Duration,
    _ body: nonisolated(nonsending) () async throws -> Result
) async throws -> Result {
    try await withDeadline(.now + duration, body)
}
