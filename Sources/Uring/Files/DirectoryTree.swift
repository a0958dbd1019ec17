import CUring
import Glibc
import SystemPackage

/// Every entry under a directory, depth first; see
/// ``Directory/walk(_:on:withMetadata:followingLinks:concurrency:onError:)``.
public struct DirectoryWalk: AsyncSequence, Sendable {
    /// One entry of the tree.
    public struct Entry: Sendable, Hashable, CustomStringConvertible {
        /// The directory the entry is in: the walk's root joined with the
        /// names below it.
        public let directory: FilePath
        /// The entry's name in ``directory``.
        public let name: FilePath.Component
        /// The entry's path, ``directory`` joined with ``name`` (built when
        /// asked for, so a walk that looks only at names and types builds
        /// no paths).
        public var path: FilePath { directory.appending(name) }
        /// The entry's type. A symbolic link is ``FileType/symbolicLink``
        /// unless the walk follows links; then it is its target's type (and
        /// a link to nothing stays a link).
        public let type: FileType
        /// How far below the root: 1 for the root's own entries.
        public let depth: Int
        /// The entry's metadata, when the walk was asked for it (of a link
        /// itself, or of its target when the walk follows links); otherwise
        /// nil.
        public let metadata: FileMetadata?

        /// The path and the type, such as `Sources/a.swift (regular)`.
        public var description: String { "\(path) (\(type))" }
    }

    /// An entry of the tree.
    public typealias Element = Entry
    /// A ``UringError`` naming the path that failed.
    public typealias Failure = any Error

    let root: FilePath
    let ring: RingActor?
    let withMetadata: Bool
    let followingLinks: Bool
    let concurrency: Int
    let onError: (@Sendable (UringError) -> Void)?

    /// Starts the walk (at the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(walk: self)
    }

    /// Produces the entries, listing directories ahead of the walk.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private let walk: DirectoryWalk
        private let state = WalkState()
        private var started = false

        init(walk: DirectoryWalk) {
            self.walk = walk
        }

        /// The next entry; nil once the whole tree has been listed.
        public nonisolated(nonsending) mutating func next() async throws -> Entry? {
            let ring = try walk.ring ?? RingActor.shared
            if !started {
                started = true
                let loaded = try await DirectoryLoad.start(
                    parent: nil, name: nil, path: walk.root, walk: walk, ring: ring
                ).value
                state.push(loaded, depth: 1)
            }
            while let frame = state.top {
                let entry: DirectoryEntry
                do {
                    guard let next = try await frame.next(walk: walk) else {
                        state.pop()
                        continue
                    }
                    entry = next
                } catch let error as UringError where walk.onError != nil {
                    state.pop()
                    walk.onError?(error)
                    continue
                } catch {
                    await state.endLoads()
                    throw error
                }
                var type = entry.type
                do {
                    if type == .unknown || (type == .symbolicLink && walk.followingLinks) {
                        type = try await frame.reader.type(of: entry, followingLinks: walk.followingLinks, ring: ring)
                    }
                    if type == .directory {
                        let load = frame.takeLoad(at: frame.position - 1)
                            ?? DirectoryLoad.start(
                                parent: frame, name: entry.name, path: frame.path.appending(entry.name), walk: walk,
                                ring: ring)
                        let loaded = try await load.value
                        if let identity = loaded.identity, state.isAncestor(identity) {
                            throw UringError.system(.listDirectory, ELOOP, path: loaded.path)
                        }
                        state.push(loaded, depth: frame.depth + 1)
                    }
                    state.startLoads(walk: walk, ring: ring)
                    return Entry(directory: frame.path, name: entry.name, type: type, depth: frame.depth, metadata: entry.metadata)
                } catch let error as UringError where walk.onError != nil {
                    walk.onError?(error)
                    // The entry itself exists; only going into it failed.
                    return Entry(directory: frame.path, name: entry.name, type: type, depth: frame.depth, metadata: entry.metadata)
                } catch {
                    await state.endLoads()
                    throw error
                }
            }
            return nil
        }

        /// The next entry, without leaving the caller's actor.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> Entry? {
            try await next()
        }
    }
}

/// The device and inode of a directory, to notice a link that leads back
/// into the path being walked.
struct DirectoryIdentity: Sendable, Hashable {
    let device: UInt64
    let inode: UInt64
}

/// A directory opened and its first entries read, in one step off the
/// ring's thread.
struct LoadedDirectory: Sendable {
    let reader: DirectoryReader
    let path: FilePath
    let first: [DirectoryEntry]
    let finished: Bool
    /// Set when the walk follows links (only then can it loop).
    let identity: DirectoryIdentity?
}

