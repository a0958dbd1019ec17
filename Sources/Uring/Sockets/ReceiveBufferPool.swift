import CUring
import Glibc
import Synchronization
import SystemPackage

/// Buffers the kernel picks from when data arrives: a provided-buffer ring.
///
/// Multishot receives (``StreamConnection/received(using:idleTimeout:)``) do not name a
/// buffer up front. The kernel takes the next free one from the pool when
/// bytes arrive, and the chunk (``ReceivedBytes``) holds it until the
/// consumer drops the chunk; then it goes back to the kernel. An idle
/// connection holds no buffer, so one pool serves many connections.
///
/// The pool bounds memory: when every buffer is in consumers' hands, the
/// kernel stops receiving (data waits in the socket, and TCP slows the
/// sender), and receiving resumes as buffers come back.
///
/// The pool is shared fairly: one receiving sequence holds at most
/// ``perConsumerLimit`` of its buffers at a time, counting the chunks that
/// wait in its queue and those its consumer still holds. Bytes that arrive
/// for a sequence already at its limit (a client that sends while the
/// server's consumer is stuck, say, on a peer that does not read) are copied
/// into memory of the chunk's own and the pool buffer goes straight back, so
/// a few slow consumers cannot starve every other connection. The copies are
/// bounded too: the sequence pauses its request once 16 chunks wait.
///
/// ```swift
/// let pool = try await ReceiveBufferPool(bufferCount: 64, bufferSize: 4096, on: ring)
/// for try await chunk in connection.received(using: pool) { … }
/// ```
public final class ReceiveBufferPool: Sendable {
    /// How many buffers the pool has.
    public let bufferCount: Int
    /// The size of each buffer in bytes.
    public let bufferSize: Int
    /// The most buffers one receiving sequence holds at a time; see the
    /// type's discussion of fairness.
    public let perConsumerLimit: Int
    /// The provided-buffer group id the kernel knows the pool by.
    let group: UInt16
    let core: RingCore
    private let counters: ServerCounters
    private let memory: Storage

    /// Buffers the kernel filled that chunks still hold. Counted without the
    /// lock, so the ring thread takes none per chunk; it only shrinks under
    /// the lock (in `giveBack`), which `waitForBuffer` checks it under.
    private let outstanding = Atomic<Int>(0)
    /// Set once an exhaustion has been reported, cleared when a buffer comes back.
    private let exhaustionReported = Atomic<Bool>(false)
    /// Streams whose receive stopped because the pool was empty; also guards
    /// the descriptor ring, which has one writer at a time. Held weakly: a
    /// stream its consumer dropped while it waited must not stay alive here
    /// (with its socket) until a buffer comes back.
    private let waiters = Locked(FIFO<WaitingStream>())

    private struct WaitingStream: Sendable {
        weak var stream: (any PoolWaiter)?
    }

    /// The pool's memory: the buffers and the ring of their descriptors.
    private final class Storage: @unchecked Sendable {
        // `@unchecked Sendable`: the buffers are written by the kernel and
        // read by the one consumer holding each; the descriptor ring is
        // written only under the pool's lock (and read by the kernel).
        let buffers: UnsafeMutableRawPointer
        let ring: UnsafeMutablePointer<io_uring_buf_ring>
        init(buffers: UnsafeMutableRawPointer, ring: UnsafeMutablePointer<io_uring_buf_ring>) {
            self.buffers = buffers
            self.ring = ring
        }
    }

