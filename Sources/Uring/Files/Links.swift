import CUring
import Glibc
import SystemPackage

/// Symbolic and hard links, through the ring.
extension RingActor {
    /// Creates a symbolic link at `path` whose content is `target`
    /// (`symlinkat`). `target` is stored as given: a relative target is
    /// resolved from the link's directory when the link is followed, and it
    /// need not exist.
    ///
    /// - Throws: ``UringError`` naming `path`: `EEXIST` if something is
    ///   there already.
    public nonisolated(nonsending) func createSymbolicLink(at path: FilePath, pointingTo target: FilePath) async throws {
        if path.isEmpty || target.isEmpty {
            throw UringError.invalid(.createSymbolicLink, path: path, "the path and the target must not be empty")
        }
        let names = PathPair(PathStorage(target), PathStorage(path))
        _ = try await core.perform(.createSymbolicLink, about: .path(path), keepAlive: names) {
            io_uring_prep_symlinkat(&$0, names.first.pointer, AT_FDCWD, names.second.pointer)
        }
    }

    /// Creates a hard link at `path` to the file at `existing` (`linkat`):
    /// a second name for the same file. A symbolic link at `existing` is
    /// linked itself, not followed.
    ///
    /// - Throws: ``UringError`` naming `path`: `EEXIST` if something is
    ///   there already, `EXDEV` across file systems, `EPERM` for a
    ///   directory.
    public nonisolated(nonsending) func createLink(at path: FilePath, to existing: FilePath) async throws {
        if path.isEmpty || existing.isEmpty {
            throw UringError.invalid(.createLink, path: path, "the paths must not be empty")
        }
        let names = PathPair(PathStorage(existing), PathStorage(path))
        _ = try await core.perform(.createLink, about: .path(path), keepAlive: names) {
            io_uring_prep_linkat(&$0, AT_FDCWD, names.first.pointer, AT_FDCWD, names.second.pointer, 0)
        }
    }

    /// What the symbolic link at `path` points to (`readlink`).
    ///
    /// io_uring has no operation for it, so the system call is made off the
    /// ring's thread (reading a link can wait on a slow file system).
    ///
    /// - Throws: ``UringError`` naming `path`: `EINVAL` if it is not a
    ///   symbolic link, `ENOENT` if nothing is there.
    public nonisolated(nonsending) func destinationOfSymbolicLink(at path: FilePath) async throws -> FilePath {
        if path.isEmpty { throw UringError.invalid(.readLink, path: path, "the path is empty") }
        return try await offRingThread { () throws(UringError) -> FilePath in
            var size = 256
            while true {
                var buffer = [CChar](repeating: 0, count: size)
                let count = path.withPlatformString { readlink($0, &buffer, size) }
                if count < 0 { throw UringError.system(.readLink, Glibc.errno, path: path) }
                // A target that filled the buffer may have been cut short.
                if count < size {
                    buffer[count] = 0
                    return FilePath(platformString: buffer)
                }
                size *= 4
                if size > 1 << 20 { throw UringError.system(.readLink, ENAMETOOLONG, path: path) }
            }
        }
    }
}
