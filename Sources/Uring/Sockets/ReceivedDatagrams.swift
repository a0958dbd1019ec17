import CUring
import Glibc
import SystemPackage

/// One datagram from ``DatagramSocket/datagrams(using:idleTimeout:)``: its bytes, still
/// in the pool buffer the kernel chose, and who sent it.
public struct ReceivedDatagram: Sendable {
    /// The datagram's bytes (all of them unless ``truncated``). The pool
    /// buffer goes back when the last reference to them is gone.
    public let bytes: ReceivedBytes
    /// The sender's address (nil for an unnamed Unix socket).
    public let sender: SocketAddress?
    /// Whether the datagram was longer than a pool buffer holds, and cut.
    public let truncated: Bool
}

/// Every datagram a socket receives, in order, from one multishot
/// `recvmsg` request over a ``ReceiveBufferPool``; see
/// ``DatagramSocket/datagrams(using:idleTimeout:)``.
///
/// The kernel writes each datagram into a free pool buffer together with a
/// small header and the sender's address, so one request serves any number
/// of datagrams with no per-datagram submission and no copy. Each element
/// holds its buffer until dropped, and back-pressure works as for
/// ``ReceivedChunks``: at most 16 datagrams wait unconsumed; when the pool
/// is empty the request stops and datagrams wait in the socket's receive
/// buffer (and are dropped by the kernel once it is full, as UDP does).
///
/// The sequence never ends by itself: it throws on an error, throws
/// `CancellationError` when the iterating task is cancelled,
/// ``UringError/Kind/timedOut`` when its idle timeout or the task's
/// deadline passes while it waits, and ``UringError/Kind/ringShutDown``
/// when the ring shuts down.
///
/// Needs Linux 6.0 (multishot `recvmsg`); earlier kernels fail the first
/// `next()` with `EINVAL`.
public struct ReceivedDatagrams: AsyncSequence, Sendable {
    /// A received datagram.
    public typealias Element = ReceivedDatagram
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    let ring: RingActor
    let socket: Result<OwnedDescriptor, UringError>
    let address: SocketAddress?
    let pool: ReceiveBufferPool?
    /// How long one `next()` may wait for a datagram.
    let idleTimeout: Duration?

    /// Starts receiving (on the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: StreamConsumer { try await makeStream() })
    }

    /// Produces the datagrams in order.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: StreamConsumer<ReceivedDatagram>

        /// The next datagram.
        public nonisolated(nonsending) mutating func next() async throws -> ReceivedDatagram? {
            try await consumer.next()
        }

        /// The next datagram, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> ReceivedDatagram? {
            try await consumer.next()
        }
    }

    /// The bytes in front of each datagram in its pool buffer: the kernel's
    /// `io_uring_recvmsg_out` and room for the longest address.
    static let headerSize = MemoryLayout<io_uring_recvmsg_out>.size + MemoryLayout<sockaddr_storage>.size
}

extension ReceivedDatagrams {
    fileprivate nonisolated(nonsending) func makeStream() async throws -> MultishotStream<ReceivedDatagram> {
        let socket = try socket.get()
        let core = ring.core
        let address = address
        try core.admit(.receiveMessage, about: .address(address))
        let pool = try await ring.receivePool(self.pool, for: .receiveMessage, path: nil, address: address)
        guard pool.bufferSize > Self.headerSize else {
            throw UringError.invalid(
                .receiveMessage,
                "the pool's \(pool.bufferSize)-byte buffers leave no room for a datagram after its \(Self.headerSize)-byte header"
            ).about(address)
        }
        let header = MessageLayout()
        let share = ConsumerShare()
        return core.multishotStream(
            .receiveMessage, about: .address(address), highWater: 16, idleTimeout: idleTimeout,
            keepAlive: DatagramKeepAlive(socket: socket, pool: pool, header: header),
            prepare: {
                io_uring_prep_recvmsg_multishot(&$0, socket.fd, header.message, 0)
                cu_sqe_select_buffer(&$0, pool.group)
            },
            interpret: { result, flags in
                if flags & IORING_CQE_F_BUFFER != 0 {
                    let id = cu_cqe_buffer_id(flags)
                    if result > 0, let datagram = header.datagram(in: pool, buffer: id, length: Int(result), share: share) {
                        return .element(datagram)
                    }
                    pool.taken()
                    pool.giveBack(id)
                }
                if result >= 0 { return .nothing }
                if result == -ENOBUFS { return pool.exhausted(path: nil, address: address) }
                return .standard
            })
    }
}

/// The `msghdr` a multishot `recvmsg` is armed with. The kernel reads only
/// its lengths (room for an address, none for control data) and lays out
/// each buffer by them; reading a buffer back needs the same header.
private final class MessageLayout: @unchecked Sendable {
    // `@unchecked Sendable`: written once here, then only read, by the
    // kernel at submission and by the ring thread for each completion.
    let message: UnsafeMutablePointer<msghdr>

    init() {
        message = .allocate(capacity: 1)
        message.initialize(to: msghdr())
        message.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
    }

    deinit { message.deallocate() }

    /// The datagram the kernel wrote into buffer `id` (`length` bytes with
    /// its header), or nil for a buffer too short to hold one.
    func datagram(in pool: ReceiveBufferPool, buffer id: UInt16, length: Int, share: ConsumerShare) -> ReceivedDatagram? {
        let base = pool.address(of: id)
        guard let out = io_uring_recvmsg_validate(base, Int32(length), message) else { return nil }
        let nameLength = min(Int(out.pointee.namelen), Int(message.pointee.msg_namelen))
        let sender = nameLength > 0 ? SocketAddress(storage: io_uring_recvmsg_name(out), length: nameLength) : nil
        let payload = io_uring_recvmsg_payload(out, message)!
        let count = Int(io_uring_recvmsg_payload_length(out, Int32(length), message))
        let truncated = out.pointee.flags & UInt32(MSG_TRUNC) != 0
        let bytes = pool.chunk(buffer: id, offset: payload - base, count: count, for: share)
        return ReceivedDatagram(bytes: bytes, sender: sender, truncated: truncated)
    }
}

/// What a multishot `recvmsg` keeps alive until its last completion.
private final class DatagramKeepAlive: Sendable {
    let socket: OwnedDescriptor
    let pool: ReceiveBufferPool
    let header: MessageLayout
    init(socket: OwnedDescriptor, pool: ReceiveBufferPool, header: MessageLayout) {
        self.socket = socket
        self.pool = pool
        self.header = header
    }
}