    /// Creates a pool and registers it with `ring`.
    ///
    /// - Parameters:
    ///   - bufferCount: A power of two from 1 to 32,768.
    ///   - bufferSize: Bytes per buffer; one receive completes at most this many.
    ///   - perConsumerLimit: The most buffers one receiving sequence may
    ///     hold; nil picks an eighth of the pool, at most 2 and at least 1.
    ///     Stalled consumers can hold the whole pool only if there are
    ///     `bufferCount / perConsumerLimit` of them (128 with the defaults):
    ///     bound how many connections a server handles, or how long a
    ///     handler may stall (a send timeout), below that.
    ///   - ring: The ring whose receives take buffers from the pool.
    /// - Throws: ``UringError`` of kind ``UringError/Kind/invalidArgument``
    ///   for bad sizes, or the kernel's error (`ENOMEM`, or `EINVAL` on kernels
    ///   before 5.19, which lack buffer rings).
    public convenience init(
        bufferCount: Int = 256, bufferSize: Int = 16 * 1024, perConsumerLimit: Int? = nil, on ring: RingActor
    ) async throws {
        try await self.init(
            bufferCount: bufferCount, bufferSize: bufferSize, perConsumerLimit: perConsumerLimit, ring: ring)
    }

    init(bufferCount: Int, bufferSize: Int, perConsumerLimit: Int? = nil, ring: RingActor) async throws {
        let core = ring.core
        guard bufferCount > 0, bufferCount <= 32_768, bufferCount & (bufferCount - 1) == 0 else {
            throw UringError.invalid(.registerBuffers, "bufferCount \(bufferCount) must be a power of two from 1 to 32768")
        }
        guard bufferSize > 0, bufferSize <= DescriptorIO.maximumTransfer else {
            throw UringError.invalid(.registerBuffers, "bufferSize \(bufferSize) must be from 1 to \(DescriptorIO.maximumTransfer)")
        }
        if let perConsumerLimit, perConsumerLimit < 1 || perConsumerLimit > bufferCount {
            throw UringError.invalid(
                .registerBuffers, "perConsumerLimit \(perConsumerLimit) must be from 1 to bufferCount (\(bufferCount))")
        }
        var raw: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&raw, 4096, bufferCount * bufferSize) == 0, let buffers = raw else {
            throw UringError.system(.registerBuffers, ENOMEM)
        }
        guard let group = core.allocateBufferGroup() else {
            free(buffers)
            throw UringError(
                .system, operation: .registerBuffers, errno: .noBufferSpace,
                detail: "all 65536 buffer group ids of this ring are in use")
        }
        let entries = UInt32(bufferCount)
        let registered = await core.onRingThread { (open: Bool) -> Result<UInt, UringError> in
            guard open else { return .failure(.shutDown(.registerBuffers)) }
            guard let ring = cu_setup_buf_ring(core.ring, entries, group) else {
                return .failure(.system(.registerBuffers, Glibc.errno))
            }
            return .success(UInt(bitPattern: ring))
        }
        let ringAddress: UInt
        switch registered {
        case .success(let address): ringAddress = address
        case .failure(let error):
            free(buffers)
            core.releaseBufferGroup(group)
            throw error
        }
        self.bufferCount = bufferCount
        self.bufferSize = bufferSize
        self.perConsumerLimit = perConsumerLimit ?? Swift.max(1, Swift.min(2, bufferCount / 8))
        self.group = group
        self.core = core
        self.counters = ring.serverCounters
        self.memory = Storage(
            buffers: buffers, ring: UnsafeMutablePointer(bitPattern: ringAddress)!)
        for id in 0..<bufferCount { give(UInt16(id)) }
        // A stream waiting for a buffer has no request in the kernel, so
        // the ring's shutdown would not end it.
        core.onShutdown { [weak self] in self?.endWaiters() }
    }

    /// Ends every stream waiting for a buffer: the ring is shutting down.
    private func endWaiters() {
        let streams = waiters.withLock { waiters -> [any PoolWaiter] in
            var streams: [any PoolWaiter] = []
            while let waiter = waiters.popFirst() {
                if let stream = waiter.stream { streams.append(stream) }
            }
            return streams
        }
        for stream in streams { stream.finish(throwing: UringError.shutDown(.receive)) }
    }

    deinit {
        // Nothing can use the group any more: every request that selects from
        // it and every chunk holding a buffer keeps the pool alive.
        let memory = self.memory
        let core = self.core
        let entries = UInt32(bufferCount)
        let group = self.group
        core.onRingThread { open in
            cu_free_buf_ring(core.ring, memory.ring, entries, group, open ? 1 : 0)
            free(memory.buffers)
            core.releaseBufferGroup(group)
        }
    }

    /// The address of buffer `id`.
    func address(of id: UInt16) -> UnsafeMutableRawPointer {
        memory.buffers + Int(id) * bufferSize
    }

    private func give(_ id: UInt16) {
        cu_buf_ring_give(memory.ring, UInt32(bufferCount), address(of: id), UInt32(bufferSize), id)
    }

    /// Notes that the kernel filled buffer `id` and a chunk now holds it.
    func taken() {
        outstanding.add(1, ordering: .relaxed)
    }

    /// A chunk let go of buffer `id`: back to the kernel, and a waiting
    /// stream may receive again.
    /// Whether this exhaustion is news: true once, then false until a
    /// buffer comes back (so the event is reported once per exhaustion).
    func noteExhausted() -> Bool {
        !exhaustionReported.exchange(true, ordering: .relaxed)
    }

    func giveBack(_ id: UInt16) {
        if exhaustionReported.load(ordering: .relaxed) { exhaustionReported.store(false, ordering: .relaxed) }
        let waiter = waiters.withLock { waiters -> (any PoolWaiter)? in
            give(id)
            outstanding.subtract(1, ordering: .relaxed)
            while let waiter = waiters.popFirst() {
                if let stream = waiter.stream, stream.isWaitingForResources { return stream }
            }
            return nil
        }
        waiter?.resourcesReturned()
    }

    /// Registers `stream` to be re-armed when a buffer comes back. Returns
    /// true if buffers are free already (then the caller re-arms it).
    func waitForBuffer(_ stream: any PoolWaiter) -> Bool {
        waiters.withLock { waiters in
            if outstanding.load(ordering: .relaxed) < bufferCount { return true }
            waiters.append(WaitingStream(stream: stream))
            return false
        }
    }

    /// What a multishot receive over this pool does when the kernel found
    /// it empty (`ENOBUFS`): count and report the starvation (once per
    /// exhaustion), then stay down until a buffer comes back.
    func exhausted<Element>(path: FilePath?, address: SocketAddress?) -> MultishotEvent<Element> {
        counters.receivePoolWaits.add(1, ordering: .relaxed)
        if noteExhausted() {
            core.report(.receivePoolExhausted(path: path, address: address, bufferCount: bufferCount))
        }
        return .waitForResources { [self] stream in
            if waitForBuffer(stream) { stream.resourcesReturned() }
        }
    }

    /// Streams waiting for a buffer to come back (for tests).
    var waitingStreams: Int { waiters.withLock { $0.count } }

    /// Buffers currently held by chunks: queued for their consumers or in
    /// the consumers' hands. A reading, not a synchronised count.
    public var buffersInUse: Int { outstanding.load(ordering: .relaxed) }

    /// The chunk for a completion that filled buffer `id` with `count`
    /// bytes for the sequence whose holdings `share` counts: the buffer
    /// itself while the sequence is under its limit, otherwise a copy, and
    /// the buffer goes back to the kernel at once.
    func chunk(buffer id: UInt16, offset: Int = 0, count: Int, for share: ConsumerShare) -> ReceivedBytes {
        if share.hold(limit: perConsumerLimit) {
            return ReceivedBytes(pool: self, id: id, offset: offset, count: count, share: share)
        }
        counters.receiveCopies.add(1, ordering: .relaxed)
        outstanding.add(1, ordering: .relaxed)  // balanced by `giveBack`
        let copy = ReceivedBytes(copying: UnsafeRawPointer(address(of: id) + offset), count: count)
        giveBack(id)
        return copy
    }
}

