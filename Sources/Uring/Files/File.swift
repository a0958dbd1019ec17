import CUring
import Glibc
import SystemPackage

/// An open file whose operations go through a ring.
///
/// `File` is noncopyable: there is exactly one owner of the descriptor, so a
/// closed or moved file cannot be used again; the compiler refuses it.
/// Operations borrow the file; ``close()`` consumes it and reports errors.
/// A file that is dropped without `close()` is closed synchronously in its
/// `deinit`, on whichever thread drops it; prefer `close()` for files on
/// file systems where closing can block (NFS), so it happens in the kernel's
/// own time rather than on the ring thread.
///
/// Reads take the buffer `inout` and writes take it `borrowing`: the buffer
/// is lent to the kernel for exactly the length of the call and is the
/// caller's again afterwards, on success, on error and on cancellation.
///
/// ```swift
/// let file = try await File.open("data.bin", on: ring)
/// var buffer = [UInt8](repeating: 0, count: 4096)
/// let n = try await file.read(into: &buffer, at: 0)
/// try await file.close()
/// ```
public struct File: ~Copyable, Sendable {
    /// The ring that performs this file's operations.
    public let ring: RingActor
    /// The path the file was opened with, used in error messages.
    public let path: FilePath?
    /// The descriptor, shared with live ``chunks(size:readAhead:from:)`` and
    /// ``arrivals(using:)`` sequences; it closes itself when the last holder
    /// lets go.
    private var shared: OwnedDescriptor
    private var fd: Int32 { shared.fd }

    /// Takes ownership of an open descriptor. The file closes it.
    public init(adopting descriptor: FileDescriptor, path: FilePath? = nil, on ring: RingActor) {
        self.ring = ring
        self.path = path
        self.shared = OwnedDescriptor(descriptor.rawValue)
    }

    /// A file that shares `descriptor` (handed over from another task).
    init(sharing descriptor: OwnedDescriptor, path: FilePath?, on ring: RingActor) {
        self.ring = ring
        self.path = path
        self.shared = descriptor
    }

    /// The underlying descriptor, still owned by this file (for the
    /// library's own use; callers go through ``withUnsafeDescriptor(_:)``).
    var descriptor: FileDescriptor { FileDescriptor(rawValue: fd) }

    /// Runs `body` with the underlying descriptor, for a system call this
    /// library does not make (`setsockopt`, `ioctl`, `flock`).
    ///
    /// The descriptor is still owned by this file: `body` must not close
    /// it, and must not keep it past its return, when the file may close
    /// it and the number may be reused. To own a descriptor, use
    /// `takeDescriptor()`.
    public func withUnsafeDescriptor<Result, Failure: Error>(
        _ body: (FileDescriptor) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(descriptor)
    }

    @usableFromInline var io: DescriptorIO { DescriptorIO(core: ring.core, fd: fd, path: path) }

    // MARK: Opening

    /// Opens the file at `path` through the ring.
    ///
    /// - Parameters:
    ///   - path: The file's path; relative paths start at the working directory.
    ///   - access: Read, write, or both.
    ///   - options: Creation, truncation, appending, `O_DIRECT` and the rest.
    ///   - permissions: Permissions for a created file (default `0o644`).
    ///   - ring: The ring to use; the shared ring if omitted.
    /// - Throws: ``UringError`` naming `open` and the path, or
    ///   `CancellationError`.
    public static func open(
        _ path: FilePath,
        _ access: FileDescriptor.AccessMode = .readOnly,
        options: OpenOptions = [],
        permissions: FilePermissions? = nil,
        on ring: RingActor? = nil
    ) async throws -> File {
        let ring = try ring ?? RingActor.shared
        let fd = try await openAt(AT_FDCWD, path, access, options, permissions, ring)
        return File(adopting: FileDescriptor(rawValue: fd), path: path, on: ring)
    }

