import CUring
import Glibc
import SystemPackage

/// A listening stream socket: TCP over IPv4 or IPv6, or a Unix-domain
/// stream.
///
/// ```swift
/// let listener = try await StreamListener.bind(to: .loopback(port: 8080), on: ring)
/// try await withThrowingDiscardingTaskGroup { group in
///     for try await incoming in listener.connections {
///         group.addTask { try await echo(incoming.take()) }
///     }
/// }
/// ```
///
/// The socket is created, bound and set listening through the ring on
/// kernels that have those operations (socket since 5.19; bind and listen
/// since 6.11); on older kernels the library makes the system calls itself.
/// `SO_REUSEADDR` is set on IP sockets, so a restarted server can bind a
/// port whose old connections linger in `TIME_WAIT`.
public struct StreamListener: ~Copyable, Sendable {
    /// The ring that performs this socket's operations.
    public let ring: RingActor
    /// The address the listener is bound to; for port 0, the port the
    /// kernel chose.
    public private(set) var localAddress: SocketAddress
    private var fd: Int32
    private let closedFlag = ListenerClosedFlag()

    private init(fd: Int32, localAddress: SocketAddress, on ring: RingActor) {
        self.fd = fd
        self.localAddress = localAddress
        self.ring = ring
    }

    deinit {
        if fd >= 0 {
            closedFlag.set()
            // Ends the multishot accepts of any live `connections` sequence,
            // which hold their own reference to the socket.
            Glibc.shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
        }
    }

    /// The underlying descriptor, still owned by this listener (for the
    /// library's own use; callers go through ``withUnsafeDescriptor(_:)``).
    var descriptor: FileDescriptor { FileDescriptor(rawValue: fd) }

    /// Runs `body` with the underlying descriptor, for a system call this
    /// library does not make (`setsockopt`, `ioctl`, `flock`).
    ///
    /// The descriptor is still owned by this listener: `body` must not close
    /// it, and must not keep it past its return, when the listener may close
    /// it and the number may be reused.
    public func withUnsafeDescriptor<Result, Failure: Error>(
        _ body: (FileDescriptor) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(descriptor)
    }

    /// Creates a socket for `address`, binds it and starts listening.
    ///
    /// - Parameters:
    ///   - address: Where to listen; port 0 lets the kernel choose (see
    ///     ``localAddress``).
    ///   - backlog: Connections the kernel queues before they are accepted.
    ///   - sharesPort: Lets other sockets of this process listen on the same
    ///     IP address and port (`SO_REUSEPORT`), each getting a share of the
    ///     new connections from the kernel; ``RingGroup`` listens this way
    ///     on every ring. Not for Unix-domain sockets.
    ///   - ring: The ring that performs the listener's operations.
    /// - Throws: ``UringError`` naming the address, for example
    ///   `bind 127.0.0.1:8080: Address already in use (EADDRINUSE)`.
    public static func bind(
        to address: SocketAddress, backlog: Int32 = 511, sharesPort: Bool = false, on ring: RingActor
    ) async throws -> StreamListener {
        if sharesPort && address.family == .unix {
            throw UringError.invalid(.bind, "a Unix-domain socket cannot share its address with other listeners")
                .about(address)
        }
        let fd = try await SocketIO.open(domain: address.domain, type: Int32(SOCK_STREAM.rawValue), on: ring.core, for: address)
        // Owns the descriptor from here: a failure below closes it.
        var listener = StreamListener(fd: fd, localAddress: address, on: ring)
        let io = listener.io
        if address.family != .unix {
            try await io.setOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1)
        }
        if sharesPort {
            try await io.setOption(level: SOL_SOCKET, name: SO_REUSEPORT, value: 1)
        }
        try await io.bind(to: address)
        try await io.listen(backlog: backlog)
        listener.localAddress = io.localAddress() ?? address
        return listener
    }

    private var io: SocketIO { SocketIO(core: ring.core, fd: fd, address: localAddress) }

    /// Accepts one connection.
    public func accept() async throws -> StreamConnection {
        let fd = try await io.accept()
        return StreamConnection(adopting: FileDescriptor(rawValue: fd), on: ring)
    }

    /// Sets a socket option, typed (see ``SocketOption``):
    /// `try await socket.setOption(.keepAlive, to: true)`.
    ///
    /// - Throws: ``UringError`` naming `sockopt`, the option and the
    ///   address: `EINVAL` for a value the kernel refuses,
    ///   ``UringError/Kind/invalidArgument`` for a negative size or time.
    public func setOption<Value>(_ option: SocketOption<Value>, to value: Value) async throws {
        try await io.setOption(option, to: value)
    }

    /// Reads a socket option, typed (see ``SocketOption``):
    /// `let size = try await socket.option(.receiveBufferSize)`.
    public func option<Value>(_ option: SocketOption<Value>) async throws -> Value {
        try await io.option(option)
    }

    /// The connections of this socket, as a sequence that takes the socket
    /// over (no duplicate descriptor): ending every iteration and closing
    /// the socket is then up to whoever holds it (see `stopListening`).
    consuming func intoConnections() -> IncomingConnections {
        let incoming = IncomingConnections(
            ring: ring, listener: OwnedDescriptor(fd), openError: nil, address: localAddress, closed: closedFlag)
        fd = -1  // the sequence owns it now; this value's deinit leaves it alone
        return incoming
    }

    /// The connections this listener accepts, through one multishot accept
    /// request per iteration (see ``IncomingConnections``).
    ///
    /// The sequence holds its own reference to the socket, so it may outlive
    /// this value; closing the listener ends it.
    public var connections: IncomingConnections {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        return IncomingConnections(
            ring: ring,
            listener: copy >= 0 ? OwnedDescriptor(copy) : nil,
            openError: copy >= 0 ? nil : UringError.system(.duplicate, Glibc.errno).about(localAddress),
            address: localAddress,
            closed: closedFlag)
    }

    /// Stops listening and closes the socket through the ring. Sequences of
    /// ``connections`` end (normally) and connections already accepted stay
    /// open.
    public consuming func close() async throws {
        let io = self.io
        closedFlag.set()
        Glibc.shutdown(fd, Int32(SHUT_RDWR))
        fd = -1
        try await io.close()
    }
}
