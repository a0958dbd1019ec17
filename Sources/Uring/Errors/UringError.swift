import SystemPackage

/// An operation that went through the ring, named for error messages and for
/// asking whether the running kernel supports it.
public enum UringOperation: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case nop
    case open
    case openResolving = "openat2"
    case close
    case read
    case write
    case readVectored = "readv"
    case writeVectored = "writev"
    case sync = "fsync"
    case syncData = "fdatasync"
    case preallocate = "fallocate"
    case metadata = "statx"
    case removeFile = "unlink"
    case removeDirectory = "rmdir"
    case rename
    case createDirectory = "mkdir"
    case cancel
    case timeout
    case repeatingTimeout = "timeout_multishot"
    case createRing = "io_uring_setup"
    case duplicate = "dup"
    case socket
    case bind
    case listen
    case accept
    case connect
    case send
    case receive = "recv"
    case sendMessage = "sendmsg"
    case receiveMessage = "recvmsg"
    case sendZeroCopy = "send_zc"
    case sendMessageZeroCopy = "sendmsg_zc"
    case shutdown
    case socketOption = "sockopt"
    case registerBuffers = "register_buffers"
    case registerFiles = "register_files"
    case linkTimeout = "link_timeout"
    case readFixed = "read_fixed"
    case writeFixed = "write_fixed"
    case poll
    case splice
    case tee
    case copy
    case readMultishot = "read_multishot"
    case waitForExit = "waitid"
    case futexWait = "futex_wait"
    case futexWake = "futex_wake"
    case installDescriptor = "fixed_fd_install"
    case message = "msg_ring"
    case watchSignals = "sigaction"
    case linked
    case listDirectory = "getdents64"
    case createSymbolicLink = "symlink"
    case createLink = "link"
    case readLink = "readlink"
    case truncate = "ftruncate"
    case advise = "fadvise"
    case adviseMemory = "madvise"
    case getAttribute = "fgetxattr"
    case getAttributeAtPath = "getxattr"
    case setAttribute = "fsetxattr"
    case setAttributeAtPath = "setxattr"
    case listAttributes = "flistxattr"
    case listAttributesAtPath = "listxattr"
    case removeAttribute = "fremovexattr"
    case removeAttributeAtPath = "removexattr"
    case setPermissions = "chmod"
    case setTimes = "utimensat"
    /// Starting a child process (`posix_spawn`).
    case spawn = "posix_spawn"
    /// Sending a signal to a child process (`pidfd_send_signal`).
    case signalProcess = "pidfd_send_signal"
    /// Watching a file or directory for changes (`inotify_add_watch`).
    case watch = "inotify_add_watch"

    /// The short name used in error messages, such as `open` or `fsync`.
    public var description: String { rawValue }

    /// The io_uring opcode behind the operation, or nil when it needs none.
    var opcode: UInt8? {
        switch self {
        case .nop: 0
        case .readVectored: 1
        case .writeVectored: 2
        case .sync, .syncData: 3
        case .timeout, .repeatingTimeout: 11
        case .cancel: 14
        case .preallocate: 17
        case .open: 18
        case .openResolving: 28
        case .close: 19
        case .metadata: 21
        case .read: 22
        case .write: 23
        case .rename: 35
        case .removeFile, .removeDirectory: 36
        case .createDirectory: 37
        case .createSymbolicLink: 38
        case .createLink: 39
        case .truncate: 55
        case .advise: 24
        case .adviseMemory: 25
        case .setAttribute: 41
        case .setAttributeAtPath: 42
        case .getAttribute: 43
        case .getAttributeAtPath: 44
        case .sendMessage: 9
        case .receiveMessage: 10
        case .accept: 13
        case .connect: 16
        case .send: 26
        case .receive: 27
        case .shutdown: 34
        case .socket: 45
        case .socketOption: 46
        case .sendZeroCopy: 47
        case .sendMessageZeroCopy: 48
        case .bind: 56
        case .listen: 57
        case .readFixed: 4
        case .writeFixed: 5
        case .poll: 6
        case .linkTimeout: 15
        case .splice, .copy: 30
        case .tee: 33
        case .message: 40
        case .readMultishot: 49
        case .waitForExit: 50
        case .futexWait: 51
        case .futexWake: 52
        case .installDescriptor: 54
        case .createRing, .duplicate, .registerBuffers, .registerFiles, .watchSignals, .linked, .listDirectory, .readLink, .listAttributes, .listAttributesAtPath, .removeAttribute, .removeAttributeAtPath, .setPermissions, .setTimes, .spawn, .signalProcess, .watch: nil
        }
    }
}

