import Glibc

/// How a ``RingGroup`` spreads the connections of one address over its
/// rings.
public enum ConnectionSpreading: Sendable, Hashable {
    /// Every ring listens on the address (`SO_REUSEPORT`) and the kernel
    /// gives each new connection to one of them, by a hash of the client's
    /// address and port; each ring accepts and serves its own, with no step
    /// between threads. The cheapest, and even when there are many clients;
    /// but a few long, busy connections can land on the same ring. IP
    /// addresses only (a group of one ring listens alone, on any address).
    ///
    /// The port is shared with any other `SO_REUSEPORT` socket of the same
    /// user: a second copy of the server on the same fixed port joins the
    /// first and takes a share of its connections instead of failing with
    /// `EADDRINUSE`.
    case byKernel
    /// One ring (the group's first) accepts, and hands each connection to
    /// the ring `placement` picks (``RingPlacement/leastBusy`` evens out
    /// uneven connections). Costs one wake-up of the chosen ring per
    /// connection; works for Unix-domain sockets too.
    case handOff(to: RingPlacement)
}

/// The listening sockets of a ``RingGroup`` on one address: one per ring
/// (``ConnectionSpreading/byKernel``) or one in all
/// (``ConnectionSpreading/handOff(to:)``).
///
/// ```swift
/// let listener = try await group.listen(at: .loopback(port: 0))
/// print("listening on \(listener.localAddress)")
/// try await listener.serve(maximumConnections: 10_000) { connection in … }
/// ```
///
/// The sockets stop listening when ``close()`` is called, when their ring
/// shuts down, or when the last reference goes. It is a class, so one task
/// can serve while another (watching for a signal, say) closes it.
public final class GroupListener: Sendable {
    /// The group whose rings serve the connections.
    public let group: RingGroup
    /// The address listened on; for port 0, with the port the kernel chose.
    public let localAddress: SocketAddress
    /// How connections are spread over the rings.
    public let spreading: ConnectionSpreading
    /// One sequence per listening socket, each owning its socket; with
    /// `byKernel`, socket N belongs to ring N.
    private let sockets: [IncomingConnections]

    init(group: RingGroup, localAddress: SocketAddress, spreading: ConnectionSpreading, sockets: [IncomingConnections]) {
        self.group = group
        self.localAddress = localAddress
        self.spreading = spreading
        self.sockets = sockets
    }

    deinit {
        for socket in sockets { socket.stopListening() }
    }

    /// Stops listening: new clients are refused. A running
    /// ``serve(maximumConnections:onError:_:)`` stops accepting and returns
    /// once its handlers have finished; connections already accepted stay
    /// open. Calling it again does nothing. The descriptors (and the bound
    /// port) are released when this object and every sequence using them
    /// are gone.
    public func close() {
        for socket in sockets { socket.stopListening() }
    }

