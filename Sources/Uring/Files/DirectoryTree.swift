import CUring
import Glibc
import SystemPackage

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
