import CUring
import Glibc
import Synchronization
import SystemPackage

/// A connection accepted by a listener, not yet claimed.
///
/// Sequence elements must be copyable, so ``IncomingConnections`` cannot
/// yield a ``StreamConnection`` directly. It yields this small box instead;
/// ``take(on:)`` moves the descriptor out exactly once. A box dropped without
/// `take()` closes its descriptor, so a connection that is never handled,
/// or that was accepted after iteration stopped, never leaks.
///
/// ```swift
/// for try await incoming in listener.connections {
///     group.addTask { try await serve(incoming.take()) }
/// }
/// ```
public final class IncomingConnection: Sendable {
    private let descriptor: OwnedOnce
    /// The ring that accepted the connection.
    public let ring: RingActor

    init(fd: Int32, ring: RingActor) {
        self.descriptor = OwnedOnce(fd)
        self.ring = ring
    }

    /// Moves the connection out of the box.
    ///
    /// - Parameter ring: The ring to serve the connection on; `nil` (the
    ///   default) means the ring that accepted it. A descriptor belongs to
    ///   the process, so any ring can use it; serve it from a task that
    ///   prefers that ring's executor, or its operations hop threads.
    /// - Throws: ``UringError`` (``UringError/Kind/invalidArgument``) if it
    ///   was already taken.
    public func take(on ring: RingActor? = nil) throws(UringError) -> StreamConnection {
        guard let fd = descriptor.take() else {
            throw .invalid(.accept, "this incoming connection was already taken")
        }
        return StreamConnection(adopting: FileDescriptor(rawValue: fd), on: ring ?? self.ring)
    }
}

/// A descriptor (or registered-file slot) that can be moved out once;
/// released on deinit if it was not: closed, or given to `release`.
final class OwnedOnce: Sendable {
    private let fd: Atomic<Int32>
    private let release: (@Sendable (Int32) -> Void)?
    init(_ fd: Int32, release: (@Sendable (Int32) -> Void)? = nil) {
        self.fd = Atomic(fd)
        self.release = release
    }
    func take() -> Int32? {
        let fd = fd.exchange(-1, ordering: .acquiringAndReleasing)
        return fd >= 0 ? fd : nil
    }
    deinit {
        let fd = fd.load(ordering: .acquiring)
        guard fd >= 0 else { return }
        if let release { release(fd) } else { Glibc.close(fd) }
    }
}

/// The connections a listener accepts, from one multishot accept request.
/// See ``StreamListener/connections``.
///
/// The sequence ends only with an error (thrown), with cancellation of the
/// iterating task (`CancellationError`), or when the listener is closed
/// (normally). When the kernel stops the multishot request on its own, it is
/// re-armed without the consumer noticing.
///
/// Running out of resources does not end it. When accept fails with
/// `EMFILE` or `ENFILE` (the descriptor limit), `ENOBUFS` or `ENOMEM`, the
/// sequence waits, 10 ms at first and twice as long after each failure in a
/// row up to one second, then accepts again; new clients wait in the listen
/// backlog meanwhile. Each wait counts in ``RingStatistics/acceptBackOffs``.
/// `ECONNABORTED` (a client gave up while in the backlog) does not end it
/// either; accepting goes on at once. At most 64 accepted connections
/// wait unclaimed; beyond that the request is paused and new connections
/// wait in the kernel's listen backlog.
public struct IncomingConnections: AsyncSequence, Sendable {
    /// An accepted connection, to be claimed with ``IncomingConnection/take(on:)``.
    public typealias Element = IncomingConnection
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    /// The ring that accepts (and that the connections start on).
    public let ring: RingActor
    let listener: OwnedDescriptor?
    let openError: UringError?
    let address: SocketAddress?
    let closed: ListenerClosedFlag
    /// Accepted connections that may wait unclaimed before the request pauses.
    var highWater = 64

    /// Starts accepting (on the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: StreamConsumer { try makeStream() })
    }

    /// Produces the accepted connections.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: StreamConsumer<IncomingConnection>

        /// The next accepted connection; nil once the listener is closed.
        public nonisolated(nonsending) mutating func next() async throws -> IncomingConnection? {
            try await consumer.next()
        }

        /// The next accepted connection, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> IncomingConnection? {
            try await consumer.next()
        }
    }
}

extension IncomingConnections {
    /// Stops accepting: the listening socket refuses new clients, every
    /// iteration of this sequence (and of other sequences of the same
    /// listener) ends normally, and a running
    /// ``serve(maximumConnections:onError:_:)`` returns once the handlers it
    /// started have finished. Connections already accepted stay open.
    /// Calling it again does nothing.
    ///
    /// This is the first step of a graceful shutdown; `UringServiceLifecycle`
    /// takes it when a `ServiceGroup` shuts down.
    public func stopAccepting() {
        stopListening()
    }

    /// Ends every iteration of this sequence (normally) and stops the socket
    /// listening; the descriptor closes when the last copy is gone.
    func stopListening() {
        closed.set()
        if let listener { Glibc.shutdown(listener.fd, Int32(SHUT_RDWR)) }
    }
}

/// Set when the listener is closed, so the sequence ends normally.
final class ListenerClosedFlag: Sendable {
    private let flag = Atomic(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}

extension IncomingConnections {
    /// The stream of one iterator: one multishot accept request.
    fileprivate func makeStream() throws -> MultishotStream<IncomingConnection> {
        if let openError { throw openError }
        guard let listener else { throw UringError.invalid(.accept, "the listener could not be duplicated") }
        let ring = ring
        let core = ring.core
        let address = address
        let closed = closed
        let backOff = AcceptBackOff()
        return core.multishotStream(
            .accept, about: .address(address), highWater: highWater, keepAlive: listener,
            prepare: { io_uring_prep_multishot_accept(&$0, listener.fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue)) },
            interpret: { result, _ in
                if result >= 0 {
                    backOff.reset()
                    return .element(IncomingConnection(fd: result, ring: ring))
                }
                if closed.isSet { return .end }
                guard core.acceptsWork.load(ordering: .acquiring) else { return .standard }
                // A client gave up in the backlog: accept the next at once.
                if result == -ECONNABORTED { return .nothing }
                guard AcceptBackOff.isTransient(-result) else { return .standard }
                ring.serverCounters.acceptBackOffs.add(1, ordering: .relaxed)
                let wait = backOff.next()
                core.report(.acceptBackedOff(address: address, error: Errno(rawValue: -result), retryAfter: wait))
                return .waitForResources { stream in
                    let time = KernelTimespec(wait)
                    core.submitStream(keepAlive: time, handler: { _, _ in stream.resourcesReturned() }) {
                        io_uring_prep_timeout(&$0, time.pointer, 0, 0)
                    }
                }
            })
    }
}

/// How long a multishot accept waits after running out of resources: 10 ms,
/// doubling with each failure in a row, at most one second.
final class AcceptBackOff: Sendable {
    private let milliseconds = Atomic<Int>(0)

    /// Errors that say "not now" rather than "never": the process or the
    /// system is out of descriptors or memory.
    static func isTransient(_ code: Int32) -> Bool {
        code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM
    }

    /// The next wait (only the ring thread calls this).
    func next() -> Duration {
        let wait = min(max(10, milliseconds.load(ordering: .relaxed) * 2), 1000)
        milliseconds.store(wait, ordering: .relaxed)
        return .milliseconds(wait)
    }

    /// An accept succeeded: the next failure waits the shortest time again.
    func reset() {
        if milliseconds.load(ordering: .relaxed) != 0 { milliseconds.store(0, ordering: .relaxed) }
    }
}
