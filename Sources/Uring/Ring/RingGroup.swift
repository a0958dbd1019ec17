import CUring
import Synchronization

/// Several rings, each on a thread of its own, so that one program uses
/// every core: the thread-per-core model.
///
/// Each ring is a ``RingActor`` with its own submission and completion
/// queues, so rings never contend with one another; work is spread by
/// placing tasks on rings (``run(on:_:)``, ``forEachRing(_:)``) and, for
/// servers, by spreading connections over the rings
/// (``listen(at:spreading:backlog:)``).
///
/// ```swift
/// try await RingGroup.run { group in
///     try await group.serve(at: .loopback(port: 8080)) { connection in
///         for try await chunk in connection.received(idleTimeout: .seconds(30)) {
///             try await connection.sendAll(chunk)
///         }
///     }
/// }
/// ```
///
/// A group lives for the duration of ``run(rings:options:_:)``: when the body
/// returns or throws, every ring shuts down, and no ring thread outlives the
/// call.
public final class RingGroup: Sendable {
    /// The rings, in the order they were created. A ring's position here is
    /// its index in ``RingPlacement/ring(_:)`` and ``statistics``.
    public let rings: [RingActor]

    /// The options the group was created with.
    public let options: RingGroupOptions

    private let turn = Atomic<Int>(0)

    private init(rings: [RingActor], options: RingGroupOptions) {
        self.rings = rings
        self.options = options
    }

    /// Creates `count` rings, runs `body` with the group, then shuts every
    /// ring down, whether `body` returned or threw.
    ///
    /// The calling task is not moved onto any ring: place work with
    /// ``run(on:_:)``, ``forEachRing(_:)`` or the server calls.
    ///
    /// - Parameters:
    ///   - count: How many rings; `nil` (the default) means one per CPU the
    ///     process may run on (its affinity mask, as `taskset` sets it).
    ///   - options: How each ring is set up and whether its thread is pinned.
    ///   - body: The program, given the group.
    /// - Throws: ``UringError`` if a ring cannot be created (the rings made
    ///   so far are shut down first), or what `body` throws.
    public nonisolated(nonsending) static func run<Result>(
        rings count: Int? = nil,
        options: RingGroupOptions = RingGroupOptions(),
        _ body: (RingGroup) async throws -> sending Result
    ) async throws -> Result {
        let group = try create(count: count, options: options)
        let outcome: Swift.Result<Result, any Error>
        do {
            outcome = .success(try await body(group))
        } catch {
            outcome = .failure(error)
        }
        await group.shutdown()
        return try outcome.get()
    }

    private static func create(count: Int?, options: RingGroupOptions) throws(UringError) -> RingGroup {
        let cpus = usableCPUs()
        let count = count ?? cpus.count
        guard count > 0 else {
            throw .invalid(.createRing, "a ring group needs at least one ring, not \(count)")
        }
        var rings: [RingActor] = []
        rings.reserveCapacity(count)
        do throws(UringError) {
            for index in 0..<count {
                var ringOptions = options.ring
                // One kernel worker pool (and SQPOLL thread, if any) for all.
                if ringOptions.sharesWorkersWith == nil, let first = rings.first {
                    ringOptions.sharesWorkersWith = first
                }
                if options.pinsThreads, ringOptions.processor == nil {
                    // More rings than CPUs wrap around (oversubscription).
                    ringOptions.processor = cpus[index % cpus.count]
                }
                if ringOptions.threadName == RingOptions().threadName {
                    ringOptions.threadName = "uring-ring-\(index)"
                }
                rings.append(try RingActor(options: ringOptions))
            }
        } catch {
            // The rings made so far shut down and end their threads as
            // `rings` lets go of them.
            throw error
        }
        return RingGroup(rings: rings, options: options)
    }

    /// The CPUs the process may run on, in order.
    static func usableCPUs() -> [Int] {
        let capacity = Int(cu_usable_cpu_count()) + 64
        let cpus = [Int32](unsafeUninitializedCapacity: capacity) { buffer, count in
            count = Int(cu_usable_cpus(buffer.baseAddress!, Int32(capacity)))
        }
        return cpus.isEmpty ? [0] : cpus.map(Int.init)
    }

    /// Shuts every ring down (concurrently) and waits for all of them.
    /// ``run(rings:options:_:)`` calls it when its body ends.
    public func shutdown() async {
        await withDiscardingTaskGroup { group in
            for ring in rings {
                group.addTask { await ring.shutdown() }
            }
        }
    }

    // MARK: Placement

    /// The ring `placement` picks.
    ///
    /// ``RingPlacement/next`` takes the rings in turn;
    /// ``RingPlacement/leastBusy`` the one with the fewest operations in the
    /// kernel plus jobs waiting to run (ties go in turn).
    public func ring(_ placement: RingPlacement) -> RingActor {
        switch placement {
        case .ring(let index):
            precondition(rings.indices.contains(index), "ring \(index) is not in a group of \(rings.count)")
            return rings[index]
        case .next:
            return rings[nextIndex()]
        case .leastBusy:
            let start = nextIndex()
            var best = start
            var bestLoad = load(of: start)
            for step in 1..<rings.count {
                let index = (start + step) % rings.count
                let load = load(of: index)
                if load < bestLoad {
                    best = index
                    bestLoad = load
                }
            }
            return rings[best]
        }
    }

