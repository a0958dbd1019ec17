import CUring
import Glibc
import SystemPackage

/// A connected stream socket: TCP over IPv4 or IPv6, or a Unix-domain stream.
///
/// Like ``File`` it is noncopyable and owns its descriptor: `close()` closes
/// it through the ring and reports errors, and dropping the value closes it.
/// Buffers are lent for the length of each call.
///
/// A connection is one descriptor. Sequences of ``received(using:idleTimeout:)`` share it
/// rather than duplicating it, and keep it open while they live: closing the
/// connection while such a sequence is still alive (for example, its
/// iterator in another task) leaves the closing of the descriptor to the
/// sequence's end.
///
/// ```swift
/// let connection = try await StreamConnection.connect(to: .loopback(port: 8080), on: ring)
/// try await connection.sendAll(Array("ping".utf8))
/// for try await chunk in connection.received() {
///     print(chunk.count, "bytes")
/// }
/// ```
public struct StreamConnection: ~Copyable, Sendable {
    /// The ring that performs this socket's operations.
    public let ring: RingActor
    /// The peer's address as known when the connection was made (nil for an
    /// unnamed Unix socket).
    public let remoteAddress: SocketAddress?
    /// The descriptor, shared with live ``received(using:idleTimeout:)`` sequences; it
    /// closes itself when the last holder lets go.
    private var shared: OwnedDescriptor

    /// Takes ownership of a connected stream socket's descriptor.
    public init(adopting descriptor: FileDescriptor, on ring: RingActor) {
        self.ring = ring
        self.shared = OwnedDescriptor(descriptor.rawValue)
        self.remoteAddress = SocketIO(core: ring.core, fd: descriptor.rawValue, address: nil).remoteAddress()
    }

    init(fd: Int32, remote: SocketAddress?, on ring: RingActor) {
        self.ring = ring
        self.shared = OwnedDescriptor(fd)
        self.remoteAddress = remote
    }

    @usableFromInline var io: SocketIO { SocketIO(core: ring.core, fd: shared.fd, address: remoteAddress) }

    /// The underlying descriptor, still owned by this connection (for the
    /// library's own use; callers go through ``withUnsafeDescriptor(_:)``).
    var descriptor: FileDescriptor { FileDescriptor(rawValue: shared.fd) }

    /// Runs `body` with the underlying descriptor, for a system call this
    /// library does not make (`setsockopt`, `ioctl`, `flock`).
    ///
    /// The descriptor is still owned by this connection: `body` must not close
    /// it, and must not keep it past its return, when the connection may close
    /// it and the number may be reused. To own a descriptor, use
    /// `takeDescriptor()`.
    public func withUnsafeDescriptor<Result, Failure: Error>(
        _ body: (FileDescriptor) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(descriptor)
    }

    /// This end's address (`getsockname`).
    public var localAddress: SocketAddress? { io.localAddress() }

    // MARK: Connecting

    /// Opens a socket of `address`'s family and connects it, all through the
    /// ring.
    ///
    /// - Throws: ``UringError`` naming `address`, for example
    ///   `connect 127.0.0.1:9: Connection refused (ECONNREFUSED)`.
    public static func connect(to address: SocketAddress, on ring: RingActor) async throws -> StreamConnection {
        let fd = try await SocketIO.open(domain: address.domain, type: Int32(SOCK_STREAM.rawValue), on: ring.core, for: address)
        let connection = StreamConnection(fd: fd, remote: address, on: ring)
        try await connection.io.connect(to: address)
        return connection
    }

