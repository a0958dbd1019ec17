import Glibc
import SystemPackage

/// A change to a watched file or directory (see ``RingActor/watch(_:for:recursively:)``).
public struct FileChange: Sendable, Hashable, CustomStringConvertible {
    /// What happened.
    public enum Kind: Sendable, Hashable {
        /// An entry was created in a watched directory.
        case created
        /// An entry was removed from a watched directory.
        case removed
        /// A file was written to.
        case modified
        /// Permissions, times, owner, links or extended attributes changed.
        case attributesChanged
        /// A file opened for writing was closed: a good moment to read it.
        case closedAfterWriting
        /// An entry was renamed away from a watched directory; the matching
        /// ``movedHere`` (if it stayed in the watch) has the same
        /// ``FileChange/moveCookie``.
        case movedAway
        /// An entry was renamed into a watched directory.
        case movedHere
        /// The watched file or directory itself was removed; the sequence
        /// ends after it.
        case watchedItemRemoved
        /// The watched file or directory itself was renamed.
        case watchedItemMoved
        /// The kernel's queue of changes overflowed and changes were lost:
        /// look again at what matters (``FileChange/path`` is the watched
        /// path).
        case overflow
        /// The file system holding the watched item was unmounted.
        case unmounted
    }

    /// What happened.
    public var kind: Kind
    /// The file or directory it happened to.
    public var path: FilePath
    /// Whether that is a directory.
    public var isDirectory: Bool
    /// Pairs a ``Kind/movedAway`` with its ``Kind/movedHere``; 0 for other
    /// kinds.
    public var moveCookie: UInt32

    /// The kind and the path, such as `created /srv/inbox/a.txt`.
    public var description: String { "\(kind) \(path)\(isDirectory ? "/" : "")" }
}

/// Which changes to report (see ``RingActor/watch(_:for:recursively:)``).
public struct FileChangeKinds: OptionSet, Sendable, Hashable {
    /// The inotify mask bits.
    public let rawValue: UInt32

    /// Kinds from inotify mask bits.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Entries created.
    public static let created = FileChangeKinds(rawValue: UInt32(IN_CREATE))
    /// Entries removed.
    public static let removed = FileChangeKinds(rawValue: UInt32(IN_DELETE))
    /// Files written to.
    public static let modified = FileChangeKinds(rawValue: UInt32(IN_MODIFY))
    /// Metadata changed.
    public static let attributesChanged = FileChangeKinds(rawValue: UInt32(IN_ATTRIB))
    /// Files closed after writing.
    public static let closedAfterWriting = FileChangeKinds(rawValue: UInt32(IN_CLOSE_WRITE))
    /// Entries renamed away or here.
    public static let moved = FileChangeKinds(rawValue: UInt32(IN_MOVED_FROM) | UInt32(IN_MOVED_TO))
    /// All of the above.
    public static let all: FileChangeKinds = [.created, .removed, .modified, .attributesChanged, .closedAfterWriting, .moved]
}

extension RingActor {
    /// Watches `path` (a file, or a directory and its entries) for changes,
    /// read through the ring from the kernel's inotify queue.
    ///
    /// ```swift
    /// for try await change in try await ring.watch("/srv/inbox", for: [.closedAfterWriting, .moved]) {
    ///     if change.kind == .overflow { try await rescan() } else { try await ingest(change.path) }
    /// }
    /// ```
    ///
    /// Changes queued by the kernel are never dropped silently: when its
    /// queue overflows (`fs.inotify.max_queued_events`), a change of kind
    /// ``FileChange/Kind/overflow`` says so. The watched item itself being
    /// removed or renamed is always reported, whatever `kinds` asks for.
    ///
    /// With `recursively`, every directory under `path` is watched too,
    /// including those created later: a new directory's entries that were
    /// made before its watch was in place are reported as
    /// ``FileChange/Kind/created`` when it is found, so an entry made just
    /// then may be reported twice, never not at all. A directory renamed out
    /// of the tree stops being watched. Symbolic links are not followed, and
    /// `path` must be a directory (else `ENOTDIR`). Each directory takes one
    /// of the user's inotify watches (`fs.inotify.max_user_watches`).
    ///
    /// Iterate the sequence once. The watch ends, and its descriptor closes,
    /// when the sequence and its iterator are gone, when the task iterating
    /// it is cancelled, or after the watched item was removed.
    ///
    /// - Throws: ``UringError`` naming `inotify_add_watch` and the path:
    ///   `ENOENT` for a missing path, `ENOSPC` when the user's watches are
    ///   used up, `EMFILE` when the user's inotify instances are.
    public nonisolated(nonsending) func watch(
        _ path: FilePath, for kinds: FileChangeKinds = .all, recursively: Bool = false
    ) async throws -> FileChanges {
        // Non-blocking: the ring polls it, and reads never wait (below).
        let fd = inotify_init1(Int32(IN_CLOEXEC) | Int32(IN_NONBLOCK))
        guard fd >= 0 else { throw UringError.system(.watch, Glibc.errno, path: path) }
        let descriptor = OwnedDescriptor(fd)
        let watches = FileWatches(descriptor: descriptor, root: path, kinds: kinds, recursively: recursively)
        try watches.add(path, isRoot: true)
        if recursively {
            // `add` above failed for a missing path, so the walk has a root.
            for try await entry in Directory.walk(path) where entry.type == .directory {
                try watches.add(entry.path, isRoot: false)
            }
        }
        return FileChanges(watches: watches, readiness: readiness(of: FileDescriptor(rawValue: fd), for: .readable))
    }
}

