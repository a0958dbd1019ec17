import CUring
import Glibc

/// Values on the heap that the kernel reads or writes while a request runs
/// (a timespec, a `siginfo_t`, an iovec array, an option value). A request
/// keeps it alive through its slot until the final completion, so the
/// kernel never touches freed memory whatever happens to the caller.
///
/// Why `@unchecked Sendable` is sound: the values are written before the
/// request is handed to the ring; from then until the completion only the
/// kernel touches them, and the caller reads them only after it has seen
/// that completion through the slot's acquiring hand-off.
final class KernelMemory<Value>: @unchecked Sendable {
    /// The first value.
    let pointer: UnsafeMutablePointer<Value>
    /// How many values the request uses (at least one is allocated).
    let count: Int

    /// One value.
    init(_ value: Value) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: value)
        count = 1
    }

    /// `count` copies of `value`.
    init(repeating value: Value, count: Int) {
        self.count = max(0, count)
        pointer = .allocate(capacity: max(1, count))
        pointer.initialize(repeating: value, count: max(1, count))
    }

    deinit {
        pointer.deinitialize(count: max(1, count))
        pointer.deallocate()
    }
}

/// A `__kernel_timespec` for a timeout request.
typealias KernelTimespec = KernelMemory<__kernel_timespec>

extension KernelMemory where Value == __kernel_timespec {
    /// A relative time.
    convenience init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(__kernel_timespec(tv_sec: max(0, seconds), tv_nsec: seconds < 0 ? 0 : attoseconds / 1_000_000_000))
    }

    /// An absolute time on the monotonic clock (for `IORING_TIMEOUT_ABS`).
    convenience init(absolute instant: RingClock.Instant) {
        let nanoseconds = max(0, instant.nanoseconds)
        self.init(__kernel_timespec(tv_sec: nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000))
    }
}
