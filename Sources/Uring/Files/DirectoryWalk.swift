import SystemPackage

/// Every entry under a directory, depth first; see
/// ``Directory/walk(_:withMetadata:followingLinks:concurrency:onError:)``.
public struct DirectoryWalk: AsyncSequence, Sendable {
    /// One entry of the tree.
    ///
    /// An entry is small: it refers to the store its batch of up to 256
    /// entries shares (their names and, with `withMetadata`, their `statx`
    /// records, about 70 KiB in all), and that store lives while any entry
    /// of the batch does. To keep a few entries of a large walk, keep their
    /// ``path`` and ``metadata`` instead.
    public struct Entry: Sendable, Hashable, CustomStringConvertible {
        /// The directory the entry is in: the walk's root joined with the
        /// names below it.
        public var directory: FilePath { store.directory(at: directoryNumber) }
        /// The entry's name in ``directory`` (built when asked for: the
        /// walk keeps a batch's names together in one buffer).
        public var name: FilePath.Component { store.component(at: nameOffset) }
        /// The entry's path, ``directory`` joined with ``name`` (built when
        /// asked for, so a walk that looks only at names and types builds
        /// no paths).
        public var path: FilePath { directory.appending(name) }
        /// The entry's type. A symbolic link is ``FileType/symbolicLink``
        /// unless the walk follows links; then it is its target's type (and
        /// a link to nothing stays a link).
        public let type: FileType
        /// How far below the root: 1 for the root's own entries.
        public var depth: Int { Int(level) }
        /// The entry's metadata, when the walk was asked for it (of a link
        /// itself, or of its target when the walk follows links); otherwise,
        /// or when `statx` failed for it (that error comes right after the
        /// entry: to `onError`, or thrown), nil. Built when asked for, from the `statx` record the
        /// walk keeps with the entry's batch.
        public var metadata: FileMetadata? { record < 0 ? nil : store.metadata(at: record) }

        /// The batch's store, and where in it this entry's parts are.
        let store: WalkBatchStore
        let directoryNumber: Int32
        let nameOffset: Int32
        /// The number of the entry's `statx` record; -1 if it has none.
        let record: Int32
        let level: Int32

        init(store: WalkBatchStore, directory: Int32, name: Int32, type: FileType, depth: Int, record: Int32) {
            self.store = store
            self.directoryNumber = directory
            self.nameOffset = name
            self.type = type
            self.level = Int32(truncatingIfNeeded: depth)
            self.record = record
        }

        /// The path and the type, such as `Sources/a.swift (regular)`.
        public var description: String { "\(path) (\(type))" }

        /// Whether both are the same entry: directory, name, type, depth
        /// and metadata alike.
        public static func == (lhs: Entry, rhs: Entry) -> Bool {
            lhs.type == rhs.type && lhs.depth == rhs.depth
                && lhs.store.sameName(at: lhs.nameOffset, as: rhs.store, at: rhs.nameOffset)
                && lhs.directory == rhs.directory && lhs.metadata == rhs.metadata
        }

        /// Hashes what `==` compares.
        public func hash(into hasher: inout Hasher) {
            hasher.combine(directory)
            store.hashName(at: nameOffset, into: &hasher)
            hasher.combine(type)
            hasher.combine(depth)
            hasher.combine(metadata)
        }
    }

    /// An entry of the tree.
    public typealias Element = Entry
    /// A ``UringError`` naming the path that failed, or `CancellationError`.
    public typealias Failure = any Error

    let root: FilePath
    let options: WalkOptions
    let concurrency: Int
    let onError: (@Sendable (UringError) -> Void)?