    private func nextIndex() -> Int {
        let value = turn.wrappingAdd(1, ordering: .relaxed).oldValue
        return Int(UInt(bitPattern: value) % UInt(rings.count))
    }

    /// Operations in the kernel plus jobs queued on the ring's thread.
    func load(of index: Int) -> UInt64 {
        let core = rings[index].core
        let submitted = core.submittedCount.load(ordering: .relaxed)
        let completed = core.completedCount.load(ordering: .relaxed)
        return (submitted &- completed) &+ UInt64(max(0, core.runnableJobs.load(ordering: .relaxed)))
    }

    /// The index in ``rings`` of the ring whose thread is running the
    /// caller, or `nil` when the caller is on no ring of this group.
    public var currentRingIndex: Int? {
        rings.firstIndex { $0.executor.isCurrentThread }
    }

    /// Runs `body` isolated to the ring `placement` picks, in a task that
    /// prefers that ring's executor (as ``RingActor/run(options:_:)`` does),
    /// so the body and the child tasks it starts reach that ring's kernel
    /// queues with no thread hop.
    ///
    /// ```swift
    /// let size = try await group.run(on: .leastBusy) { ring in
    ///     try await File.open(path, on: ring).metadata().size
    /// }
    /// ```
    public nonisolated(nonsending) func run<Value>(
        on placement: RingPlacement = .next,
        _ body: (isolated RingActor) async throws -> sending Value
    ) async throws -> Value {
        let ring = ring(placement)
        return try await withTaskExecutorPreference(ring.executor) {
            try await body(ring)
        }
    }

    /// Runs `body` once on every ring at the same time, each in a child task
    /// isolated to its ring: the shared-nothing shape, where each ring owns
    /// its own work and state. Returns when every call has returned; if one
    /// throws, the others are cancelled and the first error is rethrown.
    ///
    /// - Parameter body: Given the ring and its index in ``rings``.
    public func forEachRing(
        _ body: @escaping @Sendable (_ ring: isolated RingActor, _ index: Int) async throws -> Void
    ) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for (index, ring) in rings.enumerated() {
                group.addTask(executorPreference: ring.executor) {
                    try await body(ring, index)
                }
            }
        }
    }

    // MARK: Statistics

    /// Each ring's counters, in the order of ``rings``, and their sum.
    public var statistics: RingGroupStatistics {
        RingGroupStatistics(perRing: rings.map(\.statistics))
    }
}

/// Which ring of a ``RingGroup`` gets a piece of work.
public enum RingPlacement: Sendable, Hashable {
    /// The ring at this index of ``RingGroup/rings``.
    case ring(Int)
    /// The rings in turn.
    case next
    /// The ring with the fewest operations in the kernel and jobs waiting
    /// to run, when asked.
    case leastBusy
}

/// How a ``RingGroup`` sets up its rings.
public struct RingGroupOptions: Sendable {
    /// The options of every ring. Unless set here, each ring after the first
    /// shares the first's kernel worker pool
    /// (``RingOptions/sharesWorkersWith``), and each ring's thread is named
    /// `uring-ring-N`.
    public var ring = RingOptions()
    /// Pins ring N's thread to the Nth CPU the process may run on (wrapping
    /// around when there are more rings than CPUs), so a ring keeps its
    /// caches and never competes with another ring for a core. On by
    /// default; turn it off when other busy threads share the machine and
    /// the scheduler should be free to move the rings.
    public var pinsThreads = true

    /// The defaults.
    public init() {}
}

/// The counters of a ``RingGroup``: each ring's, and their sum.
public struct RingGroupStatistics: Sendable, Hashable, CustomStringConvertible {
    /// Each ring's counters, in the order of ``RingGroup/rings``.
    public var perRing: [RingStatistics]

    /// The rings' counters added together.
    public var total: RingStatistics {
        var sum = RingStatistics(
            submitted: 0, completed: 0, wakeUps: 0, completionQueueOverflows: 0,
            droppedCompletions: 0, kernelEnters: 0, slotsCreated: 0, slotsInUse: 0)
        for ring in perRing {
            sum.submitted &+= ring.submitted
            sum.completed &+= ring.completed
            sum.wakeUps &+= ring.wakeUps
            sum.completionQueueOverflows &+= ring.completionQueueOverflows
            sum.droppedCompletions &+= ring.droppedCompletions
            sum.lostOperations &+= ring.lostOperations
            sum.kernelEnters &+= ring.kernelEnters
            sum.slotsCreated &+= ring.slotsCreated
            sum.slotsInUse &+= ring.slotsInUse
            sum.acceptBackOffs &+= ring.acceptBackOffs
            sum.receiveCopies &+= ring.receiveCopies
        }
        return sum
    }

    public var description: String {
        var text = "total: \(total)"
        for (index, ring) in perRing.enumerated() { text += "\nring \(index): \(ring)" }
        return text
    }
}
