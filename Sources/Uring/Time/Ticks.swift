import CUring
import Glibc

extension RingActor {
    /// A tick every `interval`, from one repeating kernel timer (a multishot
    /// `IORING_OP_TIMEOUT`, kernel 6.4+): no request per tick.
    ///
    /// Each element is the time the tick was delivered. Ticks that come
    /// while 8 wait unconsumed are skipped, and the timer restarts once the
    /// consumer catches up, so a slow consumer sees fewer ticks, never a
    /// backlog. Stopping the iteration (or cancelling its task) cancels the
    /// timer.
    ///
    /// ```swift
    /// for try await _ in ring.ticks(every: .seconds(1)) {
    ///     report()
    /// }
    /// ```
    ///
    /// Before Linux 6.4, which has no repeating timers, the sequence arms
    /// one timer per tick, at the interval's next multiple after the last,
    /// with the same skipping.
    ///
    /// - Throws: (from iteration) ``UringError`` of kind
    ///   ``UringError/Kind/invalidArgument`` for an interval that is not
    ///   positive.
    public nonisolated func ticks(every interval: Duration) -> Ticks {
        Ticks(core: core, interval: interval)
    }
}

/// The deadlines of ticks re-armed one at a time (before 6.4).
///
/// Why `@unchecked Sendable` is sound: `armNext` runs only when the stream
/// arms its request, and the stream arms one request at a time, each after
/// the previous one completed, under its own lock; the kernel copies the
/// timespec when the request is submitted.
final class TickSchedule: @unchecked Sendable {
    private let interval: Int64
    private var upcoming: Int64
    private let time = KernelTimespec(absolute: .now)

    init(interval: Duration) {
        self.interval = max(1, interval.nanosecondsClamped)
        upcoming = RingClock.Instant.now.nanoseconds
    }

    /// The next tick's deadline, skipping those already past; returns the
    /// timespec to arm with.
    func armNext() -> UnsafeMutablePointer<__kernel_timespec> {
        let now = RingClock.Instant.now.nanoseconds
        var next = upcoming &+ interval
        if next <= now { next &+= ((now - next) / interval + 1) * interval }
        upcoming = next
        time.pointer.pointee = __kernel_timespec(tv_sec: next / 1_000_000_000, tv_nsec: next % 1_000_000_000)
        return time.pointer
    }
}

/// Ticks of a repeating timer; see ``RingActor/ticks(every:)``.
public struct Ticks: AsyncSequence, Sendable {
    /// When a tick was delivered.
    public typealias Element = RingClock.Instant
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    let core: RingCore
    let interval: Duration

    /// Starts the timer (on the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        let core = self.core
        let interval = self.interval
        return AsyncIterator(
            consumer: StreamConsumer { () throws -> MultishotStream<RingClock.Instant> in
                guard interval > .zero else {
                    throw UringError.invalid(.timeout, "the interval must be positive, not \(interval)")
                }
                // Each expiry completes with ETIME.
                let interpret: @Sendable (Int32, UInt32) -> MultishotEvent<RingClock.Instant> = { result, _ in
                    result >= 0 || result == -ETIME ? .element(.now) : .standard
                }
                if core.isSupported(.repeatingTimeout) {
                    let time = KernelTimespec(interval)
                    return core.multishotStream(
                        .timeout, highWater: 8, keepAlive: time,
                        prepare: { cu_prep_repeating_timeout(&$0, time.pointer) }, interpret: interpret)
                }
                // Before 6.4: one timeout per tick, which the stream re-arms
                // as each completes, at the next multiple of the interval.
                let schedule = TickSchedule(interval: interval)
                return core.multishotStream(
                    .timeout, highWater: 8, keepAlive: schedule,
                    prepare: { io_uring_prep_timeout(&$0, schedule.armNext(), 0, CU_IORING_TIMEOUT_ABS) },
                    interpret: interpret)
            })
    }

    /// Produces the ticks.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: StreamConsumer<RingClock.Instant>

        /// The next tick; the sequence never ends on its own.
        public nonisolated(nonsending) mutating func next() async throws -> RingClock.Instant? {
            try await consumer.next()
        }

        /// The next tick, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> RingClock.Instant? {
            try await consumer.next()
        }
    }
}
