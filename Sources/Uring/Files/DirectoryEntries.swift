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
    /// The entry's metadata (of a link itself, not its target), when the
    /// listing was asked for it (`withMetadata: true`) and `statx` could
    /// describe it (not, say, after `EACCES`); otherwise nil.
    public let metadata: FileMetadata?

    /// The name and the type, such as `notes.txt (regular)`.
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
    ///
    /// - Parameter withMetadata: Also describes each entry (``DirectoryEntry/metadata``)
    ///   with `statx`, made in the same step off the ring's thread as the
    ///   listing. For a whole directory that is far cheaper than a `statx`
    ///   per entry through the ring, which the kernel always hands to a
    ///   worker thread. An entry removed before it is described is left out.
    public func entries(withMetadata: Bool = false) -> DirectoryEntries {
        DirectoryEntries(directory: descriptor.rawValue, path: path, withMetadata: withMetadata)
    }
}

/// The entries of a directory; see ``Directory/entries(withMetadata:)``.
public struct DirectoryEntries: AsyncSequence, Sendable {
    /// One entry.
    public typealias Element = DirectoryEntry
    /// A ``UringError`` naming the directory.
    public typealias Failure = any Error

    /// A descriptor of the directory of the sequence's own, or the error
    /// met making it (thrown by the first `next()`).
    private let directory: Result<OwnedDescriptor, UringError>
    private let path: FilePath?
    private let withMetadata: Bool

    init(directory fd: Int32, path: FilePath?, withMetadata: Bool) {
        self.path = path
        self.withMetadata = withMetadata
        // A duplicate (which never waits) keeps the directory for the
        // sequence; each iteration reopens it off the ring's thread.
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        self.directory = copy >= 0
            ? .success(OwnedDescriptor(copy)) : .failure(.system(.listDirectory, Glibc.errno, path: path))
    }

    /// Starts reading (at the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(directory: directory, path: path, withMetadata: withMetadata)
    }

    /// Reads the entries, a batch at a time.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private let directory: Result<OwnedDescriptor, UringError>
        private let path: FilePath?
        private let withMetadata: Bool
        private var reader: DirectoryReader?

        init(directory: Result<OwnedDescriptor, UringError>, path: FilePath?, withMetadata: Bool) {
            self.directory = directory
            self.path = path
            self.withMetadata = withMetadata
        }

        /// The next entry; nil after the last.
        public nonisolated(nonsending) mutating func next() async throws -> DirectoryEntry? {
            if reader == nil {
                let shared = try directory.get()
                let path = path
                // openat can wait on a slow file system: not on a ring's thread.
                let fd = try await offRingThread { try DirectoryReader.reopen(shared.fd, path: path).get() }
                reader = DirectoryReader(owning: fd, path: path, withMetadata: withMetadata)
            }
            return try await reader!.next()
        }

        /// The next entry, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> DirectoryEntry? {
            try await next()
        }
    }
}

/// Reads one open directory's entries in batches; closes it when done.
final class DirectoryReader: Sendable {
    let descriptor: OwnedDescriptor
    let path: FilePath?
    /// Whether each entry is described with `statx` as it is listed.
    let withMetadata: Bool
    private let pending = Locked(FIFO<DirectoryEntry>())
    private let finished = Locked(false)

