/// A bound on how many connections a server handles at once: ``enter()``
/// waits (without blocking a thread) while all places are taken, and
/// ``leave()`` gives one back.
final class ConnectionGate: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: UnsafeContinuation<Void, any Error>
    }
    private struct State: Sendable {
        var free: Int
        var waiters = FIFO<Waiter>()
        var nextID: UInt64 = 0
    }
    private let state: Locked<State>

    init(places: Int) {
        state = Locked(State(free: places))
    }

    /// A server's gate, checking the bound the caller gave.
    convenience init(maximumConnections: Int, servingAt address: SocketAddress?) throws(UringError) {
        guard maximumConnections > 0 else {
            throw UringError.invalid(.accept, "maximumConnections \(maximumConnections) must be positive")
                .about(address)
        }
        self.init(places: maximumConnections)
    }

    /// Takes a place, waiting for one if none is free; throws
    /// `CancellationError` if the task is cancelled first.
    nonisolated(nonsending) func enter() async throws {
        let (entered, id) = state.withLock { state -> (Bool, UInt64) in
            if state.free > 0 {
                state.free -= 1
                return (true, 0)
            }
            state.nextID &+= 1
            return (false, state.nextID)
        }
        if entered { return }
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                // Decided under the lock: a cancellation that came before the
                // waiter is queued is seen here; one that comes after finds
                // the waiter in `onCancel`.
                let now: Result<Void, any Error>? = state.withLock { state in
                    if state.free > 0 {
                        state.free -= 1
                        return .success(())
                    }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                var kept = FIFO<Waiter>()
                var found: Waiter? = nil
                while let waiter = state.waiters.popFirst() {
                    if waiter.id == id { found = waiter } else { kept.append(waiter) }
                }
                state.waiters = kept
                return found
            }
            if let waiter { resumeAcrossThreads(waiter.continuation, with: .failure(CancellationError())) }
        }
    }

    /// Gives a place back: to the longest waiter, or to the free count.
    func leave() {
        let waiter = state.withLock { state -> Waiter? in
            if let waiter = state.waiters.popFirst() { return waiter }
            state.free += 1
            return nil
        }
        if let waiter { resumeAcrossThreads(waiter.continuation, with: .success(())) }
    }
}
