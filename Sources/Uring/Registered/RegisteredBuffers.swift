import CUring
import Glibc
import SystemPackage

/// Buffers registered with a ring (`IORING_REGISTER_BUFFERS`): the kernel
/// pins their pages once, so reads and writes into them
/// (`IORING_OP_READ_FIXED`, `IORING_OP_WRITE_FIXED`) skip mapping user
/// memory on every request.
///
/// A ring holds one set at a time. Take a buffer with ``take()``, or wait
/// for one with ``next()`` when all are lent (a pool, as tokio-uring's
/// `FixedBufPool`); it goes back to the set when dropped. ``File`` and ``RegisteredFile`` use the
/// fixed operations whenever they are given a ``RegisteredBuffer`` of their
/// own ring.
///
/// ```swift
/// let buffers = try await ring.registerBuffers(count: 32, size: 64 * 1024)
/// var buffer = buffers.take()!
/// let n = try await file.read(into: &buffer, at: 0)
/// ```
public final class RegisteredBuffers: Sendable {
    /// How many buffers the set has.
    public let count: Int
    /// The size of each buffer in bytes.
    public let size: Int
    let core: RingCore
    private let memory: Memory
    private let state: Locked<PoolState>

    /// The free buffers, and the tasks waiting for one in ``next()``.
    struct PoolState {
        var free: [Int]
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Int, any Error>)] = []
        var nextWaiter: UInt64 = 0
        var shutDown = false
    }

    /// The buffers' memory and the iovec table describing it.
    final class Memory: @unchecked Sendable {
        // `@unchecked Sendable`: each buffer's bytes are used by the one
        // `RegisteredBuffer` holding it (and the kernel during its request);
        // the iovecs are written once, before registration.
        let base: UnsafeMutableRawPointer
        let vectors: UnsafeMutablePointer<iovec>
        init(count: Int, size: Int) {
            base = UnsafeMutableRawPointer.allocate(byteCount: count * size, alignment: AlignedBuffer.pageSize)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: count * size)
            vectors = .allocate(capacity: count)
            for i in 0..<count {
                vectors[i] = iovec(iov_base: base + i * size, iov_len: size)
            }
        }
        deinit {
            base.deallocate()
            vectors.deallocate()
        }
    }

    init(count: Int, size: Int, core: RingCore) async throws {
        guard count > 0 && count <= 16384, size > 0 && size <= 1 << 30, count * size <= 1 << 32 else {
            throw UringError.invalid(
                .registerBuffers,
                "\(count) buffers of \(size) bytes: need 1 to 16,384 buffers of 1 byte to 1 GiB, 4 GiB in all")
        }
        let memory = Memory(count: count, size: size)
        try await Registration.perform(.registerBuffers, on: core) { ring in
            io_uring_register_buffers(ring, memory.vectors, UInt32(count))
        }
        self.count = count
        self.size = size
        self.core = core
        self.memory = memory
        self.state = Locked(PoolState(free: Array((0..<count).reversed())))
        // Waiters have no request in the kernel for shutdown to cancel.
        core.onShutdown { [weak self] in self?.failWaiters() }
    }

    deinit {
        // Every buffer holds the set, so none is in use now; the memory is
        // freed only after the kernel has let go of it.
        let memory = self.memory
        core.onRingThread { [core] open in
            if open { _ = io_uring_unregister_buffers(core.ring) }
            withExtendedLifetime(memory) {}
        }
    }

    /// A free buffer, or nil when every one is taken.
    public func take() -> RegisteredBuffer? {
        guard let index = state.withLock({ $0.free.popLast() }) else { return nil }
        return RegisteredBuffer(owner: self, index: index)
    }

    /// A free buffer, waiting (in turn with other waiters) for one to come
    /// back when every one is taken.
    ///
    /// ```swift
    /// var buffer = try await buffers.next()
    /// let n = try await file.read(into: &buffer, at: offset)
    /// ```
    ///
    /// - Throws: `CancellationError` when the waiting task is cancelled, or
    ///   ``UringError`` of kind ``UringError/Kind/ringShutDown`` once the
    ///   ring has shut down.
    public func next() async throws -> RegisteredBuffer {
        if let buffer = take() { return buffer }
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let index = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int, any Error>) in
                // Checked under the lock that the handler below also takes:
                // a cancellation that came before the waiter was listed is
                // seen here, and one after finds the waiter there.
                let now: Result<Int, any Error>? = state.withLock { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.shutDown { return .failure(UringError.shutDown(.registerBuffers)) }
                    if let index = state.free.popLast() { return .success(index) }
                    state.waiters.append((id, continuation))
                    return nil
                }
                if let now { continuation.resume(with: now) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0).continuation }
            }
            waiter?.resume(throwing: CancellationError())
        }
        return RegisteredBuffer(owner: self, index: index)
    }

    /// Buffers not taken right now.
    public var availableCount: Int { state.withLock { $0.free.count } }

    /// Tasks waiting in ``next()`` right now.
    public var waitingCount: Int { state.withLock { $0.waiters.count } }

    /// A buffer comes back: to the first waiter if there is one.
    func giveBack(_ index: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Int, any Error>? in
            if !state.waiters.isEmpty { return state.waiters.removeFirst().continuation }
            state.free.append(index)
            return nil
        }
        waiter?.resume(returning: index)
    }

    /// Fails every waiter: the ring has shut down.
    private func failWaiters() {
        let waiters = state.withLock { state in
            state.shutDown = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters {
            waiter.continuation.resume(throwing: UringError.shutDown(.registerBuffers))
        }
    }

    func address(of index: Int) -> UnsafeMutableRawPointer {
        memory.base + index * size
    }
}

