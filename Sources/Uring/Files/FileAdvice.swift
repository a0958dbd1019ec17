import Glibc

/// How a range of a file will be used, for ``File/advise(_:offset:length:)``
/// (`posix_fadvise`'s advice).
public enum FileAdvice: Sendable, Hashable {
    /// No particular pattern (the default read-ahead).
    case normal
    /// Read from start to end: read ahead more.
    case sequential
    /// Read in no order: read ahead less.
    case random
    /// Needed soon: start reading it into the page cache now.
    case willNeed
    /// Not needed again soon: the kernel may drop its cached pages.
    case dontNeed
    /// Read once.
    case noReuse

    var rawValue: Int32 {
        switch self {
        case .normal: POSIX_FADV_NORMAL
        case .sequential: POSIX_FADV_SEQUENTIAL
        case .random: POSIX_FADV_RANDOM
        case .willNeed: POSIX_FADV_WILLNEED
        case .dontNeed: POSIX_FADV_DONTNEED
        case .noReuse: POSIX_FADV_NOREUSE
        }
    }
}
