import CUring
import Glibc
import SystemPackage

/// An open directory, for opening files relative to it (`openat`) without
/// re-resolving its path each time.
///
/// Like ``File`` it is noncopyable and closes itself when dropped.
public struct Directory: ~Copyable, Sendable {
    /// The ring that performs operations relative to this directory.
    public let ring: RingActor
    /// The path the directory was opened with.
    public let path: FilePath?
    private var fd: Int32

    /// The underlying descriptor, still owned by this directory (for the
    /// library's own use; callers go through ``withUnsafeDescriptor(_:)``).
    var descriptor: FileDescriptor { FileDescriptor(rawValue: fd) }

    /// Runs `body` with the underlying descriptor, for a system call this
    /// library does not make (`setsockopt`, `ioctl`, `flock`).
    ///
    /// The descriptor is still owned by this directory: `body` must not close
    /// it, and must not keep it past its return, when the directory may close
    /// it and the number may be reused.
    public func withUnsafeDescriptor<Result, Failure: Error>(
        _ body: (FileDescriptor) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(descriptor)
    }

    init(fd: Int32, path: FilePath?, ring: RingActor) {
        self.fd = fd
        self.path = path
        self.ring = ring
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Opens the directory at `path` through the ring.
    public static func open(_ path: FilePath, on ring: RingActor? = nil) async throws -> Directory {
        let ring = try ring ?? RingActor.shared
        let fd = try await File.openAt(
            AT_FDCWD, path, .readOnly, OpenOptions(rawValue: O_DIRECTORY), nil, ring)
        return Directory(fd: fd, path: path, ring: ring)
    }

    /// Metadata of `name` inside this directory.
    public func metadata(of name: FilePath, followingSymlinks: Bool = true) async throws -> FileMetadata {
        try await DescriptorIO.statx(
            core: ring.core, directory: fd, path: name, reportedPath: path.map { $0.appending(name.components) } ?? name,
            flags: followingSymlinks ? 0 : AT_SYMLINK_NOFOLLOW)
    }

    /// Closes the directory through the ring and reports any error.
    public consuming func close() async throws {
        let io = DescriptorIO(core: ring.core, fd: fd, path: path)
        fd = -1
        try await io.close()
    }
}
