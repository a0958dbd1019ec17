#if ServiceLifecycle
import ServiceLifecycle
import Uring

/// A server of stream connections as a ServiceLifecycle `Service`: it
/// serves until its `ServiceGroup` shuts down, then stops gracefully.
///
/// Serving is ``Uring/IncomingConnections/serve(maximumConnections:onError:_:)``
/// (or ``Uring/GroupListener/serve(maximumConnections:onError:_:)`` for a
/// ring group), with all of its guarantees. On graceful shutdown (SIGTERM,
/// say, when the group is configured for it) the server:
/// 1. stops accepting: new clients are refused;
/// 2. lets the connections it is handling finish, for up to `gracePeriod`;
/// 3. then cancels the handlers still running, so their connections close.
///
/// `run()` then returns. Cancelling the service (the group's fatal path)
/// cancels every handler at once and throws `CancellationError`.
///
/// ```swift
/// let listener = try await StreamListener.bind(to: .loopback(port: 8080), on: ring)
/// let server = StreamServer(listener.connections, gracePeriod: .seconds(10)) { connection in
///     for try await chunk in connection.received(idleTimeout: .seconds(30)) {
///         try await connection.sendAll(chunk)
///     }
/// }
/// let services = ServiceGroup(
///     services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await services.run()
/// ```
///
/// A handler that wants to finish early on shutdown (close an idle
/// keep-alive connection, say) can watch for it itself with
/// ServiceLifecycle's `gracefulShutdown()` or `isShuttingDownGracefully`:
/// handlers inherit the graceful-shutdown state of the service's task.
public struct StreamServer: Service {
    private let serve: @Sendable () async throws -> Void
    private let stopAccepting: @Sendable () -> Void
    private let clock: RingActor
    /// How long live connections may take to finish once shutdown begins.
    public let gracePeriod: Duration

    /// A server of `connections`, on their listener's ring.
    ///
    /// - Parameters:
    ///   - connections: The listener's connections (`listener.connections`).
    ///   - maximumConnections: The most handlers running at once.
    ///   - gracePeriod: How long handlers may run on after shutdown begins
    ///     before they are cancelled.
    ///   - onError: Called with each error a connection ended with.
    ///   - handler: Handles one connection, which closes when it returns.
    public init(
        _ connections: IncomingConnections,
        maximumConnections: Int = 1024,
        gracePeriod: Duration = .seconds(30),
        onError: (@Sendable (_ error: any Error, _ peer: SocketAddress?) -> Void)? = nil,
        handler: @escaping @Sendable (_ connection: borrowing StreamConnection) async throws -> Void
    ) {
        self.serve = {
            try await connections.serve(maximumConnections: maximumConnections, onError: onError, handler)
        }
        self.stopAccepting = { connections.stopAccepting() }
        self.clock = connections.ring
        self.gracePeriod = gracePeriod
    }

    /// A server of a ring group's listener: each connection is handled on
    /// its ring, with one bound on live connections for the whole group.
    ///
    /// - Parameters:
    ///   - listener: The group's listener (`group.listen(at:spreading:)`).
    ///   - maximumConnections: The most handlers running at once, over all
    ///     rings.
    ///   - gracePeriod: How long handlers may run on after shutdown begins
    ///     before they are cancelled.
    ///   - onError: Called with each error a connection ended with.
    ///   - handler: Handles one connection, which closes when it returns.
    public init(
        _ listener: GroupListener,
        maximumConnections: Int = 1024,
        gracePeriod: Duration = .seconds(30),
        onError: (@Sendable (_ error: any Error, _ peer: SocketAddress?) -> Void)? = nil,
        handler: @escaping @Sendable (_ connection: borrowing StreamConnection) async throws -> Void
    ) {
        self.serve = {
            try await listener.serve(maximumConnections: maximumConnections, onError: onError, handler)
        }
        self.stopAccepting = { listener.close() }
        self.clock = listener.group.rings[0]
        self.gracePeriod = gracePeriod
    }

    /// Serves until graceful shutdown, then stops as the type's
    /// documentation describes.
    ///
    /// - Throws: `CancellationError` when the service's task is cancelled,
    ///   or the error that ended accepting (the ring shutting down, say).
    public func run() async throws {
        let serve = serve
        let stopAccepting = stopAccepting
        let clock = clock
        let gracePeriod = gracePeriod
        try await withThrowingTaskGroup(of: Ending.self) { tasks in
            tasks.addTask {
                do {
                    try await serve()
                    return .served(nil)
                } catch {
                    return .served(error)
                }
            }
            tasks.addTask {
                // Throws only when the service is cancelled, or serving
                // ended first and cancelled this watcher.
                do { try await gracefulShutdown() } catch { return .watcherEnded }
                stopAccepting()
                do {
                    try await clock.sleep(for: gracePeriod)
                } catch where Task.isCancelled {
                    return .watcherEnded
                } catch {
                    // The ring cannot time the grace period (it shut down):
                    // end it now rather than wait on handlers forever.
                }
                return .gracePeriodOver
            }
            var forced = false
            while let ending = try await tasks.next() {
                switch ending {
                case .served(let error):
                    tasks.cancelAll()  // the watcher, if it still waits
                    // The service itself was cancelled: say so, even when
                    // serving happened to end cleanly meanwhile.
                    if Task.isCancelled { throw error ?? CancellationError() }
                    guard let error else { return }
                    // Handlers cancelled at the end of the grace period.
                    if forced && error is CancellationError { return }
                    throw error
                case .gracePeriodOver:
                    forced = true
                    tasks.cancelAll()  // serving: its handlers are cancelled
                case .watcherEnded:
                    break
                }
            }
        }
    }

    private enum Ending: Sendable {
        case served((any Error)?)
        case gracePeriodOver
        case watcherEnded
    }
}
#endif
