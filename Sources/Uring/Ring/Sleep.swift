import CUring
import Glibc

/// Timeouts driven by the ring (`IORING_OP_TIMEOUT`).
extension RingActor {
    /// Suspends for `duration`, timed by the kernel through the ring.
    /// Cancelling the task ends the sleep at once with `CancellationError`.
    public nonisolated(nonsending) func sleep(for duration: Duration) async throws {
        let time = KernelTimespec(duration)
        do {
            _ = try await core.perform(.timeout, keepAlive: time) {
                io_uring_prep_timeout(&$0, time.pointer, 0, 0)
            }
        } catch let error as UringError where error.kind == .system && error.errno.rawValue == ETIME {
            return  // The timeout expired, which is success here.
        }
    }
}

/// A `__kernel_timespec` that lives until the request is done with it.
final class KernelTimespec: Sendable {
    // `Sendable`: written once in init; afterwards only the kernel reads it.
    nonisolated(unsafe) let pointer: UnsafeMutablePointer<__kernel_timespec>

    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        pointer = .allocate(capacity: 1)
        pointer.initialize(
            to: __kernel_timespec(
                tv_sec: max(0, seconds), tv_nsec: seconds < 0 ? 0 : attoseconds / 1_000_000_000))
    }

    deinit { pointer.deallocate() }
}
