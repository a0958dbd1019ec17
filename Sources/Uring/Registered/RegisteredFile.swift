import CUring
import Glibc
import SystemPackage

extension RingActor {
    /// Gives the ring a table of `capacity` empty slots for registered files
    /// (`IORING_REGISTER_FILES` sparse). Needed once before
    /// ``RegisteredFile`` is used on this ring.
    ///
    /// Registered files skip the kernel's per-request descriptor lookup and
    /// reference counting; see the benchmark `uring-bench registered`.
    ///
    /// - Parameter capacity: How many slots the table has.
    /// - Parameter reserved: Slots `0..<reserved` are kept out of the
    ///   kernel's automatic allocation, for ``LinkedChain`` steps that open
    ///   into, use and close a slot they name up front.
    /// - Throws: ``UringError`` naming `register_files`: `EBUSY` when the ring
    ///   already has a table, `EMFILE` when `capacity` exceeds the limit.
    public nonisolated(nonsending) func registerFiles(capacity: Int, reserved: Int = 0) async throws {
        guard capacity > 0 && capacity <= Int(Int32.max), reserved >= 0 && reserved < capacity else {
            throw UringError.invalid(
                .registerFiles, "capacity \(capacity) must be at least 1, and reserved \(reserved) below it")
        }
        try await Registration.perform(.registerFiles, on: core) { ring in
            let made = io_uring_register_files_sparse(ring, UInt32(capacity))
            guard made >= 0, reserved > 0 else { return made }
            let ranged = io_uring_register_file_alloc_range(ring, UInt32(reserved), UInt32(capacity - reserved))
            if ranged < 0 { _ = io_uring_unregister_files(ring) }
            return ranged
        }
    }

    /// Removes the table of registered files. Registered files still open
    /// fail afterwards with `EBADF` (`ENXIO` for some operations).
    public nonisolated(nonsending) func unregisterFiles() async throws {
        try await Registration.perform(.registerFiles, on: core) { ring in io_uring_unregister_files(ring) }
    }
}

/// A file in the ring's table of registered files: operations name its
/// slot, and the kernel skips the descriptor lookup each request would make.
///
/// It is noncopyable like ``File``. Open one straight into a slot with
/// ``open(_:_:options:permissions:on:)`` (no descriptor ever exists), move a
/// ``File`` into a slot with ``register(_:)``, or turn a slot back into a
/// normal descriptor with ``installDescriptor()``. Dropping it without
/// ``close()`` clears its slot.
///
/// The ring needs a table first: ``RingActor/registerFiles(capacity:reserved:)``.
public struct RegisteredFile: ~Copyable, Sendable {
    /// The ring whose table holds the file.
    public let ring: RingActor
    /// The path the file was opened with, for error messages.
    public let path: FilePath?
    /// The file's slot in the ring's table (-1 once given up).
    private(set) var slot: Int32

    /// The file's place in the ring's table.
    public var index: RegisteredIndex { RegisteredIndex(Int(slot)) }

    init(slot: Int32, path: FilePath?, ring: RingActor) {
        self.slot = slot
        self.path = path
        self.ring = ring
    }

    deinit {
        if slot >= 0 { Registration.clearFileSlot(slot, on: ring.core) }
    }

    /// Opens `path` straight into a free slot of `ring`'s table
    /// (`IORING_OP_OPENAT` with a direct descriptor).
    ///
    /// - Throws: ``UringError`` naming `open` and the path (`ENFILE` when the
    ///   table is full or missing).
    public static func open(
        _ path: FilePath, _ access: FileDescriptor.AccessMode = .readOnly, options: OpenOptions = [],
        permissions: FilePermissions? = nil, on ring: RingActor
    ) async throws -> RegisteredFile {
        if path.isEmpty { throw UringError.invalid(.open, path: path, "the path is empty") }
        let name = PathStorage(path)
        let flags = options.flags(access)
        let mode = (permissions ?? FilePermissions(rawValue: 0o644)).rawValue
        let slot = try await ring.core.perform(.open, about: .path(path), keepAlive: name) {
            cu_prep_open_direct(&$0, AT_FDCWD, name.pointer, flags, mode, CU_FILE_INDEX_ALLOC)
        }
        return RegisteredFile(slot: slot, path: path, ring: ring)
    }

    /// Moves `file` into a free slot of its ring's table
    /// (`IORING_OP_FILES_UPDATE`); its own descriptor is closed, since the
    /// table holds the file now.
    public static func register(_ file: consuming File) async throws -> RegisteredFile {
        let ring = file.ring
        let path = file.path
        // Shared, not taken: a sequence still reading the file keeps it.
        let descriptor = file.sharedDescriptor
        _ = consume file
        let table = KernelMemory<Int32>(descriptor.fd)
        let updated = try await ring.core.perform(.registerFiles, about: .path(path), keepAlive: table) {
            io_uring_prep_files_update(&$0, table.pointer, 1, Int32(bitPattern: CU_FILE_INDEX_ALLOC))
        }
        guard updated == 1 else { throw UringError.system(.registerFiles, ENFILE, path: path) }
        withExtendedLifetime(descriptor) {}  // released here; the table keeps its own reference
        return RegisteredFile(slot: table.pointer.pointee, path: path, ring: ring)
    }