    /// Accepts connections on every socket and handles each in a child task
    /// on its ring, with one bound on live connections for the whole group.
    ///
    /// It gives the guarantees of ``StreamListener/serve(maximumConnections:onError:_:)``:
    /// one connection's failure is its own, resource errors do not stop
    /// accepting, every connection is closed when its handler ends, and
    /// cancelling the calling task cancels every handler. While
    /// `maximumConnections` handlers run on all rings together, no more are
    /// started: each ring holds at most 17 more accepted, and the rest wait
    /// in the kernel's backlog.
    ///
    /// The handler runs on the ring that serves the connection; use
    /// ``RingGroup/currentRingIndex`` to find which, for per-ring state.
    ///
    /// It returns once the sockets stop listening (``close()``, or the
    /// group's rings shutting down) and every handler has finished.
    ///
    /// - Throws: `CancellationError` when the calling task is cancelled, or
    ///   the error that ended accepting on any ring (after cancelling the
    ///   handlers), such as ``UringError/Kind/ringShutDown``.
    public func serve(
        maximumConnections: Int = 1024,
        onError: (@Sendable (_ error: any Error, _ peer: SocketAddress?) -> Void)? = nil,
        _ handler: @escaping @Sendable (_ connection: borrowing StreamConnection) async throws -> Void
    ) async throws {
        let gate = try ConnectionGate(maximumConnections: maximumConnections, servingAt: localAddress)
        let group = self.group
        let handOff: (@Sendable () -> RingActor)?
        let countedAtHandOff: Bool
        switch spreading {
        case .byKernel:
            handOff = nil
            countedAtHandOff = false
        case .handOff(let placement):
            // Counted when chosen, so a burst of connections sees each
            // choice before the handlers start.
            handOff = {
                let ring = group.ring(placement)
                if let index = group.index(of: ring) { group.connectionCounts[index].add(1) }
                return ring
            }
            countedAtHandOff = true
        }
        let counted: @Sendable (_ connection: borrowing StreamConnection) async throws -> Void = { connection in
            let index = group.index(of: connection.ring)
            if let index, !countedAtHandOff { group.connectionCounts[index].add(1) }
            defer { if let index { group.connectionCounts[index].add(-1) } }
            try await handler(connection)
        }
        try await withThrowingDiscardingTaskGroup { tasks in
            for (index, socket) in sockets.enumerated() {
                tasks.addTask(executorPreference: group.rings[index].executor) {
                    try await socket.serve(gate: gate, handOff: handOff, onError: onError, counted)
                }
            }
        }
    }
}

extension RingGroup {
    /// Listens on `address` in the way `spreading` says.
    ///
    /// With port 0 the kernel picks a free port and every ring listens on it
    /// (see ``GroupListener/localAddress``).
    ///
    /// - Throws: ``UringError`` naming the address: for example when the port
    ///   is in use by a socket that does not share it, or
    ///   ``UringError/Kind/invalidArgument`` for a Unix-domain address with
    ///   ``ConnectionSpreading/byKernel`` (in a group of more than one ring)
    ///   or a hand-off to a ring that is not in the group.
    public func listen(
        at address: SocketAddress, spreading: ConnectionSpreading = .byKernel, backlog: Int32 = 511
    ) async throws -> GroupListener {
        let listener = try await bindSockets(at: address, spreading: spreading, backlog: backlog)
        // A ring that shuts down stops listening, so clients are refused
        // instead of waiting in a backlog nobody accepts from.
        for ring in rings {
            ring.core.onShutdown { [weak listener] in listener?.close() }
        }
        return listener
    }

    private func bindSockets(
        at address: SocketAddress, spreading: ConnectionSpreading, backlog: Int32
    ) async throws -> GroupListener {
        switch spreading {
        case .byKernel:
            var bound = address
            var sockets: [IncomingConnections] = []
            // A failure drops the sockets made so far, which closes them.
            for ring in rings {
                // A group of one shares nothing: the port stays exclusive.
                let listener = try await StreamListener.bind(
                    to: bound, backlog: backlog, sharesPort: rings.count > 1, on: ring)
                bound = listener.localAddress
                sockets.append(listener.intoConnections())
            }
            return GroupListener(group: self, localAddress: bound, spreading: spreading, sockets: sockets)
        case .handOff(let placement):
            do { try validate(placement, for: .listen) } catch { throw error.about(address) }
            let listener = try await StreamListener.bind(to: address, backlog: backlog, on: rings[0])
            let bound = listener.localAddress
            return GroupListener(group: self, localAddress: bound, spreading: spreading, sockets: [listener.intoConnections()])
        }
    }

    /// Listens on `address` and serves every connection until the calling
    /// task is cancelled: ``listen(at:spreading:backlog:)`` followed by
    /// ``GroupListener/serve(maximumConnections:onError:_:)``.
    public func serve(
        at address: SocketAddress,
        spreading: ConnectionSpreading = .byKernel,
        maximumConnections: Int = 1024,
        onError: (@Sendable (_ error: any Error, _ peer: SocketAddress?) -> Void)? = nil,
        _ handler: @escaping @Sendable (_ connection: borrowing StreamConnection) async throws -> Void
    ) async throws {
        let listener = try await listen(at: address, spreading: spreading)
        try await listener.serve(maximumConnections: maximumConnections, onError: onError, handler)
    }
}