/// The error thrown by ring operations: what failed, on what, and why.
///
/// Cancellation is not reported with this type: a cancelled operation throws
/// `CancellationError`.
public struct UringError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The broad reason for the failure.
    public enum Kind: Sendable, Hashable {
        /// The kernel (or C library) reported `errno`.
        case system
        /// The running kernel's io_uring lacks this operation.
        case unsupported
        /// io_uring cannot be used in this process at all.
        case ringUnavailable
        /// The ring was shut down before the operation could run.
        case ringShutDown
        /// An argument was rejected before anything was submitted.
        case invalidArgument
        /// The deadline set by ``withDeadline(_:_:)`` passed first; the
        /// operation was cancelled in the kernel.
        case timedOut
        /// The kernel dropped completions (its completion queue was full and
        /// it could not allocate room for more), so the ring cancelled its
        /// requests in the kernel to learn whose were lost. This operation's
        /// was lost, or it was cancelled in that search; its effect, if it
        /// ran, is unknown. The error number is `EBADR`.
        case completionLost
    }

    /// The broad reason for the failure.
    public var kind: Kind
    /// The operation that failed.
    public var operation: UringOperation
    /// The error number; for ``Kind/invalidArgument`` it is `EINVAL`, for
    /// ``Kind/unsupported`` `EOPNOTSUPP`, for ``Kind/ringShutDown`` `ESHUTDOWN`,
    /// for ``Kind/timedOut`` `ETIMEDOUT`.
    public var errno: Errno
    /// The path the operation was about, when there is one.
    public var path: FilePath?
    /// The socket address the operation was about, when there is one.
    public var address: SocketAddress?
    /// More detail for the reader, when the error number alone is not enough.
    public var detail: String?

    /// Creates an error.
    public init(
        _ kind: Kind, operation: UringOperation, errno: Errno, path: FilePath? = nil,
        address: SocketAddress? = nil, detail: String? = nil
    ) {
        self.kind = kind
        self.operation = operation
        self.errno = errno
        self.path = path
        self.address = address
        self.detail = detail
    }

    /// The same error, about `address`.
    func about(_ address: SocketAddress?) -> UringError {
        var copy = self
        if copy.address == nil { copy.address = address }
        return copy
    }

    static func system(_ operation: UringOperation, _ code: Int32, path: FilePath? = nil) -> UringError {
        UringError(.system, operation: operation, errno: Errno(rawValue: code), path: path)
    }

    static func invalid(_ operation: UringOperation, path: FilePath? = nil, _ detail: String) -> UringError {
        UringError(.invalidArgument, operation: operation, errno: .invalidArgument, path: path, detail: detail)
    }

    static func unsupported(_ operation: UringOperation, path: FilePath? = nil) -> UringError {
        UringError(
            .unsupported, operation: operation, errno: .notSupported, path: path,
            detail: "the running kernel's io_uring does not support \(operation)")
    }

    static func shutDown(_ operation: UringOperation, path: FilePath? = nil) -> UringError {
        UringError(
            .ringShutDown, operation: operation, errno: Errno(rawValue: 108 /* ESHUTDOWN */), path: path,
            detail: "the ring was shut down")
    }

    static func timedOut(_ operation: UringOperation, path: FilePath? = nil) -> UringError {
        UringError(
            .timedOut, operation: operation, errno: .timedOut, path: path,
            detail: "the deadline passed before it completed")
    }

    static func completionLost(_ operation: UringOperation, path: FilePath? = nil) -> UringError {
        UringError(
            .completionLost, operation: operation, errno: Errno(rawValue: 53 /* EBADR */), path: path,
            detail: "the kernel dropped completions while the completion queue was full, and this operation's outcome is unknown")
    }

    /// A one-line message: operation, path, reason and error name,
    /// e.g. `open '/tmp/x': No such file or directory (ENOENT)`.
    public var description: String {
        var text = operation.description
        if let path { text += " '\(path)'" }
        if let address { text += " \(address)" }
        text += ": "
        switch kind {
        case .system:
            text += "\(errno) (\(errnoName))"
            if let detail { text += "; \(detail)" }
        case .unsupported, .ringShutDown, .invalidArgument, .ringUnavailable, .timedOut, .completionLost:
            text += detail ?? "\(errno)"
            text += " (\(errnoName))"
        }
        return text
    }

    /// Whether the error only says that the peer went away: it reset the
    /// connection (`ECONNRESET`), or it was no longer there to send to or
    /// receive from (`ENOTCONN`, `EPIPE`). A server sees these all the time
    /// under load, from clients that close with data unread or give up, and
    /// usually ends the connection without logging them.
    public var isPeerGone: Bool {
        kind == .system && [.connectionReset, .socketNotConnected, .brokenPipe].contains(errno)
    }

    /// The symbolic name of `errno`, such as `ENOENT`.
    public var errnoName: String { Self.names[errno.rawValue] ?? "errno \(errno.rawValue)" }

    private static let names: [Int32: String] = [
        1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 9: "EBADF",
        11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 18: "EXDEV",
        19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE", 25: "ENOTTY",
        26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS", 31: "EMLINK", 32: "EPIPE",
        36: "ENAMETOOLONG", 38: "ENOSYS", 39: "ENOTEMPTY", 40: "ELOOP", 75: "EOVERFLOW", 95: "EOPNOTSUPP",
        104: "ECONNRESET", 10: "ECHILD", 62: "ETIME", 77: "EBADFD", 108: "ESHUTDOWN", 53: "EBADR", 110: "ETIMEDOUT", 111: "ECONNREFUSED", 122: "EDQUOT",
        125: "ECANCELED", 88: "ENOTSOCK", 89: "EDESTADDRREQ", 90: "EMSGSIZE", 92: "ENOPROTOOPT",
        93: "EPROTONOSUPPORT", 94: "ESOCKTNOSUPPORT", 97: "EAFNOSUPPORT", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL",
        100: "ENETDOWN", 101: "ENETUNREACH", 103: "ECONNABORTED", 105: "ENOBUFS", 106: "EISCONN",
        107: "ENOTCONN", 113: "EHOSTUNREACH",
    ]
}
