import CUring
import Glibc
import SystemPackage

/// One name in a directory, as listing it returns it.
public struct DirectoryEntry: Sendable, Hashable, CustomStringConvertible {
    /// The entry's name within its directory (never `.` or `..`). Names are
    /// bytes, not necessarily UTF-8; `FilePath.Component` keeps them exact.
    public let name: FilePath.Component
    /// The entry's type as the directory records it, without a `statx`:
    /// ``FileType/unknown`` on file systems that do not record it (ask
    /// ``Directory/metadata(of:followingSymlinks:)`` then). A symbolic link
    /// is ``FileType/symbolicLink``, whatever it points to.
    public let type: FileType
    /// The entry's inode number.
    public let inode: UInt64

    public var description: String { "\(name) (\(type))" }
}

extension Directory {
    /// The entries of this directory, read as the sequence is iterated.
    ///
    /// ```swift
    /// let directory = try await Directory.open("/var/log", on: ring)
    /// for try await entry in directory.entries() where entry.type == .regular {
    ///     print(entry.name)
    /// }
    /// ```
    ///
    /// io_uring has no operation that lists a directory, so each batch of up
    /// to 32 KiB of entries is read with `getdents64(2)`. That call can wait
    /// on a slow file system, so it never runs on a ring's thread: from a
    /// task on a ring it moves to Swift's global executor for the call and
    /// comes back. Each iteration opens the directory again (`openat` of
    /// `.`), so iterations do not share a read position; the sequence may
    /// outlive this value.
    ///
    /// Entries created or removed while the sequence is iterated may or may
    /// not appear, as with `readdir(3)`.
    public func entries() -> DirectoryEntries {
        DirectoryEntries(directory: descriptor.rawValue, path: path)
    }
}

/// The entries of a directory; see ``Directory/entries()``.
public struct DirectoryEntries: AsyncSequence, Sendable {
    /// One entry.
    public typealias Element = DirectoryEntry
    /// A ``UringError`` naming the directory.
    public typealias Failure = any Error

    /// A descriptor of the directory of the sequence's own, or the error
    /// met making it (thrown by the first `next()`).
    private let directory: Result<OwnedDescriptor, UringError>
    private let path: FilePath?

    init(directory fd: Int32, path: FilePath?) {
        self.path = path
        self.directory = DirectoryReader.reopen(fd, path: path).map(OwnedDescriptor.init)
    }

    /// Starts reading (at the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(directory: directory, path: path)
    }

    /// Reads the entries, a batch at a time.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private let directory: Result<OwnedDescriptor, UringError>
        private let path: FilePath?
        private var reader: DirectoryReader?

        init(directory: Result<OwnedDescriptor, UringError>, path: FilePath?) {
            self.directory = directory
            self.path = path
        }

        /// The next entry; nil after the last.
        public nonisolated(nonsending) mutating func next() async throws -> DirectoryEntry? {
            if reader == nil {
                let fd = try DirectoryReader.reopen(try directory.get().fd, path: path).get()
                reader = DirectoryReader(owning: fd, path: path)
            }
            return try await reader!.next()
        }

        /// The next entry, without leaving the caller's actor.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> DirectoryEntry? {
            try await next()
        }
    }
}

/// Reads one open directory's entries in batches; closes it when done.
final class DirectoryReader: Sendable {
    let descriptor: OwnedDescriptor
    let path: FilePath?
    private let pending = Locked(FIFO<DirectoryEntry>())
    private let finished = Locked(false)

    init(owning fd: Int32, path: FilePath?) {
        self.descriptor = OwnedDescriptor(fd)
        self.path = path
    }

    /// A descriptor of the directory `fd` refers to, with a read position of
    /// its own.
    static func reopen(_ fd: Int32, path: FilePath?) -> Result<Int32, UringError> {
        let copy = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        return copy >= 0 ? .success(copy) : .failure(.system(.listDirectory, Glibc.errno, path: path))
    }

    /// The next entry, reading a batch when none is left; nil at the end.
    nonisolated(nonsending) func next() async throws -> DirectoryEntry? {
        while true {
            if let entry = pending.withLock({ $0.popFirst() }) { return entry }
            if finished.withLock({ $0 }) { return nil }
            let batch = try await Self.readBatch(descriptor, path: path)
            if batch.isEmpty {
                finished.withLock { $0 = true }
                return nil
            }
            pending.withLock { queue in for entry in batch { queue.append(entry) } }
        }
    }

    /// All the entries left, in one array.
    nonisolated(nonsending) func all() async throws -> [DirectoryEntry] {
        var entries: [DirectoryEntry] = []
        while let entry = try await next() { entries.append(entry) }
        return entries
    }

    /// One `getdents64` call, off any ring's thread: a batch of entries
    /// (empty at the end of the directory).
    static nonisolated(nonsending) func readBatch(_ descriptor: OwnedDescriptor, path: FilePath?) async throws -> [DirectoryEntry] {
        try await offRingThread { try readBatchHere(descriptor, path: path) }
    }

    private static func readBatchHere(_ descriptor: OwnedDescriptor, path: FilePath?) throws(UringError) -> [DirectoryEntry] {
        let capacity = 32 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        let filled = cu_getdents64(descriptor.fd, buffer, UInt(capacity))
        guard filled >= 0 else { throw .system(.listDirectory, Int32(-filled), path: path) }
        var entries: [DirectoryEntry] = []
        var offset = 0
        while offset < filled {
            // struct linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[].
            let record = buffer + offset
            let inode = record.loadUnaligned(as: UInt64.self)
            let length = Int(record.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
            let kind = record.load(fromByteOffset: 18, as: UInt8.self)
            let name = (record + 19).assumingMemoryBound(to: CChar.self)
            offset += max(length, 1)
            // Skip "." and "..".
            if name[0] == 0x2E && (name[1] == 0 || (name[1] == 0x2E && name[2] == 0)) { continue }
            guard let component = FilePath.Component(platformString: name) else { continue }
            entries.append(DirectoryEntry(name: component, type: FileType(directoryType: kind), inode: inode))
        }
        return entries
    }
}

extension FileType {
    /// The type a directory entry records (`d_type`).
    init(directoryType: UInt8) {
        switch Int(directoryType) {
        case Int(DT_REG): self = .regular
        case Int(DT_DIR): self = .directory
        case Int(DT_LNK): self = .symbolicLink
        case Int(DT_FIFO): self = .fifo
        case Int(DT_SOCK): self = .socket
        case Int(DT_CHR): self = .characterDevice
        case Int(DT_BLK): self = .blockDevice
        default: self = .unknown
        }
    }
}
