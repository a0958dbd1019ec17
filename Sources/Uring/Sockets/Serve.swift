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
    ///   handlers run, no more connections are taken: at most 16 more wait
    ///   accepted, and the rest wait in the kernel's listen backlog.
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
                try await gate.enter()
                guard let incoming = try await accepted.next() else {
                    gate.leave()
                    return  // accepting ended normally; the handlers finish first
                }
                let target = handOff?()
                let run: @Sendable () async -> Void = {
                    defer { gate.leave() }
                    let connection: StreamConnection
                    do {
                        if let target {
                            connection = try incoming.take(on: target)
                        } else {
                            connection = try incoming.take()
                        }
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