/// Loading one directory, started ahead of the walk or when it gets there.
final class DirectoryLoad: Sendable {
    private let task: Task<LoadedDirectory, any Error>

    private init(task: Task<LoadedDirectory, any Error>) {
        self.task = task
    }

    deinit { task.cancel() }

    /// About how many entries one load reads before handing them over.
    static let entriesPerStep = 1024

    /// Stops the load and waits until it has let go of its descriptor.
    func end() async {
        task.cancel()
        _ = try? await task.value
    }

    /// The loaded directory, or the error naming it.
    var value: LoadedDirectory {
        get async throws { try await task.value }
    }

    /// Starts opening `name` in `parent` (or `path` itself, for the root)
    /// and reading its first entries, together, on Swift's global executor.
    static func start(
        parent: WalkFrame?, name: FilePath.Component?, path: FilePath, walk: DirectoryWalk, ring: RingActor
    ) -> DirectoryLoad {
        let directory = parent?.reader.descriptor
        let withMetadata = walk.withMetadata
        let following = walk.followingLinks
        return DirectoryLoad(task: Task(executorPreference: globalConcurrentExecutor) {
            try Task.checkCancellation()
            // Entered below the root only by name in an open parent, never
            // through a link unless the walk follows them.
            let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (directory != nil && !following ? O_NOFOLLOW : 0)
            let fd: Int32
            if let directory, let name {
                fd = name.withPlatformString { openat(directory.fd, $0, flags) }
            } else {
                fd = path.withPlatformString { openat(AT_FDCWD, $0, flags) }
            }
            guard fd >= 0 else { throw UringError.system(.open, Glibc.errno, path: path) }
            let reader = DirectoryReader(owning: fd, path: path, withMetadata: withMetadata)
            var identity: DirectoryIdentity? = nil
            if following {
                var info = stat()
                if fstat(fd, &info) == 0 { identity = DirectoryIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)) }
            }
            // Small directories are read to their end here, saving a step;
            // a large one in steps of about a thousand entries.
            var entries: [DirectoryEntry] = []
            var finished = false
            while entries.count < DirectoryLoad.entriesPerStep {
                let batch = try DirectoryReader.readBatchHere(
                    reader.descriptor, path: path, withMetadata: withMetadata, followingLinks: following)
                if batch.isEmpty {
                    finished = true
                    break
                }
                entries += batch
            }
            return LoadedDirectory(reader: reader, path: path, first: entries, finished: finished, identity: identity)
        })
    }
}

/// One directory on the walk's path: its entries and the loads started
/// for the subdirectories among them.
final class WalkFrame: @unchecked Sendable {
    // `@unchecked Sendable`: a frame is used only by the iterator that owns
    // it, one call at a time; the loads it starts see only its immutable
    // `reader`.
    let reader: DirectoryReader
    let path: FilePath
    let depth: Int
    let identity: DirectoryIdentity?
    private var entries: [DirectoryEntry]
    private var finished: Bool
    /// The index in `entries` of the next entry to return.
    private(set) var position = 0
    /// The next index to consider for a load ahead.
    var scanned = 0
    /// Loads started ahead, by index in `entries`.
    var loads: [Int: DirectoryLoad] = [:]

    init(_ loaded: LoadedDirectory, depth: Int) {
        reader = loaded.reader
        path = loaded.path
        self.depth = depth
        identity = loaded.identity
        entries = loaded.first
        finished = loaded.finished
    }

    /// The next entry, reading another batch when these are done.
    nonisolated(nonsending) func next(walk: DirectoryWalk) async throws -> DirectoryEntry? {
        while position == entries.count {
            if finished { return nil }
            let batch = try await DirectoryReader.readBatch(
                reader.descriptor, path: path, withMetadata: walk.withMetadata, followingLinks: walk.followingLinks)
            if batch.isEmpty { finished = true }
            // Loads ahead are keyed by index; a new batch starts afresh.
            entries = batch
            position = 0
            scanned = 0
            loads = [:]
        }
        position += 1
        return entries[position - 1]
    }

    /// The load started ahead for the entry at `index`, if any.
    func takeLoad(at index: Int) -> DirectoryLoad? {
        loads.removeValue(forKey: index)
    }

    /// The subdirectories not yet loaded after the current entry, in order,
    /// up to `limit`; marks them scanned.
    func nextToLoad(limit: Int) -> [(index: Int, name: FilePath.Component)] {
        var found: [(Int, FilePath.Component)] = []
        scanned = max(scanned, position)
        while scanned < entries.count && found.count < limit {
            if entries[scanned].type == .directory { found.append((scanned, entries[scanned].name)) }
            scanned += 1
        }
        return found
    }
}

