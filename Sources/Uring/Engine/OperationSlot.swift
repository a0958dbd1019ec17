import CUring
import Synchronization

/// The shared record of one operation, from the moment a caller prepares its
/// request until the caller has read the result.
///
/// A slot's `user_data` is its index in the pool (high 32 bits) plus a
/// generation (low 20 bits), so a late cancellation for an earlier use of the
/// same slot is recognised and ignored. A slot may stand for a batch of
/// requests (see `RingCore.submitBatch`): then each request's `user_data`
/// also carries its place in the batch (bits 20 to 31), and the batch has one
/// hand-off, one wait and one result array however many requests it holds.
///
/// Why `@unchecked Sendable` is sound: every field has exactly one owner at a
/// time, and ownership moves only through synchronising steps.
/// - From `SlotPool.acquire` until the slot is posted (through the ring's
///   locked inbox, or directly when the caller is the ring thread), only the
///   caller touches it.
/// - Once posted, the ring thread alone reads `request` and the `ring*`
///   fields, and writes `result` and `flags`. It hands them back with a
///   releasing exchange on `state`.
/// - The caller reads `result` only after an acquiring load or exchange that
///   saw `.completed`, then gives the slot back to the pool (a lock).
/// - `continuation` is written by the caller before its releasing
///   compare-exchange to `.waiting`, and read by the ring thread only after
///   its acquiring exchange saw `.waiting`. The ring then stores `.resumed`
///   (releasing) before resuming, and the resumed caller loads the phase
///   (acquiring) before it touches the slot again, so even the ring's last
///   read is ordered before the slot's reuse without relying on how the
///   executor synchronizes a resumption.
@usableFromInline
final class OperationSlot: @unchecked Sendable {
    /// Where the slot is in its hand-off between the caller and the ring.
    enum Phase: UInt8 {
        /// In the pool.
        case idle
        /// Handed to the ring; the caller has not suspended yet.
        case posted
        /// Handed to the ring; the caller is suspended on `continuation`.
        case waiting
        /// The final completion arrived; `result` and `flags` are valid.
        case completed
        /// The caller walked away: the ring recycles the slot on completion.
        case detached
        /// After `.waiting`: the ring has read the continuation and is about
        /// to resume it; it touches the slot no more.
        case resumed
    }

    /// What the ring thread knows about the slot (ring thread only).
    enum RingSide {
        case none
        case pending
        case inKernel
    }

    /// Where a batch member's place goes in its `user_data`.
    static let memberShift: UInt64 = 20
    static let memberMask: UInt64 = 0xFFF << memberShift
    static let generationMask: UInt64 = (1 << memberShift) - 1
    /// The most requests one batch slot stands for.
    static let maximumBatch = 4096
    /// A batch member's result before its completion arrived (no kernel
    /// result is this low).
    static let resultPending = Int32.min

    let index: UInt32
    private(set) var generation: UInt32 = 1
    let phase = Atomic<UInt8>(Phase.idle.rawValue)

    /// The request, filled by the caller, copied into the SQ by the ring.
    /// Behind a pointer: an `inout` access to a class's stored property is
    /// checked for exclusivity at run time, a runtime call per request,
    /// while the hand-off protocol above already gives the slot one user
    /// at a time.
    let request: UnsafeMutablePointer<io_uring_sqe>
    /// Cancels the request when its waiting task is cancelled (see
    /// `RingCore.waitForCompletion`).
    let cancelHook = TaskCancellationHook(fire: RingCore.cancelWaitedRequest)
    /// How many slots, this one first, form one linked chain.
    var chainLength = 1
    /// The following slot of a linked chain (set on all but the last).
    var chainNext: OperationSlot?

    var result: Int32 = 0
    var flags: UInt32 = 0

    /// For a batch: how many requests the slot stands for (0 for a slot that
    /// is one request). Their images are `batchRequests`, and their results
    /// go to `batchResults` (both are kept across uses and grow as needed).
    private(set) var batchCount = 0
    private(set) var batchRequests: UnsafeMutablePointer<io_uring_sqe>?
    private(set) var batchResults: UnsafeMutablePointer<Int32>?
    private var batchCapacity = 0
    /// Set when the ring shut down before the request reached the kernel.
    var abortedByShutdown = false
    /// Set when the caller handed the slot over on the ring's own thread
    /// and awaits it there, in the same frame, with no suspension before it
    /// does (a single request's `perform` or `start`, a batch). A task
    /// resumes on the executor it suspended on, which for this thread is
    /// the ring's, so the caller's `install` runs on this thread too. Then
    /// only this one thread moves `phase`, and the ring completes the slot
    /// without an atomic read-modify-write (a locked instruction, about a
    /// tenth of an awaited NOP here). Requests kept across suspensions (a
    /// chunk read-ahead, whose reader may move to another task) leave it
    /// unset.
    var awaitedOnRingThread = false
    var continuation: UnsafeContinuation<Void, Never>?
    /// Memory the kernel may still use: released only after the completion.
    var keepAlive: AnyObject?
    /// For multishot requests: runs on the ring thread for every completion
    /// that carries `IORING_CQE_F_MORE`.
    var onIntermediateCompletion: ((_ result: Int32, _ flags: UInt32) -> Void)?
    /// For requests nobody awaits (see `RingCore.submitStream`): runs once,
    /// for the final completion, after the slot went back to the pool.
    var onFinalCompletion: ((_ result: Int32, _ flags: UInt32) -> Void)?

