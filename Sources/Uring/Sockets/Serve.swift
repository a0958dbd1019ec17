import SystemPackage

extension StreamListener {
    /// Accepts connections and handles each in a child task of its own, with
    /// a bound on how many are handled at once: the safe shape for a server.
    ///
    /// ```swift
    /// let listener = try await StreamListener.bind(to: .loopback(port: 8080), on: ring)
    /// try await listener.serve(maximumConnections: 10_000) { connection in
    ///     for try await chunk in connection.received(idleTimeout: .seconds(30)) {
    ///         try await connection.sendAll(chunk)
    ///     }
    /// }
    /// ```
    ///
    /// What it guarantees:
    /// - **One connection's failure is its own.** An error thrown by
    ///   `handler` (a reset, a timeout, a protocol error of the application's)
    ///   ends that connection only; it goes to `onError` if given.
    /// - **A bounded number of connections.** While `maximumConnections`
    ///   handlers run, no more are started: at most 17 more wait accepted,
    ///   and the rest wait in the kernel's listen backlog.
    /// - **Accept survives resource errors** such as the descriptor limit
    ///   (see ``IncomingConnections``).
    /// - **Every connection is closed** when its handler returns or throws,
    ///   and cancelling the task that called `serve` cancels every handler,
    ///   so each connection closes and nothing outlives the call.
    ///
    /// It runs until the calling task is cancelled, then throws
    /// `CancellationError`, or until accepting fails for good (the ring shut
    /// down, say), then cancels the handlers and throws that error.
    ///
    /// - Parameters:
    ///   - maximumConnections: The most handlers running at once (at least 1).
    ///   - onError: Called with each error a connection ended with, and the
    ///     peer's address; cancellation at the end of `serve` is not reported.
    ///   - handler: Handles one connection; `serve` closes the connection
    ///     when it returns.
    public func serve(
        maximumConnections: Int = 1024,
        onError: (@Sendable (_ error: any Error, _ peer: SocketAddress?) -> Void)? = nil,
        _ handler: @escaping @Sendable (_ connection: borrowing StreamConnection) async throws -> Void
    ) async throws {
        try await connections.serve(maximumConnections: maximumConnections, onError: onError, handler)
    }
}

extension IncomingConnections {
    /// Handles each connection of this sequence in a child task of its own;
    /// see ``StreamListener/serve(maximumConnections:onError:_:)``.
    ///
    /// The sequence is copyable, so this form serves from a child task while
    /// the task that owns the listener does something else (watches for
    /// signals, say):
    ///
    /// ```swift
    /// let connections = listener.connections
    /// try await withThrowingTaskGroup(of: Void.self) { group in
    ///     group.addTask { try await connections.serve { connection in … } }
    ///     group.addTask { for try await _ in signals { return } }
    ///     try await group.next()   // a signal: stop serving
    ///     group.cancelAll()
    /// }
    /// ```
    public func serve(
        maximumConnections: Int = 1024,
        onError: (@Sendable (_ error: any Error, _ peer: SocketAddress?) -> Void)? = nil,
        _ handler: @escaping @Sendable (_ connection: borrowing StreamConnection) async throws -> Void
    ) async throws {
        let gate = try ConnectionGate(maximumConnections: maximumConnections, servingAt: address)
        try await serve(gate: gate, handOff: nil, onError: onError, handler)
    }

    /// The accept loop behind every `serve`: takes a place at `gate` before
    /// each accept, and runs each connection's handler in a child task, on
    /// the ring `handOff` picks if given (else where the loop runs).
    func serve(
        gate: ConnectionGate,
        handOff: (@Sendable () -> RingActor)?,
        onError: (@Sendable (_ error: any Error, _ peer: SocketAddress?) -> Void)?,
        _ handler: @escaping @Sendable (_ connection: borrowing StreamConnection) async throws -> Void
    ) async throws {
        var connections = self
        connections.highWater = 16
        try await withThrowingDiscardingTaskGroup { group in
            var accepted = connections.makeAsyncIterator()
            while true {
                // Accept first, then wait for a place: with several listeners
                // sharing one gate, a place held while waiting for a client
                // that never comes would starve the other listeners.
                guard let incoming = try await accepted.next() else {
                    return  // accepting ended normally; the handlers finish first
                }
                try await gate.enter()  // cancelled: `incoming` is dropped, which closes it
                let target = handOff?()
                let run: @concurrent @Sendable () async -> Void = {
                    defer { gate.leave() }
                    let connection: StreamConnection
                    do {
                        connection = try incoming.take(on: target)
                    } catch {
                        onError?(error, nil)
                        return
                    }
                    let peer = connection.remoteAddress
                    do {
                        try await handler(connection)
                    } catch is CancellationError where Task.isCancelled {
                        // The server is stopping: not this connection's fault.
                    } catch {
                        onError?(error, peer)
                    }
                    do {
                        try await connection.close()
                    } catch where !Task.isCancelled {
                        onError?(error, peer)
                    } catch {}
                }
                if let target {
                    group.addTask(executorPreference: target.executor, operation: run)
                } else {
                    group.addTask(operation: run)
                }
            }
        }
    }
}
