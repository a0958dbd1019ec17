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
    /// - Throws: (from iteration) ``UringError`` of kind
    ///   ``UringError/Kind/invalidArgument`` for an interval that is not
    ///   positive. Before kernel 6.4 the kernel refuses repeating timeouts
    ///   with `EINVAL` (the probe lists opcodes, not this flag).
    public nonisolated func ticks(every interval: Duration) -> Ticks {
        Ticks(core: core, interval: interval)
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
                // Repeating timeouts are new in 6.4, after the opcode itself,
                // so the kernel's EINVAL is what tells.
                let time = KernelTimespec(interval)
                return core.multishotStream(
                    .timeout, highWater: 8, keepAlive: time,
                    prepare: { cu_prep_repeating_timeout(&$0, time.pointer) },
                    // Each expiry completes with ETIME.
                    interpret: { result, _ in result >= 0 || result == -ETIME ? .element(.now) : .standard })
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
        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> RingClock.Instant? {
            try await consumer.next()
        }
    }
}
