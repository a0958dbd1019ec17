import CUring
import Glibc
import SystemPackage

/// A datagram socket: UDP over IPv4 or IPv6, or a Unix-domain datagram
/// socket. Each send is one datagram and each receive returns one, so
/// message boundaries are kept.
///
/// ```swift
/// let server = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
/// let client = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
/// _ = try await client.send(Array("ping".utf8), to: server.localAddress!)
/// var buffer = [UInt8](repeating: 0, count: 1500)
/// let (count, sender) = try await server.receive(into: &buffer)
/// ```
public struct DatagramSocket: ~Copyable, Sendable {
    /// The ring that performs this socket's operations.
    public let ring: RingActor
    private var fd: Int32
    private let boundAddress: SocketAddress?

    private init(fd: Int32, bound: SocketAddress?, on ring: RingActor) {
        self.fd = fd
        self.boundAddress = bound
        self.ring = ring
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    var io: SocketIO { SocketIO(core: ring.core, fd: fd, address: boundAddress) }

    /// The underlying descriptor, still owned by this socket (for the
    /// library's own use; callers go through ``withUnsafeDescriptor(_:)``).
    var descriptor: FileDescriptor { FileDescriptor(rawValue: fd) }

    /// Runs `body` with the underlying descriptor, for a system call this
    /// library does not make (`setsockopt`, `ioctl`, `flock`).
    ///
    /// The descriptor is still owned by this socket: `body` must not close
    /// it, and must not keep it past its return, when the socket may close
    /// it and the number may be reused.
    public func withUnsafeDescriptor<Result, Failure: Error>(
        _ body: (FileDescriptor) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(descriptor)
    }

    /// The socket's own address; for port 0, the port the kernel chose.
    public var localAddress: SocketAddress? { io.localAddress() }

    /// Creates a datagram socket bound to `address`.
    ///
    /// - Throws: ``UringError`` naming the address, such as `EADDRINUSE`.
    public static func bind(to address: SocketAddress, on ring: RingActor) async throws -> DatagramSocket {
        let fd = try await SocketIO.open(domain: address.domain, type: Int32(SOCK_DGRAM.rawValue), on: ring.core, for: address)
        let socket = DatagramSocket(fd: fd, bound: address, on: ring)
        try await socket.io.bind(to: address)
        return socket
    }

    /// Creates an unbound datagram socket of `family` (the kernel binds an
    /// IP socket to an ephemeral port on its first send).
    public static func open(_ family: SocketAddress.Family, on ring: RingActor) async throws -> DatagramSocket {
        let domain: Int32 = switch family {
        case .ipv4: AF_INET
        case .ipv6: AF_INET6
        case .unix: AF_UNIX
        }
        let fd = try await SocketIO.open(domain: domain, type: Int32(SOCK_DGRAM.rawValue), on: ring.core, for: nil)
        return DatagramSocket(fd: fd, bound: nil, on: ring)
    }

    /// Sets the default destination; then ``send(_:)`` needs no address and
    /// only that peer's datagrams are received.
    public func connect(to address: SocketAddress) async throws {
        try await SocketIO(core: ring.core, fd: fd, address: address).connect(to: address)
    }

    /// Sends `buffer` as one datagram to `address`; returns the bytes sent.
    public func send<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer, to address: SocketAddress) async throws -> Int {
        let box = MessageBox(bytes: UnsafeMutableRawPointer(mutating: Uring.address(of: buffer)), count: buffer.count, address: address)
        return try await io.sendMessage(box, to: address)
    }

    /// Sends `buffer` as one datagram to the connected peer.
    public func send<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer) async throws -> Int {
        try await io.send(Uring.address(of: buffer), count: buffer.count)
    }

    /// Receives one datagram into `buffer`.
    ///
    /// - Returns: The bytes received (a longer datagram is cut to the
    ///   buffer's size; see `truncated`) and the sender's address.
    public func receive<Buffer: IOBuffer & ~Copyable>(
        into buffer: inout Buffer
    ) async throws -> (count: Int, sender: SocketAddress?, truncated: Bool) {
        let box = MessageBox.forReceiving(into: Uring.address(of: &buffer), count: buffer.count)
        let n = try await io.receiveMessage(box)
        return (n, box.senderAddress, box.truncated)
    }

    /// Sets a socket option, typed (see ``SocketOption``):
    /// `try await socket.setOption(.broadcast, to: true)`.
    ///
    /// - Throws: ``UringError`` naming `sockopt`, the option and the
    ///   address: `EINVAL` for a value the kernel refuses,
    ///   ``UringError/Kind/invalidArgument`` for a negative size or time.
    public func setOption<Value>(_ option: SocketOption<Value>, to value: Value) async throws {
        try await io.setOption(option, to: value)
    }

    /// Reads a socket option, typed (see ``SocketOption``).
    public func option<Value>(_ option: SocketOption<Value>) async throws -> Value {
        try await io.option(option)
    }

    /// Closes the socket through the ring. The descriptor is released even
    /// when an error is thrown.
    public consuming func close() async throws {
        let io = self.io
        fd = -1
        try await io.close()
    }
}