    /// A connected pair of Unix-domain stream sockets (`socketpair`), for
    /// talking to a child process or between tasks.
    public static func pair(on ring: RingActor) throws(UringError) -> ConnectedPair {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw .system(.socket, Glibc.errno)
        }
        return ConnectedPair(
            first: StreamConnection(fd: fds[0], remote: nil, on: ring),
            second: StreamConnection(fd: fds[1], remote: nil, on: ring))
    }

    /// Two connected Unix-domain stream sockets; see ``pair(on:)``. Take
    /// them apart with `let a = pair.first, b = pair.second`.
    @frozen
    public struct ConnectedPair: ~Copyable, Sendable {
        /// One end.
        public var first: StreamConnection
        /// The other end.
        public var second: StreamConnection
    }

    // MARK: Sending

    /// Sends bytes from `buffer`; returns how many the kernel took (at least
    /// one).
    @inlinable @inline(__always)
    public func send<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer) async throws -> Int {
        try await io.send(address(of: buffer), count: buffer.count)
    }

    /// Sends all of `buffer`, continuing after short sends.
    @inlinable @inline(__always)
    public func sendAll<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer) async throws {
        try await io.sendAll(address(of: buffer), count: buffer.count)
    }

    /// Sends all of a received chunk (for example to echo it).
    @inlinable @inline(__always)
    public func sendAll(_ chunk: ReceivedBytes) async throws {
        // The chunk (with its buffer) stays alive until the sends are over,
        // also once this is inlined into the caller.
        defer { withExtendedLifetime(chunk) {} }
        try await io.sendAll(chunk.rawAddress, count: chunk.count)
    }

    /// Sends all of `buffer` within `timeout`, or throws
    /// ``UringError/Kind/timedOut`` (how much was sent is then unknown, so
    /// close the connection). For a peer that stops reading, this bounds how
    /// long a handler can be held.
    ///
    /// Cheaper than `withTimeout { try await sendAll(buffer) }`: a send into
    /// a socket with room costs one kernel request and no timer, and only a
    /// send that must wait is linked to one.
    @inlinable @inline(__always)
    public func sendAll<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer, timeout: Duration) async throws {
        try await io.sendAll(address(of: buffer), count: buffer.count, deadline: .now + timeout)
    }

    /// Sends all of a received chunk within `timeout`; see
    /// ``sendAll(_:timeout:)-(Buffer,_)``.
    @inlinable @inline(__always)
    public func sendAll(_ chunk: ReceivedBytes, timeout: Duration) async throws {
        // The chunk (with its buffer) stays alive until the sends are over,
        // also once this is inlined into the caller.
        defer { withExtendedLifetime(chunk) {} }
        try await io.sendAll(chunk.rawAddress, count: chunk.count, deadline: .now + timeout)
    }

    /// Sends bytes from `buffer` without copying them into the kernel
    /// (`SEND_ZC`); returns how many were sent. It returns once the kernel no
    /// longer reads the buffer, which for TCP is when the peer acknowledged
    /// the data. Worth it for large buffers; for small ones ``send(_:)-(Buffer)`` is
    /// faster.
    ///
    /// A peer that stops reading can keep the kernel holding the bytes, and
    /// so this call waiting, indefinitely. Inside ``withDeadline(_:_:)`` (or
    /// ``withTimeout(_:_:)``) the deadline ends it: the connection is reset,
    /// which frees whatever bytes the kernel took, and the send cancelled;
    /// the call throws ``UringError/Kind/timedOut``, and the connection
    /// must be closed.
    public func sendZeroCopy<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer) async throws -> Int {
        try await io.sendZeroCopy(address(of: buffer), count: buffer.count)
    }

    /// Ownership form of ``sendAll(_:)-(Buffer)``: the buffer moves in and
    /// comes back inside the result, with the count or the error.
    public func sendAll<Buffer: IOBuffer & ~Copyable>(consuming buffer: consuming Buffer) async -> IOResult<Buffer> {
        do {
            try await sendAll(buffer)
            let count = buffer.count
            return IOResult(buffer: buffer, outcome: .success(count))
        } catch {
            return IOResult(buffer: buffer, outcome: .failure(error))
        }
    }

    /// Sends the bytes of `buffers`, in order, in one request (`sendmsg`
    /// with one vector per buffer: a header and a body without joining
    /// them); returns how many bytes the kernel took (at least one).
    public func send<Buffer: IOBuffer>(_ buffers: [Buffer]) async throws -> Int {
        let box = MessageBox(vectors: Buffer.vectors(reading: buffers))
        // `buffers` is a parameter, alive until the completion.
        let n = try await io.sendMessage(box, to: nil)
        withExtendedLifetime(buffers) {}
        return n
    }

    /// Sends all the bytes of `buffers`, in order, continuing after short
    /// sends; each request covers everything not yet sent (up to 1,024
    /// buffers at a time, the kernel's limit).
    ///
    /// - Throws: ``UringError/Kind/invalidArgument`` when the buffers are
    ///   all empty, as for one empty buffer.
    public func sendAll<Buffer: IOBuffer>(_ buffers: [Buffer]) async throws {
        // A slice: dropping sent vectors from its front costs nothing.
        var remaining = Buffer.vectors(reading: buffers).filter { $0.iov_len > 0 }[...]
        if remaining.isEmpty { try io.validate(.sendMessage, count: 0) }
        while !remaining.isEmpty {
            let box = MessageBox(vectors: Array(remaining.prefix(DescriptorIO.maximumVectors)))
            var sent = try await io.sendMessage(box, to: nil)
            // A socket that takes nothing would loop here for ever.
            if sent == 0 { throw UringError.system(.sendMessage, EPIPE).about(remoteAddress) }
            while sent > 0, let first = remaining.first {
                if sent >= first.iov_len {
                    sent -= first.iov_len
                    remaining.removeFirst()
                } else {
                    remaining[remaining.startIndex] = iovec(iov_base: first.iov_base + sent, iov_len: first.iov_len - sent)
                    sent = 0
                }
            }
        }
        // `buffers` is a parameter, alive until the last completion.
        withExtendedLifetime(buffers) {}
    }

    /// Sends all the bytes of `buffers` within `timeout`, or throws
    /// ``UringError/Kind/timedOut`` (how much was sent is then unknown, so
    /// close the connection); see ``sendAll(_:)-([Buffer])``. Each send is
    /// linked to a kernel timer for what is left of the time.
    public func sendAll<Buffer: IOBuffer>(_ buffers: [Buffer], timeout: Duration) async throws {
        try await withTimeout(timeout) { try await sendAll(buffers) }
    }

    /// Sends `buffer` with control messages, such as descriptors for the
    /// peer of a Unix socket (``ControlMessage/descriptors(_:)``); returns
    /// how many bytes the kernel took.
    public func send<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer, control: [ControlMessage]) async throws -> Int {
        let box = MessageBox(
            vectors: [iovec(iov_base: UnsafeMutableRawPointer(mutating: address(of: buffer)), iov_len: buffer.count)],
            control: control)
        return try await io.sendMessage(box, to: nil)
    }

    /// Sends the bytes of `buffers` in one request without copying them into
    /// the kernel (`SENDMSG_ZC`, Linux 6.1); see ``sendZeroCopy(_:)-(Buffer)``.
    ///
    /// - Throws: ``UringError/Kind/unsupported`` on kernels without it.
    public func sendZeroCopy<Buffer: IOBuffer>(_ buffers: [Buffer]) async throws -> Int {
        let box = MessageBox(vectors: Buffer.vectors(reading: buffers))
        let n = try await io.sendMessageZeroCopy(box, to: nil)
        withExtendedLifetime(buffers) {}
        return n
    }

    // MARK: Receiving

    /// Receives into `buffer`; returns the bytes received, or 0 once the
    /// peer has closed its sending side.
    @inlinable @inline(__always)
    public func receive<Buffer: IOBuffer & ~Copyable>(into buffer: inout Buffer) async throws -> Int {
        try await io.receive(address(of: &buffer), count: buffer.count)
    }

    /// Ownership form of ``receive(into:)-(Buffer)``: the buffer moves in and comes
    /// back inside the result, with the count (0 once the peer has closed
    /// its sending side) or the error.
    public func receive<Buffer: IOBuffer & ~Copyable>(consuming buffer: consuming Buffer) async -> IOResult<Buffer> {
        var owned = buffer
        do {
            let n = try await receive(into: &owned)
            return IOResult(buffer: owned, outcome: .success(n))
        } catch {
            return IOResult(buffer: owned, outcome: .failure(error))
        }
    }

    /// Receives up to `maximumCount` bytes into a new array; the array is
    /// empty once the peer has closed its sending side.
    public func receive(maximumCount: Int) async throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: maximumCount)
        let n = try await receive(into: &bytes)
        bytes.removeLast(bytes.count - n)
        return bytes
    }

    /// Receives into `buffers`, filling each in turn, in one request
    /// (`recvmsg` with one vector per buffer); returns the bytes received
    /// in all, or 0 once the peer has closed its sending side.
    public func receive<Buffer: IOBuffer>(into buffers: inout [Buffer]) async throws -> Int {
        let box = MessageBox(receivingInto: Buffer.vectors(writing: &buffers), controlCapacity: 0, withSender: false)
        // `buffers` is inout: the caller's, unmoved until the completion.
        return try await io.receiveMessage(box)
    }

    /// Receives into `buffer` together with the control messages that came
    /// with the bytes: descriptors passed by the peer of a Unix socket (any
    /// number, owned by the result until taken), credentials, and so on.
    ///
    /// - Parameters:
    ///   - buffer: Where the bytes go.
    ///   - controlCapacity: Bytes of room for control messages: each takes
    ///     a 16-byte header and its data rounded up to 8 bytes
    ///     (`CMSG_SPACE`); a descriptor's data is 4 bytes.
    public func receiveMessage<Buffer: IOBuffer & ~Copyable>(
        into buffer: inout Buffer, controlCapacity: Int = 256
    ) async throws -> ReceivedMessage {
        try SocketIO.validate(controlCapacity: controlCapacity, address: remoteAddress)
        let box = MessageBox(
            receivingInto: [iovec(iov_base: address(of: &buffer), iov_len: buffer.count)],
            controlCapacity: controlCapacity, withSender: false)
        let n = try await io.receiveMessage(box)
        return box.receivedMessage(count: n)
    }

    /// Everything the peer sends from now until it closes its side, as
    /// chunks in order, received by one multishot request into buffers from
    /// `pool` (the ring's shared pool when nil).
    ///
    /// See ``ReceivedChunks`` for back-pressure and buffer ownership.
    ///
    /// - Parameters:
    ///   - pool: The buffers to receive into; the ring's shared pool when nil.
    ///   - idleTimeout: If given, a `next()` that waits this long without a
    ///     byte arriving ends the sequence with ``UringError/Kind/timedOut``
    ///     (chunks already queued are returned first). It bounds silence, not
    ///     the exchange: a peer that trickles a byte now and then stays
    ///     within it. Bound a whole exchange with ``withTimeout(_:_:)``.
    public func received(using pool: ReceiveBufferPool? = nil, idleTimeout: Duration? = nil) -> ReceivedChunks {
        var chunks = ReceivedChunks(ring: ring, sharing: shared, address: remoteAddress, pool: pool)
        chunks.idleTimeout = idleTimeout
        return chunks
    }

    // MARK: Options and shutdown

    /// Turns Nagle's algorithm off (`TCP_NODELAY`) or back on.
    public func setNoDelay(_ on: Bool = true) async throws {
        try await io.setOption(level: Int32(IPPROTO_TCP), name: TCP_NODELAY, value: on ? 1 : 0)
    }

    /// Sets an integer socket option (`setsockopt`), through the ring where
    /// the kernel has socket commands (6.7+).
    public func setOption(level: Int32, name: Int32, value: Int32) async throws {
        try await io.setOption(level: level, name: name, value: value)
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

    /// Which direction ``shutdown(_:)`` ends.
    public enum Direction: Sendable {
        /// No more receiving.
        case receiving
        /// No more sending: the peer reads end of stream.
        case sending
        /// Both.
        case both
    }

    /// Ends one or both directions (`shutdown`); the descriptor stays open.
    public func shutdown(_ direction: Direction) async throws {
        let how: Int32 = switch direction {
        case .receiving: Int32(SHUT_RD)
        case .sending: Int32(SHUT_WR)
        case .both: Int32(SHUT_RDWR)
        }
        try await io.shutdown(how)
    }

    // MARK: Closing

    /// Closes the socket through the ring. The descriptor is released even
    /// when an error is thrown (then it is closed synchronously).
    ///
    /// If a ``received(using:idleTimeout:)`` sequence of this connection is still alive,
    /// it keeps the descriptor, and the descriptor closes when the sequence
    /// ends; this call then only gives up the connection's share.
    public consuming func close() async throws {
        guard isKnownUniquelyReferenced(&shared) else { return }
        let io = SocketIO(core: ring.core, fd: shared.detach(), address: remoteAddress)
        try await io.close()
    }

    /// Gives up ownership of the descriptor without closing it.
    ///
    /// If a ``received(using:idleTimeout:)`` sequence of this connection is
    /// still alive (or its last request is still finishing in the kernel),
    /// it keeps using the descriptor, so the one returned is a duplicate
    /// (`F_DUPFD_CLOEXEC`) for the same socket, and the original closes when
    /// the sequence is done.
    ///
    /// - Throws: ``UringError`` if that duplicate cannot be made (`EMFILE`).
    public consuming func takeDescriptor() throws(UringError) -> FileDescriptor {
        // Unique: no sequence holds it, so the number itself is handed over.
        if isKnownUniquelyReferenced(&shared) { return FileDescriptor(rawValue: shared.detach()) }
        return try shared.duplicate(path: nil, address: remoteAddress)
    }
}