    /// Opens the file at `path` relative to `directory`.
    ///
    /// - Parameters:
    ///   - path: The file's path, relative to `directory`.
    ///   - directory: Where relative paths start.
    ///   - access: Read, write, or both.
    ///   - options: Creation, truncation, appending and the rest.
    ///   - permissions: Permissions for a created file (default `0o644`).
    ///   - resolving: Limits on how the kernel resolves `path`; with
    ///     ``PathResolution/beneath`` nothing outside `directory` can be
    ///     opened, symbolic links included. Any limit needs `openat2` through
    ///     the ring (kernel 5.6+).
    ///   - ring: The ring that opens the file and performs its operations;
    ///     `nil` (the default) means the directory's. A server with a
    ///     ``RingGroup`` passes the connection's ring, so each ring opens its
    ///     own files with no thread hop.
    /// - Throws: ``UringError`` naming the directory's path joined with
    ///   `path`: `EXDEV` for a path that would leave the directory under
    ///   ``PathResolution/beneath``, `ELOOP` for a link refused by
    ///   ``PathResolution/noSymlinks``.
    public static func open(
        _ path: FilePath,
        relativeTo directory: borrowing Directory,
        _ access: FileDescriptor.AccessMode = .readOnly,
        options: OpenOptions = [],
        permissions: FilePermissions? = nil,
        resolving: PathResolution = [],
        on ring: RingActor? = nil
    ) async throws -> File {
        let ring = ring ?? directory.ring
        let shownPath = directory.path.map { $0.appending(path.components) } ?? path
        let fd: Int32
        if resolving.isEmpty {
            fd = try await openAt(
                directory.descriptor.rawValue, path, access, options, permissions, ring, reportedAs: shownPath)
        } else {
            if path.isEmpty { throw UringError.invalid(.openResolving, path: shownPath, "the path is empty") }
            // openat2 refuses a mode unless the open may create the file.
            let flags = options.flags(access)
            let creates = flags & O_CREAT != 0 || flags & CU_O_TMPFILE == CU_O_TMPFILE
            let how = OpenHow(
                flags: flags, mode: creates ? (permissions ?? FilePermissions(rawValue: 0o644)).rawValue : 0,
                resolve: resolving, path: PathStorage(path))
            let directoryFD = directory.descriptor.rawValue
            fd = try await ring.core.perform(.openResolving, about: .path(shownPath), keepAlive: how) {
                io_uring_prep_openat2(&$0, directoryFD, how.path.pointer, how.pointer)
            }
        }
        return File(adopting: FileDescriptor(rawValue: fd), path: shownPath, on: ring)
    }

    static func openAt(
        _ directory: Int32, _ path: FilePath, _ access: FileDescriptor.AccessMode, _ options: OpenOptions,
        _ permissions: FilePermissions?, _ ring: RingActor, reportedAs reported: FilePath? = nil
    ) async throws -> Int32 {
        let reported = reported ?? path
        if path.isEmpty { throw UringError.invalid(.open, path: reported, "the path is empty") }
        let name = PathStorage(path)
        let flags = options.flags(access)
        let mode = (permissions ?? FilePermissions(rawValue: 0o644)).rawValue
        return try await ring.core.perform(.open, about: .path(reported), keepAlive: name) {
            io_uring_prep_openat(&$0, directory, name.pointer, flags, mode)
        }
    }

    // MARK: Reading

    /// Reads into `buffer` from `offset`, filling it from its start, and
    /// returns the number of bytes read: fewer than `buffer.count` near the
    /// end of the file, 0 at or past the end.
    @inlinable @inline(__always)
    public func read<Buffer: IOBuffer & ~Copyable>(into buffer: inout Buffer, at offset: Int64) async throws -> Int {
        try await io.read(into: address(of: &buffer), count: buffer.count, offset: offset)
    }

    /// Reads into `buffer` at the current file position, advancing it. Works
    /// on pipes and other descriptors without positions too.
    @inlinable @inline(__always)
    public func read<Buffer: IOBuffer & ~Copyable>(into buffer: inout Buffer) async throws -> Int {
        try await io.read(into: address(of: &buffer), count: buffer.count, offset: nil)
    }

    /// Reads until `buffer` is full or the file ends; returns the bytes read.
    public func readAll<Buffer: IOBuffer & ~Copyable>(into buffer: inout Buffer, at offset: Int64) async throws -> Int {
        try await io.readAll(into: address(of: &buffer), count: buffer.count, offset: offset)
    }

    /// Ownership form of reading at an offset: the buffer moves in and comes
    /// back inside the result, together with the count or the error.
    public func read<Buffer: IOBuffer & ~Copyable>(consuming buffer: consuming Buffer, at offset: Int64) async -> IOResult<Buffer> {
        var owned = buffer
        do {
            let n = try await read(into: &owned, at: offset)
            return IOResult(buffer: owned, outcome: .success(n))
        } catch {
            return IOResult(buffer: owned, outcome: .failure(error))
        }
    }

    /// Refuses more buffers than one vectored request may have.
    private func checkVectorCount(_ operation: UringOperation, _ count: Int) throws(UringError) {
        if count > DescriptorIO.maximumVectors {
            throw UringError.invalid(
                operation, path: path,
                "\(count) buffers in one request; the kernel takes at most \(DescriptorIO.maximumVectors)")
        }
    }