/// A receiving stream that can wait for a pool buffer to come back: the
/// stream of chunks or of datagrams.
protocol PoolWaiter: AnyObject, Sendable {
    /// Whether the stream still waits (it may have ended meanwhile).
    var isWaitingForResources: Bool { get }
    /// Re-arms the stream's request.
    func resourcesReturned()
    /// Ends the stream with `error`.
    func finish(throwing error: (any Error)?)
}

extension MultishotStream: PoolWaiter {}

/// How many pool buffers one receiving sequence's chunks hold right now.
final class ConsumerShare: Sendable {
    private let held = Atomic<Int>(0)

    /// Counts one more buffer if the sequence holds fewer than `limit`.
    /// Only the ring thread adds, so the check and the add cannot race with
    /// another add; releases only make the count smaller.
    func hold(limit: Int) -> Bool {
        guard held.load(ordering: .relaxed) < limit else { return false }
        held.add(1, ordering: .relaxed)
        return true
    }

    func release() {
        held.subtract(1, ordering: .relaxed)
    }
}

/// Bytes received into a pool buffer; the buffer goes back to the pool
/// when the last reference to this chunk is gone.
///
/// Hold chunks only as long as needed: while a consumer holds them, the
/// kernel cannot reuse their buffers. Copy out (`Array(chunk)`) to keep
/// the bytes longer.
public final class ReceivedBytes: RandomAccessCollection, Sendable {
    /// Where the bytes live: a pool buffer, or memory of the chunk's own.
    private enum Storage {
        case pool(ReceiveBufferPool, id: UInt16, share: ConsumerShare)
        case own
    }
    private let storage: Storage
    /// The number of bytes.
    public let count: Int
    private let base: UnsafeAddress