    /// The shared descriptor operations, on this file's slot.
    private var io: DescriptorIO { DescriptorIO(core: ring.core, fd: slot, path: path, fixedFile: true) }

    /// Reads into `buffer` from `offset`; returns the bytes read (0 at end).
    public func read<Buffer: IOBuffer & ~Copyable>(into buffer: inout Buffer, at offset: Int64) async throws -> Int {
        try await io.read(into: address(of: &buffer), count: buffer.count, offset: offset)
    }

    /// Reads into a registered buffer (`IORING_OP_READ_FIXED`): neither the
    /// file nor the memory needs a lookup.
    public func read(into buffer: inout RegisteredBuffer, at offset: Int64) async throws -> Int {
        try io.validate(.readFixed, count: buffer.count, offset: offset)
        let slot = self.slot
        return try await buffer.transfer(.readFixed, ring: ring, path: path) { sqe, pointer, length, index in
            io_uring_prep_read_fixed(&sqe, slot, pointer, length, UInt64(offset), index)
            cu_sqe_use_fixed_file(&sqe)
        }
    }

    /// Writes `buffer` at `offset`; returns the bytes written.
    public func write<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer, at offset: Int64) async throws -> Int {
        try await io.write(from: address(of: buffer), count: buffer.count, offset: offset)
    }

    /// Writes a registered buffer (`IORING_OP_WRITE_FIXED`).
    public func write(_ buffer: borrowing RegisteredBuffer, at offset: Int64) async throws -> Int {
        try io.validate(.writeFixed, count: buffer.count, offset: offset)
        let slot = self.slot
        return try await buffer.transfer(.writeFixed, ring: ring, path: path) { sqe, pointer, length, index in
            io_uring_prep_write_fixed(&sqe, slot, pointer, length, UInt64(offset), index)
            cu_sqe_use_fixed_file(&sqe)
        }
    }

    /// Reads until `buffer` is full or the file ends, continuing after short
    /// reads; returns the bytes read.
    public func readAll<Buffer: IOBuffer & ~Copyable>(into buffer: inout Buffer, at offset: Int64) async throws -> Int {
        try await io.readAll(into: address(of: &buffer), count: buffer.count, offset: offset)
    }

    /// Writes all of `buffer` at `offset`, continuing after short writes.
    public func writeAll<Buffer: IOBuffer & ~Copyable>(_ buffer: borrowing Buffer, at offset: Int64) async throws {
        try await io.writeAll(from: address(of: buffer), count: buffer.count, offset: offset)
    }

    /// Flushes data and metadata to stable storage (`fsync`).
    public func sync() async throws {
        try await io.sync(dataOnly: false)
    }

    /// Flushes data, and only the metadata needed to read it back, to stable
    /// storage (`fdatasync`).
    public func syncData() async throws {
        try await io.sync(dataOnly: true)
    }

    /// The file's metadata (`statx`).
    ///
    /// `statx` names a file by descriptor, which a registered file lacks, so
    /// this installs a descriptor for the call (`IORING_OP_FIXED_FD_INSTALL`)
    /// and closes it afterwards.
    ///
    /// - Throws: ``UringError/Kind/unsupported`` before Linux 6.8, which
    ///   cannot install one.
    public func metadata() async throws -> FileMetadata {
        let core = ring.core
        let slot = self.slot
        guard core.isSupported(.installDescriptor) else {
            throw UringError(
                .unsupported, operation: .metadata, errno: .notSupported, path: path,
                detail: "a registered file needs IORING_OP_FIXED_FD_INSTALL (Linux 6.8) to be given to statx")
        }
        let fd = try await core.perform(.installDescriptor, about: .path(path)) {
            cu_prep_fixed_fd_install(&$0, slot)
        }
        defer { Glibc.close(fd) }
        return try await DescriptorIO.statx(core: core, directory: fd, path: nil, reportedPath: path, flags: CU_AT_EMPTY_PATH)
    }

    /// Installs the file as a normal descriptor (`IORING_OP_FIXED_FD_INSTALL`,
    /// kernel 6.8+) and frees its slot.
    public consuming func installDescriptor() async throws -> File {
        let slot = self.slot
        let ring = self.ring
        let path = self.path
        let fd = try await ring.core.perform(.installDescriptor, about: .path(path)) {
            cu_prep_fixed_fd_install(&$0, slot)
        }
        let file = File(adopting: FileDescriptor(rawValue: fd), path: path, on: ring)
        try await close()
        return file
    }

    /// Closes the file and frees its slot (`IORING_OP_CLOSE` on a direct
    /// descriptor). The slot is freed even when an error is thrown.
    public consuming func close() async throws {
        let slot = self.slot
        let core = ring.core
        let path = self.path
        self.slot = -1
        do {
            _ = try await core.perform(.close, about: .path(path), honorsDeadline: false) {
                io_uring_prep_close_direct(&$0, UInt32(slot))
            }
        } catch let error as UringError where error.kind == .system {
            throw error
        } catch {
            Registration.clearFileSlot(slot, on: core)  // cancelled or shut down before it ran
            throw error
        }
    }
}