    /// Reads into several buffers in one request (`readv`), filling each in
    /// turn (at most 1,024 buffers); returns the total bytes read.
    public func read<Buffer: IOBuffer>(into buffers: inout [Buffer], at offset: Int64) async throws -> Int {
        try checkVectorCount(.readVectored, buffers.count)
        let vectors = KernelMemory(repeating: iovec(), count: buffers.count)
        var total = 0
        for i in buffers.indices {
            let count = buffers[i].count
            vectors.pointer[i] = iovec(iov_base: buffers[i].stableMutableAddress(), iov_len: count)
            total += count
        }
        // `buffers` is inout, so it is the caller's and alive until this
        // returns, which is after the kernel's completion.
        return try await io.vectored(.readVectored, vectors, total: total, offset: offset)
    }

    /// Reads into each buffer from its own offset, all in one await: the
    /// reads reach the kernel together (one system call when the caller runs
    /// on the ring) and run in any order. Returns each read's byte count, in
    /// the order of `buffers`.
    ///
    /// This is the batch form of reading into one buffer at an offset: one task
    /// switch for the whole batch instead of one per read.
    ///
    /// - Throws: The first failure, after every read has completed (so every
    ///   buffer is the caller's again); ``UringError/Kind/invalidArgument``
    ///   when the counts of buffers and offsets differ.
    // Compiled for byte arrays as well as generically: the generic form
    // reaches each buffer through witness calls and copies, a retain and a
    // release per buffer.
    @_specialize(where Buffer == [UInt8])
    public func read<Buffer: IOBuffer>(into buffers: inout [Buffer], atOffsets offsets: [Int64]) async throws -> [Int] {
        guard buffers.count == offsets.count else {
            throw UringError.invalid(
                .read, path: path, "\(buffers.count) buffers for \(offsets.count) offsets")
        }
        if buffers.isEmpty { return [] }
        // Each buffer is reached in place (`inout`), never copied: a copy
        // of a generic element costs a retain and a release.
        func region(of buffer: inout Buffer) -> (address: UnsafeMutableRawPointer, count: Int) {
            (address(of: &buffer), buffer.count)
        }
        var regions: [(address: UnsafeMutableRawPointer, count: UInt32)] = []
        regions.reserveCapacity(buffers.count)
        // Made once: `io` is built on each use, a retain and a release of
        // the ring and the path.
        let io = self.io
        for i in buffers.indices {
            let (address, count) = region(of: &buffers[i])
            try io.validate(.read, count: count, offset: offsets[i])
            regions.append((address, UInt32(min(count, DescriptorIO.maximumTransfer))))
        }
        // `buffers` is inout: the caller's, alive and unmoved until this
        // returns, which is after every completion.
        return try await readBatch(regions, atOffsets: offsets)
    }

    /// Reads blocks of `blockSize` bytes into one buffer, block `i` from
    /// `offsets[i]` into the buffer's bytes from `i * blockSize`, all in one
    /// await, like ``read(into:atOffsets:)``. Returns each read's byte
    /// count, in the order of `offsets`.
    ///
    /// One buffer serves the whole batch, so an ``AlignedBuffer`` (with its
    /// default, page alignment) makes every block page-aligned when
    /// `blockSize` is a multiple of the page size: the form for files opened
    /// with ``OpenOptions/direct``, which also need offsets that are
    /// multiples of the device's block size (the kernel fails a read at
    /// another offset with `EINVAL`).
    ///
    /// ```swift
    /// var blocks = AlignedBuffer(count: 32 * 4096)
    /// let counts = try await file.read(into: &blocks, blockSize: 4096, atOffsets: offsets)
    /// ```
    ///
    /// - Throws: ``UringError/Kind/invalidArgument``, before anything is
    ///   submitted, when `blockSize` is not positive or larger than one read
    ///   may be (2,147,479,552 bytes), when the blocks do not fit in the
    ///   buffer, or when an offset is negative or too large; the ring's
    ///   refusal (shut down, a cancelled task), also before anything is
    ///   submitted; otherwise the first read's failure, after every read has
    ///   completed (so the buffer is the caller's again).
    public func read<Buffer: IOBuffer & ~Copyable>(
        into buffer: inout Buffer, blockSize: Int, atOffsets offsets: [Int64]
    ) async throws -> [Int] {
        guard blockSize > 0 && blockSize <= DescriptorIO.maximumTransfer else {
            throw UringError.invalid(
                .read, path: path,
                "block size \(blockSize) must be positive and at most \(DescriptorIO.maximumTransfer) bytes")
        }
        guard offsets.count <= buffer.count / blockSize else {
            throw UringError.invalid(
                .read, path: path,
                "\(offsets.count) blocks of \(blockSize) bytes do not fit in a buffer of \(buffer.count) bytes")
        }
        if offsets.isEmpty { return [] }
        let base = address(of: &buffer)
        let length = UInt32(blockSize)
        var regions: [(address: UnsafeMutableRawPointer, count: UInt32)] = []
        regions.reserveCapacity(offsets.count)
        let io = self.io
        for (index, offset) in offsets.enumerated() {
            try io.validate(.read, count: blockSize, offset: offset)
            regions.append((base + index * blockSize, length))
        }
        // `buffer` is inout: the caller's, alive and unmoved until this
        // returns, which is after every completion.
        return try await readBatch(regions, atOffsets: offsets)
    }

