import CUring
import Glibc
import SystemPackage

/// File system operations by path, performed through the ring.
extension RingActor {
    /// Removes the file (or symbolic link) at `path` (`unlinkat`).
    public nonisolated(nonsending) func removeFile(at path: FilePath) async throws {
        let name = try storage(for: path, .removeFile)
        _ = try await core.perform(.removeFile, about: .path(path), keepAlive: name) {
            io_uring_prep_unlinkat(&$0, AT_FDCWD, name.pointer, 0)
        }
    }

    /// Removes the empty directory at `path` (`unlinkat` with `AT_REMOVEDIR`).
    public nonisolated(nonsending) func removeDirectory(at path: FilePath) async throws {
        let name = try storage(for: path, .removeDirectory)
        _ = try await core.perform(.removeDirectory, about: .path(path), keepAlive: name) {
            io_uring_prep_unlinkat(&$0, AT_FDCWD, name.pointer, AT_REMOVEDIR)
        }
    }

    /// Renames `source` to `destination`, replacing it if it exists
    /// (`renameat`).
    public nonisolated(nonsending) func rename(_ source: FilePath, to destination: FilePath) async throws {
        let from = try storage(for: source, .rename)
        let to = try storage(for: destination, .rename)
        let both = PathPair(from, to)
        _ = try await core.perform(.rename, about: .path(source), keepAlive: both) {
            io_uring_prep_renameat(&$0, AT_FDCWD, from.pointer, AT_FDCWD, to.pointer, 0)
        }
    }

    /// Creates a directory at `path` (`mkdirat`).
    ///
    /// - Parameters:
    ///   - path: The directory to create.
    ///   - permissions: Its permissions (before the process's umask).
    ///   - intermediates: Also creates missing parent directories, like
    ///     `mkdir -p`, and succeeds if `path` already is a directory.
    /// - Throws: ``UringError`` naming the path that could not be created:
    ///   `EEXIST` if something other than a directory is in the way,
    ///   `ENOTDIR` if a parent is not a directory.
    public nonisolated(nonsending) func createDirectory(
        at path: FilePath, permissions: FilePermissions = FilePermissions(rawValue: 0o755), intermediates: Bool = false
    ) async throws {
        let name = try storage(for: path, .createDirectory)
        do {
            _ = try await core.perform(.createDirectory, about: .path(path), keepAlive: name) {
                io_uring_prep_mkdirat(&$0, AT_FDCWD, name.pointer, permissions.rawValue)
            }
        } catch let error as UringError where intermediates {
            if error.errno == .fileExists {
                // Done if a directory is there (made by someone else, even).
                if (try? await metadata(at: path))?.type == .directory { return }
                throw error
            }
            guard error.errno == .noSuchFileOrDirectory, let parent = Self.parent(of: path) else { throw error }
            try await createDirectory(at: parent, permissions: permissions, intermediates: true)
            // Once more, without intermediates: the parent exists now (and if
            // someone keeps removing it, this fails instead of retrying).
            do {
                _ = try await core.perform(.createDirectory, about: .path(path), keepAlive: name) {
                    io_uring_prep_mkdirat(&$0, AT_FDCWD, name.pointer, permissions.rawValue)
                }
            } catch let error as UringError where error.errno == .fileExists {
                if (try? await metadata(at: path))?.type == .directory { return }
                throw error
            }
        }
    }

    /// `path` without its last component, or nil when nothing is left.
    private static func parent(of path: FilePath) -> FilePath? {
        let parent = path.removingLastComponent()
        return parent.isEmpty || parent == path ? nil : parent
    }

    /// The metadata of the object at `path` (`statx`).
    ///
    /// - Parameters:
    ///   - path: The object to describe.
    ///   - followingSymlinks: When false, describes a symbolic link itself
    ///     rather than its target.
    public nonisolated(nonsending) func metadata(
        at path: FilePath, followingSymlinks: Bool = true
    ) async throws -> FileMetadata {
        _ = try storage(for: path, .metadata)
        return try await DescriptorIO.statx(
            core: core, directory: AT_FDCWD, path: path, reportedPath: path,
            flags: followingSymlinks ? 0 : AT_SYMLINK_NOFOLLOW)
    }

    private nonisolated func storage(for path: FilePath, _ operation: UringOperation) throws -> PathStorage {
        if path.isEmpty { throw UringError.invalid(operation, path: path, "the path is empty") }
        return PathStorage(path)
    }
}

/// Keeps two paths alive for one request.
final class PathPair: Sendable {
    let first: PathStorage
    let second: PathStorage
    init(_ first: PathStorage, _ second: PathStorage) {
        self.first = first
        self.second = second
    }
}