/// The walk's path from the root down, and its loads ahead.
final class WalkState: @unchecked Sendable {
    // `@unchecked Sendable`: used only by the iterator that owns it, one
    // call at a time.
    private var frames: [WalkFrame] = []

    var top: WalkFrame? { frames.last }

    func push(_ loaded: LoadedDirectory, depth: Int) {
        frames.append(WalkFrame(loaded, depth: depth))
    }

    func pop() {
        frames.removeLast()
    }

    /// Ends every load started ahead, once each has closed what it opened:
    /// the walk is ending with an error, and the caller's descriptor checks
    /// must not see a load still running.
    nonisolated(nonsending) func endLoads() async {
        let loads = frames.flatMap { $0.loads.values }
        for frame in frames { frame.loads = [:] }
        for load in loads { await load.end() }
    }

    /// Whether `identity` is a directory on the current path.
    func isAncestor(_ identity: DirectoryIdentity) -> Bool {
        frames.contains { $0.identity == identity }
    }

    /// Starts loading subdirectories ahead of the walk, innermost first,
    /// until `concurrency` loads are started and not yet entered.
    func startLoads(walk: DirectoryWalk, ring: RingActor) {
        var room = walk.concurrency - 1 - frames.reduce(0) { $0 + $1.loads.count }
        for frame in frames.reversed() where room > 0 {
            for (index, name) in frame.nextToLoad(limit: room) {
                frame.loads[index] = DirectoryLoad.start(
                    parent: frame, name: name, path: frame.path.appending(name), walk: walk, ring: ring)
                room -= 1
            }
        }
    }
}

extension Directory {
    /// Every file, directory and link under `root`, depth first: each
    /// directory's entry comes before its contents.
    ///
    /// ```swift
    /// for try await entry in Directory.walk("Sources", on: ring) where entry.type == .regular {
    ///     print(entry.path)
    /// }
    /// ```
    ///
    /// Symbolic links are listed and, unless `followingLinks`, never
    /// followed, so no link can lead the walk out of the tree or round in a
    /// loop. Subdirectories are opened relative to their parent with
    /// `O_NOFOLLOW`, so a directory swapped for a link during the walk is
    /// not entered. Mount points are entered like any directory: a bind
    /// mount of an ancestor makes a loop that ends only at the descriptor
    /// limit.
    ///
    /// io_uring cannot list a directory, so opening each directory and
    /// reading its entries (`openat`, `getdents64`, and with `withMetadata`
    /// a `statx` per entry) is one step on Swift's global executor, never on
    /// a ring's thread (see ``entries(withMetadata:)``). Up to
    /// `concurrency` directories are loaded at once, ahead of where the walk
    /// is, while the entries already read are handed out. Entries whose type
    /// the file system does not record, and link targets when following
    /// links, are described with `statx` through the ring. Leaving the
    /// loop early cancels the loads ahead; each closes its descriptor as it
    /// finishes. When the walk throws, it has waited for them first.
    ///
    /// - Parameters:
    ///   - root: The directory to walk (a link to a directory is followed
    ///     here, at the root, always).
    ///   - ring: The ring for the `statx` calls; `nil` means
    ///     ``RingActor/shared``.
    ///   - withMetadata: Also describes every entry
    ///     (``DirectoryWalk/Entry/metadata``), in the step that lists its
    ///     directory.
    ///   - followingLinks: Enter links to directories and describe links
    ///     by their targets, like `find -L`. A link back into a directory
    ///     the walk is inside is reported as `ELOOP` instead of entered.
    ///   - concurrency: The most directories loaded at once (from 1, one at
    ///     a time when reached). Each load ahead holds a descriptor until
    ///     the walk is done with it, and a thread of Swift's global executor
    ///     while its system calls run, so on a slow file system a large
    ///     value can keep other tasks waiting. `nil` (the default) means one
    ///     per CPU the process may run on, at most 4; on the 2-core machine
    ///     this was measured on, 2 was as fast as 4.
    ///   - onError: Without it (the default), the first error ends the walk
    ///     by being thrown. With it, an error in a subdirectory (`EACCES`,
    ///     say) is given to `onError` and the walk goes on without that
    ///     subdirectory's contents. An error opening `root` is always thrown.
    public static func walk(
        _ root: FilePath, on ring: RingActor? = nil, withMetadata: Bool = false, followingLinks: Bool = false,
        concurrency: Int? = nil, onError: (@Sendable (UringError) -> Void)? = nil
    ) -> DirectoryWalk {
        DirectoryWalk(
            root: root, ring: ring, withMetadata: withMetadata, followingLinks: followingLinks,
            concurrency: max(1, concurrency ?? min(4, RingGroup.usableCPUs().count)), onError: onError)
    }
}

