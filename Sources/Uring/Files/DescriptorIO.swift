import CUring
import Glibc
import SystemPackage

/// The ring operations every descriptor type shares, written once.
///
/// It holds no ownership: `File` and the other descriptor types own the
/// descriptor, and borrow themselves for the length of each call.
@usableFromInline
struct DescriptorIO {
    @usableFromInline let core: RingCore
    /// The descriptor, or the registered-file slot when `fixedFile`.
    let fd: Int32
    let path: FilePath?
    /// `fd` is a slot of the ring's registered-file table.
    var fixedFile = false

    /// The kernel caps one transfer at this many bytes (`MAX_RW_COUNT`).
    @usableFromInline static let maximumTransfer = 0x7fff_f000
    /// The most buffers one vectored request may have (`UIO_MAXIOV`).
    static let maximumVectors = 1024
    /// `-1` as an io_uring offset: use and advance the file position.
    static let currentPosition = UInt64.max

    func validate(_ operation: UringOperation, count: Int, offset: Int64?) throws {
        if count == 0 {
            throw UringError.invalid(operation, path: path, "the buffer is empty; pass at least one byte")
        }
        guard let offset else { return }
        if offset < 0 {
            throw UringError.invalid(operation, path: path, "offset \(offset) is negative")
        }
        if offset > Int64.max - Int64(count) {
            throw UringError.invalid(operation, path: path, "offset \(offset) plus \(count) bytes overflows a file offset")
        }
    }

    @inlinable @inline(__always)
    nonisolated(nonsending) func read(into address: UnsafeMutableRawPointer, count: Int, offset: Int64?) async throws -> Int {
        try await transfer(.read, address, count: count, offset: offset)
    }

    @inlinable @inline(__always)
    nonisolated(nonsending) func write(from address: UnsafeRawPointer, count: Int, offset: Int64?) async throws -> Int {
        try await transfer(.write, UnsafeMutableRawPointer(mutating: address), count: count, offset: offset)
    }

    /// One read or write of at most `maximumTransfer` bytes; for a write the
    /// kernel only reads from `address`. Inlined into its public callers
    /// (see `RingCore.awaitStarted`): one that completes during its
    /// submission costs no async call.
    @inlinable @inline(__always)
    nonisolated(nonsending) func transfer(
        _ operation: UringOperation, _ address: UnsafeMutableRawPointer, count: Int, offset: Int64?
    ) async throws -> Int {
        guard let slot = try startTransfer(operation, address, count: count, offset: offset) else {
            return try await transferWithDeadline(operation, address, count: count, offset: offset)
        }
        await core.awaitStarted(slot)
        return try finishTransfer(slot, operation)
    }

    /// Starts a read or write, unless a deadline is in force (nil).
    @usableFromInline
    func startTransfer(
        _ operation: UringOperation, _ address: UnsafeMutableRawPointer, count: Int, offset: Int64?
    ) throws -> OperationSlot? {
        try validate(operation, count: count, offset: offset)
        return try core.start(operation, about: .path(path)) { prepareTransfer(operation, address, count: count, offset: offset, &$0) }
    }

    /// The request's result, or its error naming the path.
    @usableFromInline
    func finishTransfer(_ slot: OperationSlot, _ operation: UringOperation) throws -> Int {
        Int(try core.finish(slot, operation, about: .path(path)))
    }

    /// A read or write bounded by the task's deadline.
    @usableFromInline
    nonisolated(nonsending) func transferWithDeadline(
        _ operation: UringOperation, _ address: UnsafeMutableRawPointer, count: Int, offset: Int64?
    ) async throws -> Int {
        try validate(operation, count: count, offset: offset)
        return Int(try await core.perform(operation, about: .path(path)) { prepareTransfer(operation, address, count: count, offset: offset, &$0) })
    }

    private func prepareTransfer(
        _ operation: UringOperation, _ address: UnsafeMutableRawPointer, count: Int, offset: Int64?, _ request: inout io_uring_sqe
    ) {
        let length = UInt32(min(count, Self.maximumTransfer))
        let position = offset.map { UInt64($0) } ?? Self.currentPosition
        let opcode = operation == .read ? IORING_OP_READ : IORING_OP_WRITE
        io_uring_prep_rw(Int32(opcode.rawValue), &request, fd, address, length, position)
        if fixedFile { cu_sqe_use_fixed_file(&request) }
    }

