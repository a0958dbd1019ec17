/// Runs `body` on Swift's global concurrent executor, never on a ring's
/// thread, and comes back to the caller's executor: for the few system
/// calls io_uring has no operation for that can wait (listing a directory),
/// which would otherwise stall every task on the ring.
nonisolated(nonsending) func offRingThread<Value: Sendable>(
    _ body: @escaping @Sendable () throws -> Value
) async throws -> Value {
    // The preference is what moves the call: a nonisolated function in a
    // task that prefers a ring's executor would run on that ring.
    try await withTaskExecutorPreference(globalConcurrentExecutor) {
        try await runConcurrently(body)
    }
}

@concurrent
private func runConcurrently<Value: Sendable>(_ body: @Sendable () throws -> Value) async throws -> Value {
    try body()
}
