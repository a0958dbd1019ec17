import CUring
import Glibc

/// Limits on how the kernel resolves a path when opening a file relative to
/// a ``Directory`` (`openat2`'s `RESOLVE_*` flags, through
/// `IORING_OP_OPENAT2`).
///
/// ``beneath`` is what a server needs to serve files under a root: no
/// component of the path, symbolic links included, may lead outside the
/// directory.
///
/// ```swift
/// let root = try await Directory.open("/srv/www", on: ring)
/// let file = try await File.open("docs/../index.html", relativeTo: root, resolving: .beneath)
/// ```
public struct PathResolution: OptionSet, Sendable, Hashable {
    /// The `RESOLVE_*` bits.
    public let rawValue: UInt64

    /// Creates a resolution from raw `RESOLVE_*` bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Every step must stay beneath the directory: absolute paths, `..`
    /// above it and symbolic links that point out of it fail with `EXDEV`
    /// (`RESOLVE_BENEATH`).
    public static let beneath = PathResolution(rawValue: UInt64(RESOLVE_BENEATH))
    /// No symbolic link may be followed anywhere in the path; one fails
    /// with `ELOOP` (`RESOLVE_NO_SYMLINKS`).
    public static let noSymlinks = PathResolution(rawValue: UInt64(RESOLVE_NO_SYMLINKS))
    /// No `/proc`-style magic link (such as `/proc/self/fd/N`) may be
    /// followed (`RESOLVE_NO_MAGICLINKS`).
    public static let noMagicLinks = PathResolution(rawValue: UInt64(RESOLVE_NO_MAGICLINKS))
    /// The path may not cross into another mount (`RESOLVE_NO_XDEV`).
    public static let sameMount = PathResolution(rawValue: UInt64(RESOLVE_NO_XDEV))
}

/// The `open_how` an `openat2` request reads, kept alive with the path
/// until the request completes.
final class OpenHow: Sendable {
    // `Sendable`: written once in init; afterwards only the kernel reads it.
    nonisolated(unsafe) let pointer: UnsafeMutablePointer<open_how>
    let path: PathStorage

    init(flags: Int32, mode: UInt32, resolve: PathResolution, path: PathStorage) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(
            to: open_how(flags: UInt64(UInt32(bitPattern: flags)), mode: UInt64(mode), resolve: resolve.rawValue))
        self.path = path
    }

    deinit { pointer.deallocate() }
}