/// Changes to a watched path, as they happen (see
/// ``RingActor/watch(_:for:recursively:)``).
///
/// How it reads: an inotify descriptor has no non-blocking read that the
/// kernel's io_uring can retry when data comes (it lacks `read_iter`), so a
/// read through the ring would hold one of the kernel's worker threads
/// blocked for as long as nothing changes. Instead one multishot poll
/// through the ring says when changes are queued, and `read(2)` on the
/// non-blocking descriptor takes them all at once, never waiting.
public struct FileChanges: AsyncSequence, Sendable {
    /// One change.
    public typealias Element = FileChange
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    let watches: FileWatches
    let readiness: Readiness

    /// Starts reading changes.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(watches: watches, readiness: readiness.makeAsyncIterator())
    }

    /// Reads the kernel's records and turns them into changes.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let watches: FileWatches
        var readiness: Readiness.AsyncIterator
        var pending: [FileChange] = []
        var pendingIndex = 0
        var finished = false
        /// Where records are read, made on the first read and reused.
        var buffer: [UInt8] = []

        /// The next change, or `nil` once the watched item is gone.
        public nonisolated(nonsending) mutating func next() async throws -> FileChange? {
            while pendingIndex == pending.count {
                pending.removeAll(keepingCapacity: true)
                pendingIndex = 0
                if finished { return nil }
                finished = try watches.readQueued(into: &pending, using: &buffer)
                if pending.isEmpty && !finished {
                    guard try await readiness.next() != nil else { return nil }
                }
            }
            defer { pendingIndex += 1 }
            return pending[pendingIndex]
        }

        /// The next change; `isolation` is not needed.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> FileChange? {
            try await next()
        }
    }
}

/// The watches of one inotify instance: which directory each watch
/// descriptor is, and what to report.
final class FileWatches: Sendable {
    let descriptor: OwnedDescriptor
    let root: FilePath
    let kinds: FileChangeKinds
    let recursively: Bool
    /// Watch descriptor → the path it watches.
    private let paths = Locked<[Int32: FilePath]>([:])
    private let rootWatch = Locked<Int32>(-1)

    init(descriptor: OwnedDescriptor, root: FilePath, kinds: FileChangeKinds, recursively: Bool) {
        self.descriptor = descriptor
        self.root = root
        self.kinds = kinds
        self.recursively = recursively
    }