// MARK: Passing descriptors

extension StreamConnection {
    /// Sends an open descriptor to the peer of a Unix-domain socket
    /// (`SCM_RIGHTS`), with `bytes` as the message's data (at least one
    /// byte). The caller keeps its own descriptor; the peer gets a new one
    /// for the same open file.
    public func sendDescriptor<Buffer: IOBuffer & ~Copyable>(
        _ descriptor: FileDescriptor, with bytes: borrowing Buffer
    ) async throws {
        let box = try MessageBox.passing(
            descriptor.rawValue, bytes: UnsafeMutableRawPointer(mutating: address(of: bytes)), count: bytes.count)
        _ = try await io.sendMessage(box, to: nil)
    }

    /// Receives a message that carries a descriptor (see
    /// ``sendDescriptor(_:with:)``).
    ///
    /// - Returns: The data bytes received into `buffer` and the descriptor,
    ///   now owned by the caller (close-on-exec), or nil if the message
    ///   carried none. The count is 0 when the peer has closed its side.
    public func receiveDescriptor<Buffer: IOBuffer & ~Copyable>(
        into buffer: inout Buffer
    ) async throws -> (count: Int, descriptor: FileDescriptor?) {
        let box = MessageBox(receivingInto: address(of: &buffer), count: buffer.count, withSender: false)
        let n = try await io.receiveMessage(box)
        return (n, box.receivedDescriptor().map { FileDescriptor(rawValue: $0) })
    }
}
