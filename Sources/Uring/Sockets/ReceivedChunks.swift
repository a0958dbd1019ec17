import CUring
import Glibc
import SystemPackage

/// What a stream socket receives, or what a pipe, tty or eventfd yields to
/// reads, as chunks in order, from one multishot request. See
/// ``StreamConnection/received(using:idleTimeout:)`` and ``File/arrivals(using:)``.
///
/// The kernel fills buffers of a ``ReceiveBufferPool`` as bytes arrive, and
/// each chunk holds its buffer until the consumer drops it. The sequence
/// ends normally when the peer closes its sending side, throws on an error
/// (for example `ECONNRESET`), throws `CancellationError` when the
/// iterating task is cancelled, and throws ``UringError/Kind/timedOut`` when
/// its idle timeout or the task's deadline (``withDeadline(_:_:)``) passes
/// while it waits.
///
/// Back-pressure: at most 16 chunks wait unconsumed, and the pool's buffers
/// bound the rest. One sequence holds at most the pool's
/// ``ReceiveBufferPool/perConsumerLimit`` buffers; chunks beyond it are
/// copies, so a stalled consumer cannot take the pool from the others. When the request is paused, or stopped because every
/// buffer is in use, it is re-armed as soon as there is room again; the
/// bytes in between wait in the socket, so nothing is lost or reordered.
public struct ReceivedChunks: AsyncSequence, Sendable {
    /// A chunk of received bytes, holding one pool buffer.
    public typealias Element = ReceivedBytes
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    let ring: RingActor
    let socket: Result<OwnedDescriptor, UringError>
    let address: SocketAddress?
    let path: FilePath?
    let pool: ReceiveBufferPool?
    /// `.receive` (multishot recv) or `.readMultishot`.
    let operation: UringOperation
    /// How long one `next()` may wait for bytes; see
    /// ``StreamConnection/received(using:idleTimeout:)``.
    var idleTimeout: Duration? = nil

    /// A sequence over `descriptor`, which it shares with its owner.
    init(
        ring: RingActor, sharing descriptor: OwnedDescriptor, address: SocketAddress?, path: FilePath? = nil,
        pool: ReceiveBufferPool?, operation: UringOperation = .receive
    ) {
        self.init(ring: ring, socket: .success(descriptor), address: address, path: path, pool: pool, operation: operation)
    }

    /// A sequence over its own duplicate of `fd`, for owners that do not
    /// share their descriptor.
    init(
        ring: RingActor, duplicating fd: Int32, address: SocketAddress?, path: FilePath? = nil,
        pool: ReceiveBufferPool?, operation: UringOperation = .receive
    ) {
        let socket = Result { () throws(UringError) in
            OwnedDescriptor(try OwnedDescriptor.duplicate(fd, path: path, address: address))
        }
        self.init(ring: ring, socket: socket, address: address, path: path, pool: pool, operation: operation)
    }

    private init(
        ring: RingActor, socket: Result<OwnedDescriptor, UringError>, address: SocketAddress?, path: FilePath?,
        pool: ReceiveBufferPool?, operation: UringOperation
    ) {
        self.ring = ring
        self.socket = socket
        self.address = address
        self.path = path
        self.pool = pool
        self.operation = operation
    }

    /// Starts receiving (on the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: StreamConsumer { try await makeStream() })
    }

    /// Produces the received chunks in order.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: StreamConsumer<ReceivedBytes>

        /// The next chunk; nil once the peer has closed its side.
        public nonisolated(nonsending) mutating func next() async throws -> ReceivedBytes? {
            try await consumer.next()
        }

        /// The next chunk, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> ReceivedBytes? {
            try await consumer.next()
        }
    }
}

extension ReceivedChunks {
    /// The stream of one iterator: one multishot request over the pool.
    fileprivate nonisolated(nonsending) func makeStream() async throws -> MultishotStream<ReceivedBytes> {
        let socket = try socket.get()
        let core = ring.core
        let address = address
        let path = path
        // Before multishot reads (6.7), one read per chunk, each picking a
        // pool buffer and re-armed by the stream as the last completes.
        let operation = operation == .readMultishot && !core.isSupported(.readMultishot) ? .read : operation
        try core.admit(operation, about: .descriptor(path: path, address: address))
        let pool = try await ring.receivePool(self.pool, for: operation, path: path, address: address)
        let share = ConsumerShare()
        return core.multishotStream(
            operation, about: .descriptor(path: path, address: address), highWater: 16, idleTimeout: idleTimeout,
            keepAlive: ReceiveKeepAlive(socket: socket, pool: pool),
            prepare: {
                if operation == .readMultishot {
                    cu_prep_read_multishot(&$0, socket.fd, pool.group)
                } else if operation == .read {
                    io_uring_prep_read(&$0, socket.fd, nil, UInt32(pool.bufferSize), DescriptorIO.currentPosition)
                    cu_sqe_select_buffer(&$0, pool.group)
                } else {
                    io_uring_prep_recv(&$0, socket.fd, nil, 0, 0)
                    cu_sqe_or_ioprio(&$0, UInt16(IORING_RECV_MULTISHOT))
                    cu_sqe_select_buffer(&$0, pool.group)
                }
            },
            interpret: { result, flags in
                if flags & IORING_CQE_F_BUFFER != 0 {
                    let id = cu_cqe_buffer_id(flags)
                    if result > 0 { return .element(pool.chunk(buffer: id, count: Int(result), for: share)) }
                    // A buffer with no bytes goes straight back.
                    pool.taken()
                    pool.giveBack(id)
                }
                if result > 0 { return .nothing }
                if result == 0 { return .end }  // the peer closed its side
                if result == -ENOBUFS { return pool.exhausted(path: path, address: address) }
                return .standard
            })
    }
}

/// What a multishot receive keeps alive until its last completion.
final class ReceiveKeepAlive: Sendable {
    let socket: OwnedDescriptor
    let pool: ReceiveBufferPool
    init(socket: OwnedDescriptor, pool: ReceiveBufferPool) {
        self.socket = socket
        self.pool = pool
    }
}