    /// What the kernel is asked for: the kinds wanted, the watched item's
    /// own removal and renaming, and creations when new directories must be
    /// followed.
    private var mask: UInt32 {
        var mask = kinds.rawValue | UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF) | UInt32(IN_DONT_FOLLOW)
        if recursively { mask |= UInt32(IN_CREATE) | UInt32(IN_MOVED_TO) | UInt32(IN_ONLYDIR) }
        return mask
    }

    /// Adds a watch for `path`.
    func add(_ path: FilePath, isRoot: Bool) throws(UringError) {
        let mask = mask
        let watch = path.withPlatformString { inotify_add_watch(descriptor.fd, $0, mask) }
        guard watch >= 0 else { throw .system(.watch, Glibc.errno, path: path) }
        paths.withLock { $0[watch] = path }
        if isRoot { rootWatch.withLock { $0 = watch } }
    }

    /// Reads every record queued now (the descriptor is non-blocking) and
    /// appends their changes to `changes`; true once no watch is left.
    func readQueued(into changes: inout [FileChange], using buffer: inout [UInt8]) throws(UringError) -> Bool {
        // Room for many records; one always fits (at most 16 + NAME_MAX + 1 bytes).
        if buffer.isEmpty { buffer = [UInt8](repeating: 0, count: 16 * 1024) }
        var allGone = false
        while true {
            let n = buffer.withUnsafeMutableBytes { read(descriptor.fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let code = Glibc.errno
                if code == EINTR { continue }
                if code == EAGAIN { return allGone }
                throw .system(.read, code, path: root)
            }
            if n == 0 { return allGone }
            allGone = buffer.withUnsafeBytes { self.changes(in: UnsafeRawBufferPointer(rebasing: $0[..<n]), into: &changes) } || allGone
        }
    }

    /// Appends the changes in `records` (whole `inotify_event`s, as a read
    /// returns them) to `changes`; returns true once no watch is left.
    func changes(in records: UnsafeRawBufferPointer, into changes: inout [FileChange]) -> Bool {
        let header = 16  // wd, mask, cookie, len
        var offset = 0
        var allGone = false
        while offset + header <= records.count {
            let watch = records.loadUnaligned(fromByteOffset: offset, as: Int32.self)
            let mask = records.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let cookie = records.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            let length = Int(records.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameBytes = UnsafeRawBufferPointer(rebasing: records[(offset + header)..<min(records.count, offset + header + length)])
            // The kernel pads the name with NUL bytes; it is any bytes, not
            // necessarily UTF-8, so it becomes a path component as it is.
            var name: FilePath.Component?
            if nameBytes.contains(0) {
                name = FilePath.Component(platformString: nameBytes.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            offset += header + length
            allGone = record(watch: watch, mask: mask, cookie: cookie, name: name, into: &changes) || allGone
        }
        return allGone
    }

    /// The change (if any) of one record; true once no watch is left.
    private func record(
        watch: Int32, mask: UInt32, cookie: UInt32, name: FilePath.Component?, into changes: inout [FileChange]
    ) -> Bool {
        func has(_ bit: UInt32) -> Bool { mask & bit != 0 }
        if has(UInt32(IN_Q_OVERFLOW)) {
            changes.append(FileChange(kind: .overflow, path: root, isDirectory: false, moveCookie: 0))
            return false
        }
        let isRoot = rootWatch.withLock { $0 } == watch
        if has(UInt32(IN_IGNORED)) {
            // The watch is gone (its item removed, or its file system
            // unmounted); the instance is done when none is left.
            return paths.withLock { paths in
                paths[watch] = nil
                return paths.isEmpty
            }
        }
        guard let directory = paths.withLock({ $0[watch] }) else { return false }
        let isDirectory = has(UInt32(IN_ISDIR))
        let path = name.map { directory.appending($0) } ?? directory
        if has(UInt32(IN_UNMOUNT)) {
            if isRoot { changes.append(FileChange(kind: .unmounted, path: path, isDirectory: isDirectory, moveCookie: 0)) }
            return false
        }
        if has(UInt32(IN_DELETE_SELF)) || has(UInt32(IN_MOVE_SELF)) {
            // A watched subdirectory's own removal is also its parent's
            // `removed`; report only the root's.
            if isRoot {
                let kind: FileChange.Kind = has(UInt32(IN_DELETE_SELF)) ? .watchedItemRemoved : .watchedItemMoved
                changes.append(FileChange(kind: kind, path: path, isDirectory: isDirectory, moveCookie: 0))
            }
            return false
        }
        let kind: FileChange.Kind
        let wanted: FileChangeKinds
        if has(UInt32(IN_CREATE)) {
            (kind, wanted) = (.created, .created)
        } else if has(UInt32(IN_DELETE)) {
            (kind, wanted) = (.removed, .removed)
        } else if has(UInt32(IN_MODIFY)) {
            (kind, wanted) = (.modified, .modified)
        } else if has(UInt32(IN_ATTRIB)) {
            (kind, wanted) = (.attributesChanged, .attributesChanged)
        } else if has(UInt32(IN_CLOSE_WRITE)) {
            (kind, wanted) = (.closedAfterWriting, .closedAfterWriting)
        } else if has(UInt32(IN_MOVED_FROM)) {
            (kind, wanted) = (.movedAway, .moved)
        } else if has(UInt32(IN_MOVED_TO)) {
            (kind, wanted) = (.movedHere, .moved)
        } else {
            return false
        }
        if kinds.contains(wanted) {
            changes.append(FileChange(kind: kind, path: path, isDirectory: isDirectory, moveCookie: cookie))
        }
        if recursively && isDirectory && (kind == .created || kind == .movedHere) {
            follow(path, into: &changes)
        }
        if recursively && isDirectory && kind == .movedAway {
            unfollow(path)
        }
        return false
    }

    /// Stops watching a directory renamed away, and everything under it:
    /// its watches would otherwise go on reporting it under its old path
    /// (or outside the tree). Renamed within the tree, it is watched again
    /// under its new path when its ``FileChange/Kind/movedHere`` comes.
    private func unfollow(_ directory: FilePath) {
        let gone = paths.withLock { paths in
            let matching = paths.filter { $0.value.starts(with: directory) }.map(\.key)
            for watch in matching { paths[watch] = nil }
            return matching
        }
        for watch in gone { inotify_rm_watch(descriptor.fd, watch) }
    }

    /// Watches a directory that appeared under a recursive watch, and
    /// reports what it already holds as created (descending into its
    /// subdirectories). A directory gone again meanwhile is skipped.
    private func follow(_ directory: FilePath, into changes: inout [FileChange]) {
        guard (try? add(directory, isRoot: false)) != nil else { return }
        guard let stream = directory.withPlatformString({ opendir($0) }) else { return }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                FilePath.Component(platformString: $0.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            guard let name, name.kind == .regular else { continue }  // not "." or ".."
            let path = directory.appending(name)
            var isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
            if entry.pointee.d_type == UInt8(DT_UNKNOWN) {
                // Some file systems do not fill in the type.
                var status = stat()
                isDirectory = path.withPlatformString { lstat($0, &status) } == 0 && status.st_mode & S_IFMT == S_IFDIR
            }
            if kinds.contains(.created) {
                changes.append(FileChange(kind: .created, path: path, isDirectory: isDirectory, moveCookie: 0))
            }
            if isDirectory { follow(path, into: &changes) }
        }
    }
}