extension RingActor {
    /// Registers `count` buffers of `size` bytes with the ring; see
    /// ``RegisteredBuffers``. The set is unregistered when it and every
    /// buffer taken from it are gone.
    ///
    /// - Throws: ``UringError`` naming `register_buffers`: `EBUSY` when the
    ///   ring already has a set, `ENOMEM` when the pages cannot be pinned
    ///   (`RLIMIT_MEMLOCK`).
    public nonisolated(nonsending) func registerBuffers(count: Int, size: Int) async throws -> RegisteredBuffers {
        try await RegisteredBuffers(count: count, size: size, core: core)
    }
}

/// One buffer of a ``RegisteredBuffers`` set, back in the set when dropped.
///
/// Noncopyable, so it has one owner, and reads lend it to the kernel
/// (`inout`) exactly like any other ``IOBuffer``.
public struct RegisteredBuffer: ~Copyable, Sendable {
    let owner: RegisteredBuffers
    /// The buffer's number in its set (the kernel's `buf_index`).
    let number: Int

    /// The buffer's place in its set.
    public var index: RegisteredIndex { RegisteredIndex(number) }

    init(owner: RegisteredBuffers, index: Int) {
        self.owner = owner
        self.number = index
    }

    deinit { owner.giveBack(number) }

    /// The buffer's size in bytes.
    public var count: Int { owner.size }

    /// A copy of the first `count` bytes (all by default).
    public func copyBytes(count: Int? = nil) -> [UInt8] {
        let n = min(count ?? self.count, self.count)
        return Array(UnsafeRawBufferPointer(start: owner.address(of: number), count: n))
    }

    /// Calls `body` with the buffer's bytes to change them.
    public mutating func withUnsafeMutableBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(UnsafeMutableRawBufferPointer(start: owner.address(of: number), count: count))
    }

    /// Prepares a fixed read or write of this buffer and performs it.
    nonisolated(nonsending) func transfer(
        _ operation: UringOperation, ring: RingActor, path: FilePath?,
        _ prepare: (inout io_uring_sqe, UnsafeMutableRawPointer, UInt32, Int32) -> Void
    ) async throws -> Int {
        guard owner.core === ring.core else {
            throw UringError.invalid(operation, path: path, "the registered buffer belongs to another ring")
        }
        let pointer = owner.address(of: number)
        let length = UInt32(min(count, DescriptorIO.maximumTransfer))
        let index = Int32(number)
        // The set (and so the memory) lives while this buffer does, and the
        // buffer is lent to this call until the completion.
        return Int(try await ring.core.perform(operation, about: .path(path)) { prepare(&$0, pointer, length, index) })
    }
}

extension RegisteredBuffer: IOBuffer {
    /// This library's conformance.
    public static var _ioBufferConformance: IOBufferConformance { IOBufferConformance() }

    /// Calls `body` with the buffer's bytes, for the kernel to read.
    public func withUnsafeIOBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(UnsafeRawBufferPointer(start: owner.address(of: number), count: count))
    }

    /// Calls `body` with the buffer's bytes, for the kernel to write.
    public mutating func withUnsafeMutableIOBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withUnsafeMutableBytes(body)
    }
}

extension File {
    /// Reads into a registered buffer of this file's ring
    /// (`IORING_OP_READ_FIXED`); returns the bytes read (0 at end).
    public func read(into buffer: inout RegisteredBuffer, at offset: Int64) async throws -> Int {
        try io.validate(.readFixed, count: buffer.count, offset: offset)
        let fd = descriptor.rawValue
        return try await buffer.transfer(.readFixed, ring: ring, path: path) { sqe, pointer, length, index in
            io_uring_prep_read_fixed(&sqe, fd, pointer, length, UInt64(offset), index)
        }
    }

    /// Writes a registered buffer of this file's ring at `offset`
    /// (`IORING_OP_WRITE_FIXED`); returns the bytes written.
    public func write(_ buffer: borrowing RegisteredBuffer, at offset: Int64) async throws -> Int {
        try io.validate(.writeFixed, count: buffer.count, offset: offset)
        let fd = descriptor.rawValue
        return try await buffer.transfer(.writeFixed, ring: ring, path: path) { sqe, pointer, length, index in
            io_uring_prep_write_fixed(&sqe, fd, pointer, length, UInt64(offset), index)
        }
    }
}
