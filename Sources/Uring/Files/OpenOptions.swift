import CUring
import Glibc
import SystemPackage

/// How ``File/open(_:_:options:permissions:on:)`` opens a file, beyond its
/// access mode.
///
/// Every descriptor the library opens is close-on-exec unless the options
/// include ``inheritedByChildProcesses``.
public struct OpenOptions: OptionSet, Sendable, Hashable {
    /// The `O_*` flags, plus the library's own `inheritedByChildProcesses` bit.
    public let rawValue: Int32

    /// Creates options from raw `O_*` flags.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Create the file if it does not exist (`O_CREAT`).
    public static let create = OpenOptions(rawValue: O_CREAT)
    /// Truncate an existing file to zero length (`O_TRUNC`).
    public static let truncate = OpenOptions(rawValue: O_TRUNC)
    /// Every write goes to the end of the file (`O_APPEND`).
    public static let append = OpenOptions(rawValue: O_APPEND)
    /// With ``create``: fail with `EEXIST` if the file exists (`O_EXCL`).
    public static let exclusive = OpenOptions(rawValue: O_EXCL)
    /// Bypass the page cache (`O_DIRECT`); buffers, offsets and lengths must
    /// then be aligned, for example with ``AlignedBuffer``.
    public static let direct = OpenOptions(rawValue: CU_O_DIRECT)
    /// Fail if the last path component is a symbolic link (`O_NOFOLLOW`).
    public static let noFollow = OpenOptions(rawValue: O_NOFOLLOW)
    /// Writes return only once the data and metadata are durable (`O_SYNC`).
    public static let synchronous = OpenOptions(rawValue: CU_O_SYNC)
    /// Open without waiting (`O_NONBLOCK`): a FIFO opens at once even with no
    /// writer. Reads and writes of the file then fail with `EAGAIN` instead
    /// of waiting, on regular files too when their data is not cached.
    public static let nonBlocking = OpenOptions(rawValue: O_NONBLOCK)
    /// Keep the descriptor open across `exec` (omits `O_CLOEXEC`).
    public static let inheritedByChildProcesses = OpenOptions(rawValue: 1 << 30)

    /// The flags for `openat`, access mode included.
    func flags(_ access: FileDescriptor.AccessMode) -> Int32 {
        var flags = rawValue & ~OpenOptions.inheritedByChildProcesses.rawValue
        flags |= access.rawValue
        if !contains(.inheritedByChildProcesses) { flags |= O_CLOEXEC }
        return flags
    }
}

/// A NUL-terminated copy of a path that outlives the request using it.
final class PathStorage: Sendable {
    // `Sendable`: immutable after init; the kernel only reads it.
    nonisolated(unsafe) let pointer: UnsafeMutablePointer<CChar>

    init(_ path: FilePath) {
        pointer = path.withPlatformString { source in
            let length = strlen(source) + 1
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: length)
            copy.initialize(from: source, count: length)
            return copy
        }
    }

    deinit { pointer.deallocate() }
}