    /// Submits one read per region, all together, and waits for every
    /// completion; returns the byte counts in order, or throws the first
    /// failure once all have completed. The caller keeps the regions'
    /// memory alive and unmoved until this returns.
    private func readBatch(
        _ regions: [(address: UnsafeMutableRawPointer, count: UInt32)], atOffsets offsets: [Int64]
    ) async throws -> [Int] {
        let core = ring.core
        try core.admit(.read, about: .path(path))
        let fd = descriptor.rawValue
        let slots = core.submitBatch(regions.count) { index, request in
            io_uring_prep_rw(
                Int32(IORING_OP_READ.rawValue), &request, fd, regions[index].address, regions[index].count,
                UInt64(offsets[index]))
        }
        var results = [Int](repeating: 0, count: regions.count)
        var failure: (any Error)? = nil
        let path = self.path
        var start = 0
        for slot in slots {
            await core.completion(ofBatch: slot) { batch, aborted in
                results.withUnsafeMutableBufferPointer { results in
                    for (member, result) in batch.enumerated() {
                        if result >= 0 && !aborted {
                            results[start + member] = Int(result)
                            continue
                        }
                        let completion = Completion(result: result, flags: 0, aborted: aborted)
                        do {
                            _ = try core.check(completion, .read, about: .path(path))
                        } catch {
                            if failure == nil { failure = error }
                        }
                    }
                }
                start += batch.count
            }
        }
        if let failure { throw failure }
        return results
    }

