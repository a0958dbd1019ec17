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

    /// The peer set by ``connect(to:)`` (`getpeername`); nil before.
    public var remoteAddress: SocketAddress? { io.remoteAddress() }

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

    /// Sends the bytes of `buffers`, in order, as one datagram (`sendmsg`
    /// with one vector per buffer), to `address` or else to the connected
    /// peer; returns the bytes sent.
    public func send<Buffer: IOBuffer>(_ buffers: [Buffer], to address: SocketAddress? = nil) async throws -> Int {
        let box = MessageBox(vectors: Buffer.vectors(reading: buffers), to: address)
        // `buffers` is a parameter, alive until the completion.
        let n = try await io.sendMessage(box, to: address)
        withExtendedLifetime(buffers) {}
        return n
    }

    /// Sends `buffer` as one datagram with control messages (a source
    /// address with `IP_PKTINFO`, descriptors over a Unix socket, …), to
    /// `address` or else to the connected peer; see ``ControlMessage``.
    public func send<Buffer: IOBuffer & ~Copyable>(
        _ buffer: borrowing Buffer, to address: SocketAddress? = nil, control: [ControlMessage]
    ) async throws -> Int {
        let box = MessageBox(
            vectors: [iovec(iov_base: UnsafeMutableRawPointer(mutating: Uring.address(of: buffer)), iov_len: buffer.count)],
            to: address, control: control)
        return try await io.sendMessage(box, to: address)
    }

    /// Sends `buffer` as one datagram without copying it into the kernel
    /// (`SENDMSG_ZC`, Linux 6.1), to `address` or else to the connected
    /// peer. It returns once the kernel no longer reads the buffer. Worth it
    /// only for large datagrams (tens of KiB, or with UDP segmentation).
    ///
    /// - Throws: ``UringError/Kind/unsupported`` on kernels without it.
    public func sendZeroCopy<Buffer: IOBuffer & ~Copyable>(
        _ buffer: borrowing Buffer, to address: SocketAddress? = nil
    ) async throws -> Int {
        let box = MessageBox(
            vectors: [iovec(iov_base: UnsafeMutableRawPointer(mutating: Uring.address(of: buffer)), iov_len: buffer.count)],
            to: address)
        return try await io.sendMessageZeroCopy(box, to: address)
    }

    /// Receives one datagram into `buffer`.
    ///
    /// - Returns: The bytes received (a longer datagram is cut to the
    ///   buffer's size; see `truncated`) and the sender's address.
    public func receive<Buffer: IOBuffer & ~Copyable>(
        into buffer: inout Buffer
    ) async throws -> (count: Int, sender: SocketAddress?, truncated: Bool) {
        // No room for control data: descriptors a peer passes are closed
        // by the kernel rather than installed here unseen.
        let box = MessageBox(
            receivingInto: [iovec(iov_base: Uring.address(of: &buffer), iov_len: buffer.count)], controlCapacity: 0)
        let n = try await io.receiveMessage(box)
        return (n, box.senderAddress, box.truncated)
    }

    /// Receives one datagram spread over `buffers`, filling each in turn
    /// (`recvmsg` with one vector per buffer).
    ///
    /// - Returns: The bytes received in all, the sender's address, and
    ///   whether the datagram was longer than the buffers together.
    public func receive<Buffer: IOBuffer>(
        into buffers: inout [Buffer]
    ) async throws -> (count: Int, sender: SocketAddress?, truncated: Bool) {
        let box = MessageBox(receivingInto: Buffer.vectors(writing: &buffers), controlCapacity: 0)
        // `buffers` is inout: the caller's, unmoved until the completion.
        let n = try await io.receiveMessage(box)
        return (n, box.senderAddress, box.truncated)
    }

    /// Receives one datagram into `buffer` together with its control
    /// messages (enable them first with a socket option, such as
    /// `IP_PKTINFO` or `SO_TIMESTAMP`; see ``ControlMessage``).
    ///
    /// - Parameters:
    ///   - buffer: Where the datagram's bytes go.
    ///   - controlCapacity: Bytes of room for control messages; what does
    ///     not fit is lost and ``ReceivedMessage/controlTruncated`` says so.
    public func receiveMessage<Buffer: IOBuffer & ~Copyable>(
        into buffer: inout Buffer, controlCapacity: Int = 256
    ) async throws -> ReceivedMessage {
        try SocketIO.validate(controlCapacity: controlCapacity, address: boundAddress)
        let box = MessageBox(
            receivingInto: [iovec(iov_base: Uring.address(of: &buffer), iov_len: buffer.count)],
            controlCapacity: controlCapacity)
        let n = try await io.receiveMessage(box)
        return box.receivedMessage(count: n)
    }

    /// Every datagram this socket receives from now on, as a sequence, from
    /// one multishot `recvmsg` request: the kernel picks a buffer from
    /// `pool` for each datagram and writes the sender's address beside it,
    /// so a busy socket costs no submission per datagram.
    ///
    /// ```swift
    /// for try await datagram in socket.datagrams() {
    ///     try await socket.send(Array(datagram.bytes), to: datagram.sender!)
    /// }
    /// ```
    ///
    /// Each pool buffer holds a 144-byte header before the datagram, so a
    /// datagram longer than `bufferSize - 144` is cut (see
    /// ``ReceivedDatagram/truncated``). See ``ReceivedDatagrams`` for
    /// back-pressure and ending. Needs Linux 6.0.
    ///
    /// - Parameters:
    ///   - pool: The buffers to receive into; the ring's shared pool when nil.
    ///   - idleTimeout: If given, a `next()` that waits this long without a
    ///     datagram arriving ends the sequence with
    ///     ``UringError/Kind/timedOut`` (datagrams already queued are
    ///     returned first).
    public func datagrams(using pool: ReceiveBufferPool? = nil, idleTimeout: Duration? = nil) -> ReceivedDatagrams {
        let socket = Result { () throws(UringError) in
            OwnedDescriptor(try OwnedDescriptor.duplicate(fd, path: nil, address: boundAddress))
        }
        return ReceivedDatagrams(ring: ring, socket: socket, address: boundAddress, pool: pool, idleTimeout: idleTimeout)
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
