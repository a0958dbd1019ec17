import CUring
import Glibc

/// A clock whose sleeps are timed by the kernel through a ring
/// (`IORING_OP_TIMEOUT`), on `CLOCK_MONOTONIC`.
///
/// A sleep costs one request and no thread: the task suspends until the
/// ring reaps the timeout's completion. Cancelling the task cancels the
/// timeout in the kernel and ends the sleep at once with `CancellationError`.
///
/// ```swift
/// try await Task.sleep(for: .milliseconds(5), clock: ring.clock)
/// let start = ring.clock.now
/// …
/// print(start.duration(to: ring.clock.now))
/// ```
public struct RingClock: Clock, Sendable {
    /// A point on `CLOCK_MONOTONIC`, to the nanosecond. Instants from any
    /// ring's clock compare with each other.
    public struct Instant: InstantProtocol, Sendable, Hashable, Comparable, CustomStringConvertible {
        /// Nanoseconds since the monotonic clock's (unspecified) origin.
        public let nanoseconds: Int64

        /// Creates the instant `nanoseconds` after the monotonic origin.
        public init(nanoseconds: Int64) {
            self.nanoseconds = nanoseconds
        }

        /// The current time.
        public static var now: Instant { Instant(nanoseconds: Int64(bitPattern: cu_monotonic_ns())) }

        /// The instant `duration` later (earlier, if negative).
        public func advanced(by duration: Duration) -> Instant {
            let (sum, overflow) = nanoseconds.addingReportingOverflow(duration.nanosecondsClamped)
            return Instant(nanoseconds: overflow ? (duration > .zero ? .max : .min) : sum)
        }

        /// The time from this instant to `other`.
        public func duration(to other: Instant) -> Duration {
            .nanoseconds(other.nanoseconds &- nanoseconds)
        }

        /// The instant `rhs` after `lhs`.
        public static func + (lhs: Instant, rhs: Duration) -> Instant { lhs.advanced(by: rhs) }

        /// The instant `rhs` before `lhs`.
        public static func - (lhs: Instant, rhs: Duration) -> Instant { lhs.advanced(by: .zero - rhs) }

        /// The time from `rhs` to `lhs`.
        public static func - (lhs: Instant, rhs: Instant) -> Duration { rhs.duration(to: lhs) }

        /// Whether `lhs` comes before `rhs`.
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

        /// The instant as seconds on the monotonic clock, such as `1234.000567891s`.
        public var description: String {
            let seconds = nanoseconds / 1_000_000_000
            let fraction = String(nanoseconds % 1_000_000_000)
            return "\(seconds).\(String(repeating: "0", count: 9 - fraction.count))\(fraction)s"
        }
    }

    /// The ring whose requests time the sleeps.
    public let ring: RingActor

    /// A clock driven by `ring`.
    public init(ring: RingActor) {
        self.ring = ring
    }

    /// The current time.
    public var now: Instant { .now }

    /// The kernel's timers are precise to the nanosecond.
    public var minimumResolution: Duration { .nanoseconds(1) }

    /// Suspends until `deadline`. Returns at once if it has passed.
    ///
    /// - Parameter deadline: When to wake.
    /// - Parameter tolerance: Ignored: the kernel's timer fires on time.
    /// - Throws: `CancellationError` when the task is cancelled (at once);
    ///   ``UringError`` when the ring is shut down.
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try await ring.sleep(until: deadline)
    }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `Int64`.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow2 ? (seconds < 0 ? .min : .max) : sum
    }
}

extension RingActor {
    /// A clock whose sleeps this ring times; see ``RingClock``.
    public nonisolated var clock: RingClock { RingClock(ring: self) }

    /// Suspends for `duration`, timed by the kernel through the ring.
    /// Cancelling the task ends the sleep at once with `CancellationError`.
    public nonisolated(nonsending) func sleep(for duration: Duration) async throws {
        try await sleep(until: .now + duration)
    }

    /// Suspends until `deadline` on the monotonic clock, timed by the kernel.
    /// A deadline set by ``withDeadline(_:_:)`` that comes first ends the
    /// sleep early with ``UringError/Kind/timedOut``.
    public nonisolated(nonsending) func sleep(until deadline: RingClock.Instant) async throws {
        try Task.checkCancellation()
        var target = deadline
        let limit = TaskDeadline.inForce
        if let limit, limit < target { target = limit }
        guard target > .now else {
            if target != deadline { throw UringError.timedOut(.timeout) }
            return
        }
        let time = KernelTimespec(absolute: target)
        do {
            _ = try await core.perform(.timeout, keepAlive: time, honorsDeadline: false) {
                io_uring_prep_timeout(&$0, time.pointer, 0, CU_IORING_TIMEOUT_ABS)
            }
        } catch let error as UringError where error.kind == .system && error.errno.rawValue == ETIME {
            // The timeout expired: success, unless it was the scope's deadline.
            if target != deadline { throw UringError.timedOut(.timeout) }
        }
    }
}
