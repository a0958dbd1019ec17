import CUring
import Glibc

/// How a child process ended.
public enum ExitStatus: Sendable, Hashable, CustomStringConvertible {
    /// It called `exit` (or returned from `main`) with this code.
    case exited(code: Int32)
    /// A signal ended it.
    case signaled(Signal, coreDumped: Bool)

    /// Whether it exited with code 0.
    public var isSuccess: Bool { self == .exited(code: 0) }

    /// `exited with code 3` or `killed by SIGTERM`.
    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal, let core): "killed by \(signal)\(core ? " (core dumped)" : "")"
        }
    }
}

extension RingActor {
    /// Waits, without holding a thread, until the child process `pid` ends,
    /// reaps it, and returns how it ended.
    ///
    /// From Linux 6.7 this is one request (`IORING_OP_WAITID`). Before, the
    /// ring polls a descriptor of the process (`pidfd_open`, 5.3), which
    /// becomes readable when it exits, then reaps it with
    /// `waitid(P_PIDFD, WNOHANG)`: still no thread waits.
    ///
    /// ```swift
    /// var pid: pid_t = 0
    /// posix_spawnp(&pid, "sleep", nil, nil, argv, environ)
    /// let status = try await ring.waitForExit(pid)
    /// ```
    ///
    /// - Throws: ``UringError`` naming `waitid` with `ECHILD` when `pid` is
    ///   not a child of this process (or was already reaped), or
    ///   `CancellationError` (the child is then left unreaped).
    public nonisolated(nonsending) func waitForExit(_ pid: pid_t) async throws -> ExitStatus {
        guard pid > 0 else { throw UringError.invalid(.waitForExit, "process id \(pid) is not a single process") }
        let info = KernelMemory(siginfo_t())
        if core.isSupported(.waitForExit) {
            _ = try await core.perform(.waitForExit, keepAlive: info) {
                cu_prep_waitid(&$0, Int32(P_PID.rawValue), pid, info.pointer, WEXITED)
            }
        } else {
            try await waitThroughDescriptor(of: pid, into: info)
        }
        let status = cu_siginfo_status(info.pointer)
        switch cu_siginfo_code(info.pointer) {
        case Int32(CLD_EXITED): return .exited(code: status)
        case Int32(CLD_DUMPED): return .signaled(Signal(rawValue: status), coreDumped: true)
        default: return .signaled(Signal(rawValue: status), coreDumped: false)
        }
    }

    /// The fallback before `IORING_OP_WAITID`: poll a pidfd through the ring,
    /// then reap without blocking.
    private nonisolated(nonsending) func waitThroughDescriptor(
        of pid: pid_t, into info: KernelMemory<siginfo_t>
    ) async throws {
        let opened = cu_pidfd_open(pid)
        guard opened >= 0 else { throw UringError.system(.waitForExit, -opened) }
        let pidfd = OwnedDescriptor(opened)
        // Not a child (or already reaped): fail now, as the native request
        // does, instead of after that process ends.
        let checked = cu_waitid_pidfd(pidfd.fd, info.pointer, WEXITED | WNOHANG | WNOWAIT)
        guard checked == 0 else { throw UringError.system(.waitForExit, -checked) }
        // The request keeps the descriptor open until its completion.
        _ = try await core.perform(.poll, keepAlive: pidfd) {
            io_uring_prep_poll_add(&$0, pidfd.fd, UInt32(POLLIN))
        }
        let reaped = cu_waitid_pidfd(pidfd.fd, info.pointer, WEXITED | WNOHANG)
        guard reaped == 0 else { throw UringError.system(.waitForExit, -reaped) }
    }
}