    init(owning fd: Int32, path: FilePath?, withMetadata: Bool = false) {
        self.descriptor = OwnedDescriptor(fd)
        self.path = path
        self.withMetadata = withMetadata
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
            let batch = try await Self.readBatch(descriptor, path: path, withMetadata: withMetadata)
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
    static nonisolated(nonsending) func readBatch(
        _ descriptor: OwnedDescriptor, path: FilePath?, withMetadata: Bool, followingLinks: Bool = false
    ) async throws -> [DirectoryEntry] {
        try await offRingThread {
            try readBatchHere(descriptor, path: path, withMetadata: withMetadata, followingLinks: followingLinks)
        }
    }

    static func readBatchHere(
        _ descriptor: OwnedDescriptor, path: FilePath?, withMetadata: Bool, followingLinks: Bool = false
    ) throws(UringError) -> [DirectoryEntry] {
        let capacity = DirectoryRecord.bufferSize
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        let filled = try DirectoryRecord.list(descriptor.fd, into: buffer, path: path)
        var entries: [DirectoryEntry] = []
        var offset = 0
        while offset < filled {
            let record = DirectoryRecord(buffer + offset)
            offset += record.length
            if record.isSelfOrParent { continue }
            guard let component = FilePath.Component(platformString: record.name) else { continue }
            var metadata: FileMetadata? = nil
            if withMetadata {
                guard let described = record.describe(in: descriptor.fd, followingLinks: followingLinks) else { continue }
                metadata = described
            }
            let type = metadata?.type ?? FileType(directoryType: record.kind)
            entries.append(DirectoryEntry(name: component, type: type, inode: record.inode, metadata: metadata))
        }
        return entries
    }
}

/// One record of a `getdents64` buffer (`struct linux_dirent64`: u64
/// d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[]).
struct DirectoryRecord {
    /// The buffer size each listing step uses.
    static let bufferSize = 32 * 1024

    let inode: UInt64
    /// The record's length: the next one starts this far on.
    let length: Int
    /// `d_type`.
    let kind: UInt8
    /// The name, NUL-terminated, inside the buffer.
    let name: UnsafePointer<CChar>

    init(_ record: UnsafeRawPointer) {
        inode = record.loadUnaligned(as: UInt64.self)
        length = max(Int(record.loadUnaligned(fromByteOffset: 16, as: UInt16.self)), 1)
        kind = record.load(fromByteOffset: 18, as: UInt8.self)
        name = (record + 19).assumingMemoryBound(to: CChar.self)
    }

    /// Whether the name is "." or "..".
    var isSelfOrParent: Bool {
        name[0] == 0x2E && (name[1] == 0 || (name[1] == 0x2E && name[2] == 0))
    }

    /// One `getdents64` call on `fd` into `buffer` (of ``bufferSize``
    /// bytes): the bytes filled, 0 at the end of the directory.
    static func list(_ fd: Int32, into buffer: UnsafeMutableRawPointer, path: FilePath?) throws(UringError) -> Int {
        let filled = cu_getdents64(fd, buffer, UInt(bufferSize))
        guard filled >= 0 else { throw .system(.listDirectory, Int32(-filled), path: path) }
        return Int(filled)
    }

    /// The entry's metadata (`statx` in the directory `fd`; of a link's
    /// target when following links, unless it points to nothing). Nil if
    /// the entry is gone since it was listed; an entry `statx` cannot
    /// describe otherwise (`EACCES`, say) gets `.some(nil)` rather than
    /// losing the rest of the listing.
    func describe(in fd: Int32, followingLinks: Bool) -> FileMetadata?? {
        var info = statx()
        switch describe(in: fd, followingLinks: followingLinks, into: &info) {
        case .gone: return nil
        case .undescribable: return .some(nil)
        case .described: return FileMetadata(info)
        }
    }

    /// What became of describing an entry.
    enum Description {
        case described
        /// Removed since it was listed.
        case gone
        /// There, but `statx` failed otherwise (`EACCES`, say), with this
        /// error number.
        case undescribable(Int32)
    }

    /// `describe(in:followingLinks:)`, with `statx` writing into `info`.
    func describe(in fd: Int32, followingLinks: Bool, into info: UnsafeMutablePointer<statx>) -> Description {
        let mask = UInt32(STATX_BASIC_STATS | STATX_BTIME)
        var status = cu_statx(fd, name, followingLinks ? 0 : AT_SYMLINK_NOFOLLOW, mask, info)
        if status == -ENOENT && followingLinks {
            // A link to nothing is listed as the link it is.
            status = cu_statx(fd, name, AT_SYMLINK_NOFOLLOW, mask, info)
        }
        if status == -ENOENT { return .gone }
        return status == 0 ? .described : .undescribable(-status)
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