    /// Writes all `count` bytes, continuing after short writes.
    nonisolated(nonsending) func writeAll(from address: UnsafeRawPointer, count: Int, offset: Int64?) async throws {
        try validate(.write, count: count, offset: offset)
        var done = 0
        while done < count {
            let n = try await write(from: address + done, count: count - done, offset: offset.map { $0 + Int64(done) })
            if n == 0 {
                throw UringError(.system, operation: .write, errno: .noSpace, path: path, detail: "the kernel accepted no bytes")
            }
            done += n
        }
    }

    /// Reads until `count` bytes or end of file; returns the bytes read.
    nonisolated(nonsending) func readAll(into address: UnsafeMutableRawPointer, count: Int, offset: Int64?) async throws -> Int {
        try validate(.read, count: count, offset: offset)
        var done = 0
        while done < count {
            let n = try await read(into: address + done, count: count - done, offset: offset.map { $0 + Int64(done) })
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// A vectored read or write. The request holds `vectors` until the
    /// kernel's completion (the kernel reads the array when it submits).
    nonisolated(nonsending) func vectored(
        _ operation: UringOperation, _ vectors: KernelMemory<iovec>, total: Int, offset: Int64?
    ) async throws -> Int {
        try validate(operation, count: total, offset: offset)
        let position = offset.map { UInt64($0) } ?? Self.currentPosition
        let n = try await core.perform(operation, about: .path(path), keepAlive: vectors) {
            if operation == .readVectored {
                io_uring_prep_readv(&$0, fd, vectors.pointer, UInt32(vectors.count), position)
            } else {
                io_uring_prep_writev(&$0, fd, vectors.pointer, UInt32(vectors.count), position)
            }
        }
        return Int(n)
    }

    nonisolated(nonsending) func sync(dataOnly: Bool) async throws {
        _ = try await core.perform(dataOnly ? .syncData : .sync, about: .path(path)) {
            io_uring_prep_fsync(&$0, fd, dataOnly ? UInt32(IORING_FSYNC_DATASYNC) : 0)
            if fixedFile { cu_sqe_use_fixed_file(&$0) }
        }
    }

    nonisolated(nonsending) func preallocate(offset: Int64, length: Int64, mode: Int32) async throws {
        if offset < 0 || length <= 0 {
            throw UringError.invalid(.preallocate, path: path, "offset must be >= 0 and length > 0")
        }
        _ = try await core.perform(.preallocate, about: .path(path)) {
            io_uring_prep_fallocate(&$0, fd, mode, off_t(offset), off_t(length))
            if fixedFile { cu_sqe_use_fixed_file(&$0) }
        }
    }

    /// Sets the file's size (`ftruncate`): through the ring on kernels with
    /// `IORING_OP_FTRUNCATE` (6.9), else the system call, made off the ring's
    /// thread since it can wait on the disk.
    nonisolated(nonsending) func truncate(to length: Int64) async throws {
        if length < 0 { throw UringError.invalid(.truncate, path: path, "size \(length) is negative") }
        if core.isSupported(.truncate) {
            _ = try await core.perform(.truncate, about: .path(path)) {
                cu_prep_ftruncate(&$0, fd, length)
                if fixedFile { cu_sqe_use_fixed_file(&$0) }
            }
            return
        }
        if fixedFile {
            throw UringError.unsupported(.truncate, path: path)
        }
        let (descriptor, reported) = (fd, path)
        try await offRingThread {
            if Glibc.ftruncate(descriptor, off_t(length)) != 0 {
                throw UringError.system(.truncate, Glibc.errno, path: reported)
            }
        }
    }

    /// Tells the kernel how the range will be used (`fadvise`).
    nonisolated(nonsending) func advise(_ advice: Int32, offset: Int64, length: Int64) async throws {
        if offset < 0 || length < 0 {
            throw UringError.invalid(.advise, path: path, "offset and length must not be negative")
        }
        guard length > Int64(UInt32.max) else {
            _ = try await core.perform(.advise, about: .path(path)) {
                io_uring_prep_fadvise(&$0, fd, UInt64(offset), off_t(length), advice)
                if fixedFile { cu_sqe_use_fixed_file(&$0) }
            }
            return
        }
        // liburing 2.3 puts the length in 32 bits: a longer range would be
        // cut short, so it takes the system call (it does not wait).
        if fixedFile { throw UringError.unsupported(.advise, path: path) }
        let code = posix_fadvise(fd, off_t(offset), off_t(length), advice)
        if code != 0 { throw UringError.system(.advise, code, path: path) }
    }

    nonisolated(nonsending) func metadata() async throws -> FileMetadata {
        try await Self.statx(core: core, directory: fd, path: nil, reportedPath: path, flags: CU_AT_EMPTY_PATH)
    }

    /// `statx` of `path` relative to `directory`, or of `directory` itself
    /// when `path` is nil.
    nonisolated(nonsending) static func statx(
        core: RingCore, directory: Int32, path: FilePath?, reportedPath: FilePath?, flags: Int32
    ) async throws -> FileMetadata {
        // The slot keeps `buffer` (and the path inside it) alive until the
        // kernel's completion, whatever happens to this frame.
        let buffer = StatxBuffer(path: PathStorage(path ?? ""))
        let mask = UInt32(STATX_BASIC_STATS | STATX_BTIME)
        _ = try await core.perform(.metadata, about: .path(reportedPath), keepAlive: buffer) {
            io_uring_prep_statx(&$0, directory, buffer.path.pointer, flags, mask, buffer.pointer)
        }
        return FileMetadata(buffer.pointer.pointee)
    }

    /// Closes the descriptor; it is closed whatever happens, even when the
    /// task is cancelled or the ring is shut down (then synchronously).
    nonisolated(nonsending) func close() async throws {
        try await Self.close(fd, core: core, about: .path(path))
    }

    /// The one close path of every descriptor type: through the ring, and
    /// synchronously when the task is cancelled, the ring is shut down or
    /// the kernel cannot close through the ring, so the descriptor is closed
    /// whatever happens. Errors are made by `context`.
    nonisolated(nonsending) static func close(
        _ fd: Int32, core: RingCore, about context: some ErrorContext
    ) async throws {
        if !core.acceptsWork.load(ordering: .acquiring) {
            try closeAfterShutdown(fd, core: core, about: context)
            return
        }
        if Task.isCancelled || !core.isSupported(.close) {
            try closeNow(fd, about: context)
            return
        }
        do {
            _ = try await core.perform(.close, about: context, honorsDeadline: false) {
                io_uring_prep_close(&$0, fd)
            }
        } catch let error as UringError where error.kind != .ringShutDown {
            throw error
        } catch is UringError {
            // The ring shut down before the kernel ran it: the descriptor is
            // still open, so close it here.
            try closeAfterShutdown(fd, core: core, about: context)
        } catch {
            // Cancelled before the kernel ran it: the same.
            try closeNow(fd, about: context)
        }
    }

    /// Closes `fd` with the system call because `core` has shut down, and
    /// reports it as a ``RingEvent``.
    private static func closeAfterShutdown(_ fd: Int32, core: RingCore, about context: some ErrorContext) throws {
        defer {
            let about = context.error(.shutDown, .close) as? UringError
            core.report(.descriptorClosedAfterShutdown(
                descriptor: FileDescriptor(rawValue: fd), path: about?.path, address: about?.address))
        }
        try closeNow(fd, about: context)
    }

    private static func closeNow(_ fd: Int32, about context: some ErrorContext) throws {
        if Glibc.close(fd) != 0 { throw context.error(.system(Glibc.errno), .close) }
    }
}

/// Heap storage for one `statx` result.
final class StatxBuffer {
    let pointer = UnsafeMutablePointer<statx>.allocate(capacity: 1)
    let path: PathStorage
    init(path: PathStorage) {
        self.path = path
        pointer.initialize(to: statx())
    }
    deinit { pointer.deallocate() }
}