    /// Reads the whole file from `offset` into a new array.
    ///
    /// - Parameters:
    ///   - offset: Where to start reading.
    ///   - maximumSize: Fail with `EFBIG` rather than read more.
    public func readToEnd(from offset: Int64 = 0, maximumSize: Int = 1 << 30) async throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var position = offset
        while true {
            let n = try await read(into: &chunk, at: position)
            if n == 0 { return result }
            if result.count + n > maximumSize {
                throw UringError(
                    .system, operation: .read, errno: .fileTooLarge, path: path,
                    detail: "the file is larger than maximumSize (\(maximumSize) bytes)")
            }
            result.append(contentsOf: chunk[..<n])
            position += Int64(n)
        }
    }

    // MARK: Writing

    /// Writes `buffer` at `offset` and returns the number of bytes written,
    /// which may be fewer than `buffer.count`; see ``writeAll(_:at:)``.
    @inlinable @inline(__always)
    public func write<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer, at offset: Int64) async throws -> Int {
        try await io.write(from: address(of: buffer), count: buffer.count, offset: offset)
    }

    /// Writes `buffer` at the current file position (or the end, for files
    /// opened with ``OpenOptions/append``).
    @inlinable @inline(__always)
    public func write<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer) async throws -> Int {
        try await io.write(from: address(of: buffer), count: buffer.count, offset: nil)
    }

    /// Writes all of `buffer` at `offset`, continuing after short writes.
    public func writeAll<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer, at offset: Int64) async throws {
        try await io.writeAll(from: address(of: buffer), count: buffer.count, offset: offset)
    }

    /// Writes all of `buffer` at the current position (or the end, when
    /// appending), continuing after short writes. Works on pipes too.
    public func writeAll<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer) async throws {
        try await io.writeAll(from: address(of: buffer), count: buffer.count, offset: nil)
    }

    /// Ownership form of writing at an offset: the buffer moves in and comes
    /// back inside the result, together with the count or the error.
    public func write<Buffer: IOBuffer & ~Copyable>(consuming buffer: consuming Buffer, at offset: Int64) async -> IOResult<Buffer> {
        do {
            let n = try await write(buffer, at: offset)
            return IOResult(buffer: buffer, outcome: .success(n))
        } catch {
            return IOResult(buffer: buffer, outcome: .failure(error))
        }
    }

    /// Writes several buffers in one request (`writev`, at most 1,024
    /// buffers); returns the bytes written.
    public func write<Buffer: IOBuffer>(_ buffers: [Buffer], at offset: Int64) async throws -> Int {
        try checkVectorCount(.writeVectored, buffers.count)
        let vectors = KernelMemory(repeating: iovec(), count: buffers.count)
        var total = 0
        for i in buffers.indices {
            let count = buffers[i].count
            vectors.pointer[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffers[i].stableAddress()), iov_len: count)
            total += count
        }
        // `buffers` is a parameter, alive until this call returns, which is
        // after the kernel's completion.
        let n = try await io.vectored(.writeVectored, vectors, total: total, offset: offset)
        withExtendedLifetime(buffers) {}
        return n
    }

    // MARK: Durability and space

    /// Flushes data and metadata to stable storage (`fsync`).
    public func sync() async throws {
        try await io.sync(dataOnly: false)
    }

    /// Flushes data, and only the metadata needed to read it back, to stable
    /// storage (`fdatasync`).
    public func syncData() async throws {
        try await io.sync(dataOnly: true)
    }

    /// Allocates disk space for `length` bytes from `offset` (`fallocate`).
    /// Unless `keepingSize`, the file grows to cover the range.
    public func preallocate(at offset: Int64, length: Int64, keepingSize: Bool = false) async throws {
        try await io.preallocate(offset: offset, length: length, mode: keepingSize ? 1 /* FALLOC_FL_KEEP_SIZE */ : 0)
    }

    /// Sets the file's size to `size` bytes, cutting it short or extending
    /// it with zeros (`ftruncate`; through the ring from Linux 6.9, the
    /// system call off the ring's thread before).
    public func truncate(to size: Int64) async throws {
        try await io.truncate(to: size)
    }

    /// Tells the kernel how a range of the file will be read, so it can read
    /// ahead or drop cached pages (`fadvise`).
    ///
    /// - Parameters:
    ///   - advice: The expected use.
    ///   - offset: Where the range starts.
    ///   - length: Its length; 0 means to the end of the file.
    public func advise(_ advice: FileAdvice, offset: Int64 = 0, length: Int64 = 0) async throws {
        try await io.advise(advice.rawValue, offset: offset, length: length)
    }

    /// The file's metadata (`statx`).
    public func metadata() async throws -> FileMetadata {
        try await io.metadata()
    }

    // MARK: Closing

    /// Closes the file through the ring and reports any error (for example
    /// a delayed write error on a network file system). The descriptor is
    /// released even when an error is thrown.
    ///
    /// If a ``chunks(size:readAhead:from:)`` or ``arrivals(using:)`` sequence
    /// of this file is still alive, it keeps the descriptor, which then
    /// closes (synchronously, without reporting errors) when the sequence
    /// ends; this call only gives up the file's share.
    public consuming func close() async throws {
        guard isKnownUniquelyReferenced(&shared) else { return }
        let io = DescriptorIO(core: ring.core, fd: shared.detach(), path: path)
        try await io.close()
    }

    /// Gives up ownership of the descriptor without closing it.
    ///
    /// If a ``chunks(size:readAhead:from:)`` or ``arrivals(using:)`` sequence
    /// of this file is still alive (or its last read is still finishing in
    /// the kernel), it keeps using the descriptor, so the one returned is a
    /// duplicate (`F_DUPFD_CLOEXEC`) for the same open file, and the
    /// original closes when the sequence is done.
    ///
    /// - Throws: ``UringError`` if that duplicate cannot be made (`EMFILE`).
    public consuming func takeDescriptor() throws(UringError) -> FileDescriptor {
        // Unique: no sequence holds it, so the number itself is handed over.
        if isKnownUniquelyReferenced(&shared) { return FileDescriptor(rawValue: shared.detach()) }
        return try shared.duplicate(path: path, address: nil)
    }

    /// The shared descriptor, for sequences that read it.
    var sharedDescriptor: OwnedDescriptor { shared }
}

/// The stable address of an `inout` buffer (see ``IOBuffer``).
@usableFromInline
func address<Buffer: IOBuffer & ~Copyable>(of buffer: inout Buffer) -> UnsafeMutableRawPointer {
    buffer.stableMutableAddress() ?? UnsafeMutableRawPointer(bitPattern: 0x1)!
}

/// The stable address of a borrowed buffer (see ``IOBuffer``).
@usableFromInline
func address<Buffer: IOBuffer & ~Copyable>(of buffer: borrowing Buffer) -> UnsafeRawPointer {
    buffer.stableAddress() ?? UnsafeRawPointer(bitPattern: 0x1)!
}
