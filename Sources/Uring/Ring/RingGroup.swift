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
/// returns or throws, every ring shuts down (its operations cancelled and
/// awaited, its descriptors closed). Each ring's thread then ends as soon
/// as nothing refers to the ring any more; a ring kept past the call keeps
/// a thread that serves only its actor's jobs.
public final class RingGroup: Sendable {
    /// The rings, in the order they were created. A ring's position here is
    /// its index in ``RingPlacement/ring(_:)`` and ``statistics``.
    public let rings: [RingActor]

    /// The options the group was created with.
    public let options: RingGroupOptions

    private let turn = Atomic<Int>(0)
    /// Connections each ring serves (or was just handed), for ``RingPlacement/leastBusy``.
    let connectionCounts: [ConnectionCount]

    private init(rings: [RingActor], options: RingGroupOptions) {
        self.rings = rings
        self.options = options
        self.connectionCounts = rings.map { _ in ConnectionCount() }
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
        let count = count ?? max(1, cpus.count)
        guard count > 0 else {
            throw .invalid(.createRing, "a ring group needs at least one ring, not \(count)")
        }
        // Pinned when asked, or by default when there is one ring per CPU
        // (a group that takes the whole machine). Without the CPU list,
        // nothing is pinned.
        let pins = !cpus.isEmpty && (options.pinsThreads ?? (count == cpus.count))
        var rings: [RingActor] = []
        rings.reserveCapacity(count)
        // A failure below drops the rings made so far, which shuts them down
        // and ends their threads.
        for index in 0..<count {
            var ringOptions = options.ring
            // One kernel worker pool (and SQPOLL thread, if any) for all.
            if ringOptions.sharesWorkersWith == nil, let first = rings.first {
                ringOptions.sharesWorkersWith = first
            }
            if pins, ringOptions.processor == nil {
                // More rings than CPUs wrap around (oversubscription).
                ringOptions.processor = cpus[index % cpus.count]
            }
            ringOptions.threadName += "-\(index)"
            rings.append(try RingActor(options: ringOptions))
        }
        return RingGroup(rings: rings, options: options)
    }

    /// The CPUs the calling thread may run on, in order (empty if the
    /// affinity mask cannot be read).
    static func usableCPUs() -> [Int] {
        let capacity = Int(cu_usable_cpu_count()) + 64
        let cpus = [Int32](unsafeUninitializedCapacity: capacity) { buffer, count in
            count = Int(cu_usable_cpus(buffer.baseAddress!, Int32(capacity)))
        }
        return cpus.map(Int.init)
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
    /// ``RingPlacement/leastBusy`` the one with the fewest connections being
    /// served, operations in the kernel and jobs waiting (ties go in turn).
    ///
    /// - Precondition: a ``RingPlacement/ring(_:)`` index is in ``rings``.
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

    /// Connections served, operations in the kernel and jobs queued on the
    /// ring's thread: a rough figure, read without any lock.
    func load(of index: Int) -> Int {
        let core = rings[index].core
        // Completed first: read the other way round, a completion landing
        // between the loads could make the difference negative.
        let completed = core.completedCount.load(ordering: .relaxed)
        let submitted = core.submittedCount.load(ordering: .relaxed)
        let inKernel = submitted >= completed ? Int(clamping: submitted - completed) : 0
        return inKernel &+ max(0, core.runnableJobs.load(ordering: .relaxed))
            &+ max(0, connectionCounts[index].value)
    }

    /// The index in ``rings`` of `ring`, if it belongs to this group.
    func index(of ring: RingActor) -> Int? {
        rings.firstIndex { $0 === ring }
    }

    /// Checks that `placement` names a ring of this group.
    func validate(_ placement: RingPlacement, for operation: UringOperation) throws(UringError) {
        if case .ring(let index) = placement, !rings.indices.contains(index) {
            throw .invalid(operation, "ring \(index) is not in a group of \(rings.count)")
        }
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

/// Connections a ring serves; see ``RingGroup/load(of:)``.
final class ConnectionCount: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ n: Int) { count.wrappingAdd(n, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// How a ``RingGroup`` sets up its rings.
public struct RingGroupOptions: Sendable {
    /// The options of every ring. Unless set here, each ring after the first
    /// shares the first's kernel worker pool
    /// (``RingOptions/sharesWorkersWith``). Ring N's thread is named with
    /// `-N` after ``RingOptions/threadName`` (`uring-ring-0`, …). A
    /// ``RingOptions/processor`` set here pins every ring to that one CPU.
    public var ring = RingOptions()
    /// Whether ring N's thread is pinned to the Nth CPU the process may run
    /// on (wrapping around when there are more rings than CPUs), so a ring
    /// keeps its caches and never competes with another ring for a core.
    ///
    /// `nil` (the default) pins only a group with one ring per CPU, one that
    /// takes the whole machine; a smaller group is left to the scheduler, so
    /// two such programs on one machine do not both crowd onto the first
    /// CPUs. `true` pins any group, `false` none.
    public var pinsThreads: Bool? = nil

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
            sum.receivePoolWaits &+= ring.receivePoolWaits
        }
        return sum
    }

    /// The total, then each ring's counters, a line each.
    public var description: String {
        var text = "total: \(total)"
        for (index, ring) in perRing.enumerated() { text += "\nring \(index): \(ring)" }
        return text
    }
}