    // Ring thread only.
    var ringSide: RingSide = .none
    var ringUserData: UInt64 = 0
    var cancelBeforeSubmit = false
    /// Cancelled to find out whether its completion was dropped.
    var probedForLoss = false
    /// Stored in the ring's table of slots by index (once, for good).
    var inKernelTable = false
    /// Batch members still in the kernel.
    var batchOutstanding = 0

    init(index: UInt32) {
        self.index = index
        request = .allocate(capacity: 1)
        request.initialize(to: io_uring_sqe())
    }

    deinit {
        request.deallocate()
        batchRequests?.deallocate()
        batchResults?.deallocate()
    }

    var userData: UInt64 { UInt64(index) << 32 | UInt64(generation) }

    /// How many submission entries the slot itself needs.
    var kernelRequests: Int { max(1, batchCount) }

    /// How many submission entries the slot needs with the rest of its
    /// chain, when it heads one (a batch is never part of a chain).
    var kernelEntries: Int { batchCount > 0 ? batchCount : max(1, chainLength) }

    /// Gives every batch member still without a result `result`.
    func fillPendingResults(with result: Int32) {
        guard batchCount > 0, let results = batchResults else { return }
        for member in 0..<batchCount where results[member] == Self.resultPending {
            results[member] = result
        }
    }

    /// Makes the slot stand for `count` requests (1 to `maximumBatch`), each
    /// zeroed and then filled by `prepare` with its place in the batch; the
    /// results start out pending. Caller side, before the slot is posted.
    func prepareBatch(_ count: Int, _ prepare: (_ member: Int, inout io_uring_sqe) -> Void) {
        reserveBatch(count)
        let requests = batchRequests!
        for member in 0..<count {
            requests[member] = io_uring_sqe()
            prepare(member, &requests[member])
        }
    }

    /// Makes the slot stand for `count` requests (1 to `maximumBatch`) with
    /// pending results, leaving their images unset: for a batch the ring
    /// thread prepares straight in the SQ (see
    /// `RingCore.submitBatchInPlace`).
    func reserveBatch(_ count: Int) {
        precondition(count > 0 && count <= Self.maximumBatch)
        if count > batchCapacity {
            batchRequests?.deallocate()
            batchResults?.deallocate()
            batchRequests = .allocate(capacity: count)
            batchResults = .allocate(capacity: count)
            batchCapacity = count
        }
        batchResults!.update(repeating: Self.resultPending, count: count)
        batchCount = count
    }

    /// Called by the suspending caller: stores its continuation and moves
    /// `.posted` to `.waiting`; if the ring completed the request meanwhile,
    /// resumes at once instead.
    func install(_ continuation: UnsafeContinuation<Void, Never>) {
        assert(!awaitedOnRingThread || cu_is_a_ring_thread() != 0, "handed over on the ring's thread, awaited elsewhere")
        self.continuation = continuation
        let (installed, _) = phase.compareExchange(
            expected: Phase.posted.rawValue, desired: Phase.waiting.rawValue, ordering: .acquiringAndReleasing)
        if !installed { continuation.resume() }
    }

    /// Called by the pool when the slot comes back: forgets the last use.
    func recycle() {
        generation &+= 1
        if UInt64(generation) > Self.generationMask { generation = 1 }
        request.pointee = io_uring_sqe()
        chainLength = 1
        chainNext = nil
        batchCount = 0
        result = 0
        flags = 0
        abortedByShutdown = false
        awaitedOnRingThread = false
        continuation = nil
        keepAlive = nil
        onIntermediateCompletion = nil
        onFinalCompletion = nil
        phase.store(Phase.idle.rawValue, ordering: .relaxed)
    }
}

/// A growable pool of slots. Slots are allocated once and reused, so steady
/// state makes no allocation per operation.
///
/// The ring thread keeps a private free list, so the common case on that
/// thread takes no lock; other threads share a locked list.
final class SlotPool: @unchecked Sendable {
    // `@unchecked Sendable`: `local` is touched only on the ring thread (the
    // caller passes `onRingThread`, computed from the thread identity);
    // `shared` is a mutex.
    private struct Shared {
        var free: [OperationSlot] = []
        var created: UInt32 = 0
    }
    private let shared = Locked(Shared())
    /// The ring thread's free list, behind a pointer for the same reason as
    /// `RingCore.local`: no dynamic exclusivity checks on the hot path (it
    /// took `uring-bench nop` mode (a) from about 0.63 to 0.68 of C here).
    private let local: UnsafeMutablePointer<[OperationSlot]>
    private let localCount = Atomic<Int>(0)

    init() {
        local = .allocate(capacity: 1)
        local.initialize(to: [])
    }

    deinit {
        local.deinitialize(count: 1)
        local.deallocate()
    }

    func acquire(onRingThread: Bool) -> OperationSlot {
        if onRingThread, let slot = local.pointee.popLast() {
            localCount.store(local.pointee.count, ordering: .relaxed)
            return slot
        }
        return shared.withLock { state in
            if let slot = state.free.popLast() { return slot }
            let slot = OperationSlot(index: state.created)
            state.created += 1
            return slot
        }
    }

    func release(_ slot: OperationSlot, onRingThread: Bool) {
        slot.recycle()
        if onRingThread && local.pointee.count < 4096 {
            local.pointee.append(slot)
            localCount.store(local.pointee.count, ordering: .relaxed)
        } else {
            shared.withLock { $0.free.append(slot) }
        }
    }

    /// Slots created so far (in use or free).
    var createdCount: Int { shared.withLock { Int($0.created) } }
    /// Slots currently handed out.
    var inUseCount: Int {
        shared.withLock { Int($0.created) - $0.free.count } - localCount.load(ordering: .relaxed)
    }
}