    /// An address that may cross threads: the bytes are the chunk's alone
    /// until it gives the buffer back.
    private struct UnsafeAddress: @unchecked Sendable {
        // `@unchecked Sendable`: immutable, and the memory it points to is
        // owned by this chunk until deinit.
        let pointer: UnsafeRawPointer
    }

    /// A chunk holding pool buffer `id` (its bytes from `offset`), counted
    /// in `share`.
    init(pool: ReceiveBufferPool, id: UInt16, offset: Int = 0, count: Int, share: ConsumerShare) {
        self.storage = .pool(pool, id: id, share: share)
        self.count = count
        self.base = UnsafeAddress(pointer: UnsafeRawPointer(pool.address(of: id) + offset))
        pool.taken()
    }

    /// A chunk holding a copy of `count` bytes at `source`.
    init(copying source: UnsafeRawPointer, count: Int) {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(1, count), alignment: 16)
        memory.copyMemory(from: source, byteCount: count)
        self.storage = .own
        self.count = count
        self.base = UnsafeAddress(pointer: UnsafeRawPointer(memory))
    }

    deinit {
        switch storage {
        case .pool(let pool, let id, let share):
            share.release()
            pool.giveBack(id)
        case .own:
            base.pointer.deallocate()
        }
    }

    /// The first index, 0.
    public var startIndex: Int { 0 }
    /// One past the last index, ``count``.
    public var endIndex: Int { count }

    /// The byte at `position`.
    public subscript(position: Int) -> UInt8 {
        precondition(position >= 0 && position < count, "index out of range")
        return base.pointer.load(fromByteOffset: position, as: UInt8.self)
    }

    /// Calls `body` with the bytes, valid only during the call.
    public func withUnsafeBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        defer { withExtendedLifetime(self) {} }
        return try body(UnsafeRawBufferPointer(start: base.pointer, count: count))
    }

    /// Contiguous access for the standard library's fast paths (`Array(chunk)`).
    public func withContiguousStorageIfAvailable<Result>(
        _ body: (UnsafeBufferPointer<UInt8>) throws -> Result
    ) rethrows -> Result? {
        try withUnsafeBytes { try body($0.bindMemory(to: UInt8.self)) }
    }

    @usableFromInline var rawAddress: UnsafeRawPointer { base.pointer }
}
