import CUring
import Glibc
import SystemPackage

/// Every entry under a directory, depth first; see
/// ``Directory/walk(_:on:withMetadata:onError:)``.
public struct DirectoryWalk: AsyncSequence, Sendable {
    /// One entry of the tree.
    public struct Entry: Sendable, Hashable, CustomStringConvertible {
        /// The entry's path: the walk's root joined with the names below it.
        public let path: FilePath
        /// The entry's type; a symbolic link is ``FileType/symbolicLink``
        /// and is never followed.
        public let type: FileType
        /// How far below the root: 1 for the root's own entries.
        public let depth: Int
        /// The entry's metadata (of a link itself), when the walk was asked
        /// for it; otherwise nil.
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
    let onError: (@Sendable (UringError) -> Void)?

    /// Starts the walk (at the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(walk: self)
    }

    /// Produces the entries, opening each directory as it is reached.
    public struct AsyncIterator: AsyncIteratorProtocol {
        private let walk: DirectoryWalk
        private var started = false
        /// The directories being read, innermost last, with their depth.
        private var stack: [(reader: DirectoryReader, depth: Int)] = []

        init(walk: DirectoryWalk) {
            self.walk = walk
        }

        /// The next entry; nil once the whole tree has been listed.
        public nonisolated(nonsending) mutating func next() async throws -> Entry? {
            let ring = try walk.ring ?? RingActor.shared
            if !started {
                started = true
                let fd = try await File.openAt(
                    AT_FDCWD, walk.root, .readOnly, OpenOptions(rawValue: O_DIRECTORY), nil, ring)
                stack.append((DirectoryReader(owning: fd, path: walk.root, withMetadata: walk.withMetadata), 1))
            }
            while let (reader, depth) = stack.last {
                let entry: DirectoryEntry?
                do {
                    entry = try await reader.next()
                } catch let error as UringError {
                    stack.removeLast()
                    guard let onError = walk.onError else { throw error }
                    onError(error)
                    continue
                }
                guard let entry else {
                    stack.removeLast()
                    continue
                }
                let path = (reader.path ?? FilePath()).appending(entry.name)
                do {
                    let type = try await reader.type(of: entry, ring: ring)
                    if type == .directory {
                        stack.append((try await reader.openChild(entry.name, ring: ring), depth + 1))
                    }
                    return Entry(path: path, type: type, depth: depth, metadata: entry.metadata)
                } catch let error as UringError {
                    guard let onError = walk.onError else { throw error }
                    onError(error)
                    // The entry itself exists; only going into it failed.
                    return Entry(path: path, type: entry.type, depth: depth, metadata: entry.metadata)
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
    /// Symbolic links are listed and never followed, so no link can lead the
    /// walk out of the tree or round in a loop. Mount points are entered
    /// like any directory: a bind mount of an ancestor makes a loop that
    /// ends only at the descriptor limit. Subdirectories are opened through the ring
    /// relative to their parent, with `O_NOFOLLOW`, so a directory swapped
    /// for a link during the walk is not entered. Listing each directory
    /// uses `getdents64` off the ring's thread (see ``entries(withMetadata:)``); entries
    /// whose type the file system does not record are described with
    /// `statx` through the ring. One directory is read at a time, and at
    /// most one descriptor is open per level of depth.
    ///
    /// - Parameters:
    ///   - root: The directory to walk (a link to a directory is followed
    ///     here, at the root only).
    ///   - ring: The ring for the opens and `statx` calls; `nil` means
    ///     ``RingActor/shared``.
    ///   - withMetadata: Also describes every entry
    ///     (``DirectoryWalk/Entry/metadata``), in the same step as listing
    ///     its directory (see ``entries(withMetadata:)``).
    ///   - onError: Without it (the default), the first error ends the walk
    ///     by being thrown. With it, an error in a subdirectory (`EACCES`,
    ///     say) is given to `onError` and the walk goes on without that
    ///     subdirectory's contents. An error opening `root` is always thrown.
    public static func walk(
        _ root: FilePath, on ring: RingActor? = nil, withMetadata: Bool = false,
        onError: (@Sendable (UringError) -> Void)? = nil
    ) -> DirectoryWalk {
        DirectoryWalk(root: root, ring: ring, withMetadata: withMetadata, onError: onError)
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
    nonisolated(nonsending) func type(of entry: DirectoryEntry, ring: RingActor) async throws -> FileType {
        guard entry.type == .unknown else { return entry.type }
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
