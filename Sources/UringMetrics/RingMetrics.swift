#if Metrics
import CoreMetrics
import Uring

/// A ring's statistics as swift-metrics counters and gauges, sampled.
///
/// Nothing is added to the ring's hot path: the ring keeps its
/// ``Uring/RingStatistics`` as it always does, and ``record(_:)`` (or the
/// ``report(_:every:)`` loops that call it) turns a sample of them into
/// metrics: the increase since the last sample for each counter, and the
/// current value for each gauge.
///
/// | Metric (after the prefix) | Kind | From |
/// |---|---|---|
/// | `submitted`, `completed` | counter | requests handed to the kernel, final completions |
/// | `in_flight` | gauge | requests in the kernel now |
/// | `wake_ups`, `kernel_enters` | counter | cross-thread wake-ups, `io_uring_enter` calls |
/// | `cq_overflows`, `dropped_completions`, `lost_operations` | counter | completion-queue trouble |
/// | `accept_back_offs` | counter | accepts that waited for descriptors or memory |
/// | `receive_copies`, `receive_pool_waits` | counter | receive-pool pressure |
///
/// ```swift
/// let metrics = RingMetrics(prefix: "uring")
/// try await RingGroup.run(rings: 4) { group in
///     try await withThrowingDiscardingTaskGroup { tasks in
///         tasks.addTask { await metrics.report(group, every: .seconds(10)) }
///         try await serve(group)
///         tasks.cancelAll()
///     }
/// }
/// ```
///
/// For a ``Uring/RingGroup``, each ring's metrics carry a `ring` dimension
/// with its index.
public final class RingMetrics: Sendable {
    private struct Instruments: Sendable {
        let submitted, completed, wakeUps, kernelEnters: Counter
        let overflows, dropped, lost, acceptBackOffs, receiveCopies, poolWaits: Counter
        let inFlight: Gauge
    }

    private let prefix: String
    private let dimensions: [(String, String)]
    // `MetricsFactory` is Sendable; the instruments for each ring are made
    // once, and the last sample they were advanced to is kept with them.
    private let factory: any MetricsFactory
    private let state = Locked<[Int: (instruments: Instruments, last: RingStatistics?)]>([:])

    /// Creates a recorder whose metrics are named `prefix.name` (for example
    /// `uring.submitted`), with `dimensions` on each, made by `factory`
    /// (by default the one `MetricsSystem.bootstrap` installed).
    public init(
        prefix: String = "uring", dimensions: [(String, String)] = [],
        factory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.prefix = prefix
        self.dimensions = dimensions
        self.factory = factory
    }

    /// Advances the metrics to `statistics`, a sample of one ring's
    /// statistics (`ring` names the ring within a group; `nil` for a ring on
    /// its own). Counters grow by the increase since the previous sample of
    /// the same ring; a counter that went down (another ring under the same
    /// index) starts again from the new value.
    public func record(_ statistics: RingStatistics, ring: Int? = nil) {
        // The increases are worked out under the lock; the metrics backend
        // is called after it, so a slow backend never holds it.
        let key = ring ?? -1
        let (instruments, previous) = state.withLock { rings in
            let instruments = rings[key]?.instruments ?? makeInstruments(ring: ring)
            let previous = rings[key]?.last
            rings[key] = (instruments, statistics)
            return (instruments, previous)
        }
        func advance(_ counter: Counter, _ value: KeyPath<RingStatistics, UInt64>) {
            let now = statistics[keyPath: value]
            let before = previous?[keyPath: value] ?? 0
            let increase = now >= before ? now - before : now
            if increase > 0 { counter.increment(by: Int64(clamping: increase)) }
        }
        advance(instruments.submitted, \.submitted)
        advance(instruments.completed, \.completed)
        advance(instruments.wakeUps, \.wakeUps)
        advance(instruments.kernelEnters, \.kernelEnters)
        advance(instruments.overflows, \.completionQueueOverflows)
        advance(instruments.dropped, \.droppedCompletions)
        advance(instruments.lost, \.lostOperations)
        advance(instruments.acceptBackOffs, \.acceptBackOffs)
        advance(instruments.receiveCopies, \.receiveCopies)
        advance(instruments.poolWaits, \.receivePoolWaits)
        instruments.inFlight.record(Int64(clamping: statistics.inFlight))
    }

    /// Records `ring`'s statistics now (even in a cancelled task) and then
    /// every `interval`, timed by the ring itself, until the calling task is
    /// cancelled (it then returns) or the ring shuts down.
    public func report(_ ring: RingActor, every interval: Duration = .seconds(10)) async {
        repeat {
            record(ring.statistics)
            do { try await ring.sleep(for: interval) } catch { return }
        } while !Task.isCancelled
    }

    /// Records every ring of `group` now (even in a cancelled task) and then
    /// every `interval`, until the calling task is cancelled or the group's
    /// first ring shuts down.
    public func report(_ group: RingGroup, every interval: Duration = .seconds(10)) async {
        repeat {
            for (index, statistics) in group.statistics.perRing.enumerated() {
                record(statistics, ring: index)
            }
            do { try await group.rings[0].sleep(for: interval) } catch { return }
        } while !Task.isCancelled
    }

    private func makeInstruments(ring: Int?) -> Instruments {
        var dimensions = dimensions
        if let ring { dimensions.append(("ring", "\(ring)")) }
        func counter(_ name: String) -> Counter {
            Counter(label: "\(prefix).\(name)", dimensions: dimensions, factory: factory)
        }
        return Instruments(
            submitted: counter("submitted"), completed: counter("completed"), wakeUps: counter("wake_ups"),
            kernelEnters: counter("kernel_enters"), overflows: counter("cq_overflows"),
            dropped: counter("dropped_completions"), lost: counter("lost_operations"),
            acceptBackOffs: counter("accept_back_offs"), receiveCopies: counter("receive_copies"),
            poolWaits: counter("receive_pool_waits"),
            inFlight: Gauge(label: "\(prefix).in_flight", dimensions: dimensions, factory: factory))
    }
}
#endif
