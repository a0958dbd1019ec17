import CUring
import Glibc
import SystemPackage

extension File {
    /// Sets the file's permission bits (`fchmod`). io_uring has no operation
    /// for it, so the call is made off the ring's thread.
    ///
    /// - Throws: ``UringError`` naming the file: `EPERM` if the process does
    ///   not own it.
    public func setPermissions(_ permissions: FilePermissions) async throws {
        let (fd, path) = (descriptor.rawValue, self.path)
        try await offRingThread { () throws in
            if fchmod(fd, mode_t(permissions.rawValue)) != 0 {
                throw UringError.system(.setPermissions, Glibc.errno, path: path)
            }
        }
    }

    /// Sets the file's access and modification times (`futimens`); `nil`
    /// leaves a time as it is. Off the ring's thread, like
    /// ``setPermissions(_:)``.
    public func setTimes(accessed: FileTimestamp? = nil, modified: FileTimestamp?) async throws {
        let (fd, path) = (descriptor.rawValue, self.path)
        let times = [timespec(accessed), timespec(modified)]
        try await offRingThread { () throws in
            if futimens(fd, times) != 0 { throw UringError.system(.setTimes, Glibc.errno, path: path) }
        }
    }
}

extension RingActor {
    /// Sets the permission bits of the file at `path` (`fchmodat`, off the
    /// ring's thread), following a symbolic link.
    public nonisolated(nonsending) func setPermissions(_ permissions: FilePermissions, at path: FilePath) async throws {
        if path.isEmpty { throw UringError.invalid(.setPermissions, path: path, "the path is empty") }
        try await offRingThread { () throws in
            let status = path.withPlatformString { fchmodat(AT_FDCWD, $0, mode_t(permissions.rawValue), 0) }
            if status != 0 { throw UringError.system(.setPermissions, Glibc.errno, path: path) }
        }
    }

    /// Sets the access and modification times of the file at `path`
    /// (`utimensat`, off the ring's thread); `nil` leaves a time as it is.
    ///
    /// - Parameters:
    ///   - accessed: The new access time, or `nil` to keep it.
    ///   - modified: The new modification time, or `nil` to keep it.
    ///   - path: The file.
    ///   - followingSymlinks: When false, sets the times of a symbolic link
    ///     itself.
    public nonisolated(nonsending) func setTimes(
        accessed: FileTimestamp? = nil, modified: FileTimestamp?, at path: FilePath, followingSymlinks: Bool = true
    ) async throws {
        if path.isEmpty { throw UringError.invalid(.setTimes, path: path, "the path is empty") }
        let times = [timespec(accessed), timespec(modified)]
        let flags = followingSymlinks ? 0 : AT_SYMLINK_NOFOLLOW
        try await offRingThread { () throws in
            let status = path.withPlatformString { utimensat(AT_FDCWD, $0, times, flags) }
            if status != 0 { throw UringError.system(.setTimes, Glibc.errno, path: path) }
        }
    }
}

/// A time for `utimensat`: the timestamp, or "leave it" (`UTIME_OMIT`).
private func timespec(_ time: FileTimestamp?) -> Glibc.timespec {
    guard let time else { return Glibc.timespec(tv_sec: 0, tv_nsec: 1_073_741_822) }  // UTIME_OMIT
    return Glibc.timespec(tv_sec: Int(time.seconds), tv_nsec: Int(time.nanoseconds))
}