    /// Starts the walk (at the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(walk: self)
    }

    /// Hands out the entries that the walk's listing tasks produce.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private let walk: DirectoryWalk
        /// Set at the first `next()`; ends the listing tasks when the
        /// iterator goes away.
        private var session: WalkSession?
        /// The channels being read, outermost first: a subtree listed by a
        /// task of its own is read whole, where it belongs in the order,
        /// before the rest of its parent's channel.
        private var levels: [Level] = []
        private var done = false

        private struct Level {
            let channel: WalkChannel
            /// The batch being handed out. Each item is swapped out for
            /// `.taken` (the iterator holds the only reference to the
            /// batch, so that moves it instead of copying it).
            var items: [WalkItem] = []
            var position = 0
        }

        init(walk: DirectoryWalk) {
            self.walk = walk
        }

        /// The next entry; nil once the whole tree has been listed.
        ///
        /// - Throws: The first ``UringError`` met (unless the walk has an
        ///   `onError`), or `CancellationError` once the task is cancelled
        ///   (noticed at the next batch of entries, at most a few hundred
        ///   entries later). Either way the walk has
        ///   ended its listing tasks and they have closed their descriptors.
        public nonisolated(nonsending) mutating func next() async throws -> Entry? {
            if done { return nil }
            if session == nil {
                let session = WalkSession(concurrency: walk.concurrency)
                let channel = WalkChannel()
                session.producers.startRoot(walk.root, options: walk.options, into: channel)
                self.session = session
                levels = [Level(channel: channel)]
            }
            while !levels.isEmpty {
                let top = levels.count - 1
                guard levels[top].position < levels[top].items.count else {
                    // Checked once a batch, so that a loop that never
                    // waits (its tasks ahead of it) still ends.
                    if Task.isCancelled { try await end(throwing: CancellationError()) }
                    let items: [WalkItem]?
                    do {
                        items = try await levels[top].channel.next()
                    } catch {
                        try await end(throwing: error)
                    }
                    if let items {
                        levels[top].items = items
                        levels[top].position = 0
                    } else {
                        levels.removeLast()
                    }
                    continue
                }
                var item = WalkItem.taken
                swap(&item, &levels[top].items[levels[top].position])
                levels[top].position += 1
                switch consume item {
                case .entry(let entry):
                    return entry
                case .subtree(let channel):
                    levels.append(Level(channel: channel))
                case .failure(let error):
                    guard let onError = walk.onError else { try await end(throwing: error) }
                    onError(error)
                case .rootFailure(let error):
                    try await end(throwing: error)
                case .taken:
                    break
                }
            }
            done = true
            session = nil
            return nil
        }

        /// The next entry, without leaving the caller's actor.
        @inlinable
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> Entry? {
            // Inlined into the caller's loop, an entry already listed is
            // taken without an async call, so without the executor check
            // Swift makes on the way back from one (a lock when the task
            // prefers an executor, as tasks in a ring's `run` do).
            if let entry = nextListed() { return entry }
            return try await next()
        }

        /// The next item, if it is an entry already listed; nil if the next
        /// step needs `next()`.
        @usableFromInline
        mutating func nextListed() -> Entry? {
            guard let top = levels.indices.last, levels[top].position < levels[top].items.count else { return nil }
            var item = WalkItem.taken
            swap(&item, &levels[top].items[levels[top].position])
            if case .entry(let entry) = item {
                levels[top].position += 1
                return entry
            }
            // Not an entry: put it back for `next()`.
            swap(&item, &levels[top].items[levels[top].position])
            return nil
        }

        /// Ends the walk with `error`, once every listing task has stopped.
        private nonisolated(nonsending) mutating func end(throwing error: any Error) async throws -> Never {
            done = true
            levels = []
            await session?.producers.endAll()
            session = nil
            throw error
        }
    }
}

/// The walk's listing tasks, ended when the iterator that started them
/// goes away (a loop left early, say).
final class WalkSession: Sendable {
    let producers: WalkProducers

    init(concurrency: Int) {
        producers = WalkProducers(limit: concurrency)
    }

    deinit { producers.cancelAll() }
}