extension RingActor {
    /// Removes `path` and everything under it, like `rm -r`.
    ///
    /// It never follows a symbolic link: a link in the tree is removed, not
    /// what it points to, and subdirectories are opened relative to their
    /// parent with `O_NOFOLLOW`, so a directory swapped for a link meanwhile
    /// cannot lead the removal out of the tree. If `path` itself is a file
    /// or a link, that alone is removed. Each directory is listed whole
    /// before its entries are removed.
    ///
    /// - Throws: ``UringError`` naming the path that could not be opened or
    ///   removed (`ENOENT` if `path` does not exist); what was removed before
    ///   the error stays removed.
    public nonisolated(nonsending) func removeTree(at path: FilePath) async throws {
        let fd: Int32
        do {
            fd = try await File.openAt(
                AT_FDCWD, path, .readOnly, OpenOptions(rawValue: O_DIRECTORY | O_NOFOLLOW), nil, self)
        } catch let error as UringError where error.errno == .notDirectory || error.errno == .tooManySymbolicLinkLevels {
            try await removeFile(at: path)
            return
        }
        try await DirectoryReader(owning: fd, path: path).removeContents(ring: self)
        try await removeDirectory(at: path)
    }
}

/// A directory's descriptor and a name in it, kept alive for one request.
private final class NameInDirectory: Sendable {
    let directory: OwnedDescriptor
    let name: PathStorage
    init(_ directory: OwnedDescriptor, _ name: FilePath.Component) {
        self.directory = directory
        self.name = PathStorage(FilePath(root: nil, [name]))
    }
}

extension DirectoryReader {
    /// `entry`'s type, asking `statx` (without following a link) when the
    /// directory did not record it.
    nonisolated(nonsending) func type(
        of entry: DirectoryEntry, followingLinks: Bool = false, ring: RingActor
    ) async throws -> FileType {
        guard entry.type == .unknown || (followingLinks && entry.type == .symbolicLink) else { return entry.type }
        if followingLinks {
            do {
                return try await DescriptorIO.statx(
                    core: ring.core, directory: descriptor.fd, path: FilePath(root: nil, [entry.name]),
                    reportedPath: (path ?? FilePath()).appending(entry.name), flags: 0
                ).type
            } catch let error as UringError where error.errno == .noSuchFileOrDirectory {
                // A link to nothing: described as the link it is, below.
            }
        }
        // statx holds only its path buffer until the completion; this
        // reader's descriptor stays open meanwhile because the caller holds
        // the reader across the call.
        return try await DescriptorIO.statx(
            core: ring.core, directory: descriptor.fd, path: FilePath(root: nil, [entry.name]),
            reportedPath: (path ?? FilePath()).appending(entry.name), flags: AT_SYMLINK_NOFOLLOW
        ).type
    }

    /// Opens the subdirectory `name` through the ring, never following a
    /// symbolic link.
    nonisolated(nonsending) func openChild(_ name: FilePath.Component, ring: RingActor) async throws -> DirectoryReader {
        let hold = NameInDirectory(descriptor, name)
        let childPath = (path ?? FilePath()).appending(name)
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        let fd = try await ring.core.perform(.open, about: .path(childPath), keepAlive: hold) {
            io_uring_prep_openat(&$0, hold.directory.fd, hold.name.pointer, flags, 0)
        }
        return DirectoryReader(owning: fd, path: childPath, withMetadata: withMetadata)
    }

    /// Removes the entry `name` (`unlinkat`, with `AT_REMOVEDIR` for a
    /// directory) through the ring.
    nonisolated(nonsending) func remove(_ name: FilePath.Component, directory: Bool, ring: RingActor) async throws {
        let hold = NameInDirectory(descriptor, name)
        let operation: UringOperation = directory ? .removeDirectory : .removeFile
        _ = try await ring.core.perform(operation, about: .path((path ?? FilePath()).appending(name)), keepAlive: hold) {
            io_uring_prep_unlinkat(&$0, hold.directory.fd, hold.name.pointer, directory ? AT_REMOVEDIR : 0)
        }
    }

    /// Removes everything in this directory, depth first.
    nonisolated(nonsending) func removeContents(ring: RingActor) async throws {
        for entry in try await all() {
            if try await type(of: entry, ring: ring) == .directory {
                let child = try await openChild(entry.name, ring: ring)
                try await child.removeContents(ring: ring)
                try await remove(entry.name, directory: true, ring: ring)
            } else {
                try await remove(entry.name, directory: false, ring: ring)
            }
        }
    }
}
