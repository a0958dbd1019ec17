import Glibc
import Synchronization
import SystemPackage

/// A descriptor shared by its owner (a connection, say) and the requests
/// and sequences that use it, closed when the last of them lets go.
///
/// Sharing the descriptor instead of duplicating it keeps one descriptor
/// per connection, and it keeps the rule that makes re-arming safe: every
/// request that names the descriptor's number holds this object until its
/// final completion, so the number cannot be closed (and reused by another
/// open) while a request naming it can still reach the kernel.
final class OwnedDescriptor: Sendable {
    private let number: Atomic<Int32>

    init(_ fd: Int32) { number = Atomic(fd) }

    /// The descriptor's number; -1 once detached.
    var fd: Int32 { number.load(ordering: .relaxed) }

    /// Gives the number up without closing it: the caller closes it (or
    /// hands it on). Only for an owner that holds the sole reference.
    func detach() -> Int32 {
        number.exchange(-1, ordering: .acquiringAndReleasing)
    }

    /// A duplicate of the descriptor (`F_DUPFD_CLOEXEC`), for an owner that
    /// gives up its share while others still hold this one.
    func duplicate(path: FilePath?, address: SocketAddress?) throws(UringError) -> FileDescriptor {
        FileDescriptor(rawValue: try Self.duplicate(fd, path: path, address: address))
    }

    /// A close-on-exec duplicate of `fd`; errors name `path` or `address`.
    static func duplicate(_ fd: Int32, path: FilePath?, address: SocketAddress?) throws(UringError) -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else {
            throw UringError.system(.duplicate, Glibc.errno, path: path).about(address)
        }
        return copy
    }

    deinit {
        let fd = number.load(ordering: .acquiring)
        if fd >= 0 { Glibc.close(fd) }
    }
}