extension Directory {
    /// Every file, directory and link under `root`, depth first: each
    /// directory's entry comes before its contents.
    ///
    /// ```swift
    /// for try await entry in Directory.walk("Sources") where entry.type == .regular {
    ///     print(entry.path)
    /// }
    /// ```
    ///
    /// A walk sees the tree as it is while it lists: an entry created or
    /// removed during the walk may or may not appear, an entry removed
    /// between being listed and being described is left out, and a
    /// subdirectory removed before the walk opens it fails with `ENOENT`
    /// (given to `onError` when there is one).
    ///
    /// Symbolic links are listed and, unless `followingLinks`, never
    /// followed, so no link can lead the walk out of the tree or round in a
    /// loop. Subdirectories are opened relative to their parent with
    /// `O_NOFOLLOW`, so a directory swapped for a link during the walk is
    /// not entered. Mount points are entered like any directory: a bind
    /// mount of an ancestor makes a loop that ends only at the descriptor
    /// limit.
    ///
    /// io_uring cannot list a directory, so the walk makes no ring
    /// requests: tasks on Swift's global executor open each directory,
    /// read its entries (`getdents64`) and, when asked, describe each one
    /// (`statx`), one system call after another, never on a ring's thread.
    /// They work ahead of the loop, a few hundred entries at a time, and
    /// the loop takes entries already listed without waiting. Up to
    /// `concurrency` subtrees are listed at once, each by its own task;
    /// the entries still come in depth-first order. Leaving the loop early
    /// cancels the tasks, and each closes its descriptors as it stops. When
    /// the walk throws, it has waited for them first.
    ///
    /// - Parameters:
    ///   - root: The directory to walk (a link to a directory is followed
    ///     here, at the root, always).
    ///   - withMetadata: Also describes every entry
    ///     (``DirectoryWalk/Entry/metadata``) as its directory is listed.
    ///   - followingLinks: Enter links to directories and describe links
    ///     by their targets, like `find -L`. A link back into a directory
    ///     the walk is inside is reported as `ELOOP` instead of entered.
    ///   - concurrency: The most subtrees listed at once (from 1: one task,
    ///     still working ahead of the loop). Each task holds a descriptor
    ///     per directory it is inside (and, for a moment, one for the
    ///     subdirectory it opens for another task), and a thread of Swift's global
    ///     executor while its system calls run, so on a slow file system a
    ///     large value can keep other tasks waiting. `nil` (the default)
    ///     means one per CPU the process may run on, at most 4.
    ///   - onError: Without it (the default), the first error ends the walk
    ///     by being thrown. With it, an error in a subdirectory (`EACCES`,
    ///     say) is given to `onError`, at the place in the order where the
    ///     subdirectory's contents would have been, and the walk goes on
    ///     without them. With `withMetadata`, an entry that `statx` cannot
    ///     describe is still listed, without metadata (and not entered),
    ///     and its error, naming the entry's path, comes right after it.
    ///     An error opening `root` is always thrown.
    public static func walk(
        _ root: FilePath, withMetadata: Bool = false, followingLinks: Bool = false,
        concurrency: Int? = nil, onError: (@Sendable (UringError) -> Void)? = nil
    ) -> DirectoryWalk {
        DirectoryWalk(
            root: root,
            options: WalkOptions(withMetadata: withMetadata, followingLinks: followingLinks, stopsAtFailure: onError == nil),
            concurrency: max(1, concurrency ?? min(4, RingGroup.usableCPUs().count)), onError: onError)
    }

    /// Every entry under `root`, depth first.
    ///
    /// The walk makes no ring requests, so it needs no ring; use
    /// ``walk(_:withMetadata:followingLinks:concurrency:onError:)``.
    @available(*, deprecated, message: "the walk makes no ring requests; leave out `on:`")
    public static func walk(
        _ root: FilePath, on ring: RingActor?, withMetadata: Bool = false, followingLinks: Bool = false,
        concurrency: Int? = nil, onError: (@Sendable (UringError) -> Void)? = nil
    ) -> DirectoryWalk {
        walk(root, withMetadata: withMetadata, followingLinks: followingLinks, concurrency: concurrency, onError: onError)
    }
}
