import CUring
import Glibc

/// What a caller learns when its request completes.
struct Completion {
    var result: Int32
    var flags: UInt32
    /// The ring shut down before the request reached the kernel.
    var aborted: Bool
}

/// How callers hand requests to the ring and wait for them.
///
/// A request is prepared into the slot's own SQE image on the caller's
/// thread. On the ring thread it goes into the pending queue directly; from
/// any other thread it is posted to the inbox. Either way only the ring thread
/// ever writes the real submission queue, which keeps `SINGLE_ISSUER` sound.
extension RingCore {
    /// Checks that a new request may start.
    func admit(_ operation: UringOperation, about context: some ErrorContext) throws {
        guard acceptsWork.load(ordering: .acquiring) else { throw context.error(.shutDown, operation) }
        guard isSupported(operation) else { throw context.error(.unsupported, operation) }
        try Task.checkCancellation()
    }

    /// Prepares one request and hands it to the ring. The returned slot must
    /// be given to ``completion(of:)`` or ``abandon(_:)``.
    ///
    /// - Parameter onIntermediateCompletion: For multishot requests: runs on
    ///   the ring thread for each completion flagged `IORING_CQE_F_MORE`.
    ///
    /// - Parameter awaitedInFrame: The caller awaits the slot in the same
    ///   function, with no suspension before it does (see
    ///   `OperationSlot.awaitedOnRingThread`).
    func submit(
        keepAlive: AnyObject? = nil,
        onIntermediateCompletion: ((_ result: Int32, _ flags: UInt32) -> Void)? = nil,
        awaitedInFrame: Bool = false,
        _ prepare: (inout io_uring_sqe) -> Void
    ) -> OperationSlot {
        let onRingThread = isRingThread
        let slot = prepared(keepAlive: keepAlive, onRingThread: onRingThread, prepare)
        slot.onIntermediateCompletion = onIntermediateCompletion
        slot.awaitedOnRingThread = awaitedInFrame && onRingThread
        hand(slot, onRingThread: onRingThread)
        return slot
    }

    /// A slot from the pool with the request prepared and `keepAlive` set.
    private func prepared(
        keepAlive: AnyObject?, onRingThread: Bool, _ prepare: (inout io_uring_sqe) -> Void
    ) -> OperationSlot {
        let slot = pool.acquire(onRingThread: onRingThread)
        prepare(&slot.request.pointee)
        slot.keepAlive = keepAlive
        return slot
    }

    /// Prepares a request whose every completion goes to `handler`, on the
    /// ring thread, and which nobody awaits: the pattern of multishot
    /// requests feeding a sequence. The last call is the one without
    /// `IORING_CQE_F_MORE` in its flags; by then the slot is back in the pool
    /// and `keepAlive` released. Returns the request's `user_data`, for
    /// ``requestCancellation(_:)``.
    ///
    /// If the ring has ended, `handler` runs at once, on this thread, with
    /// `-ECANCELED`.
    @discardableResult
    func submitStream(
        keepAlive: AnyObject? = nil,
        handler: @escaping @Sendable (_ result: Int32, _ flags: UInt32) -> Void,
        _ prepare: (inout io_uring_sqe) -> Void
    ) -> UInt64 {
        let onRingThread = isRingThread
        let slot = prepared(keepAlive: keepAlive, onRingThread: onRingThread, prepare)
        slot.onIntermediateCompletion = handler
        slot.onFinalCompletion = handler
        // Read before handing over: the slot may be recycled during `hand`.
        let userData = slot.userData
        hand(slot, onRingThread: onRingThread)
        return userData
    }

    /// Prepares a chain of requests linked with `IOSQE_IO_LINK` (or
    /// `IOSQE_IO_HARDLINK`, which goes on after a failure): each starts only
    /// after the previous one completed, and with soft links a failure
    /// cancels the rest (they complete with `ECANCELED`). `prepare` fills
    /// step `n`'s request and returns what that step keeps alive.
    func submitChain(
        _ count: Int, hard: Bool = false, _ prepare: (Int, inout io_uring_sqe) -> AnyObject?
    ) -> [OperationSlot] {
        precondition(count > 0 && count <= Int(submissionEntries), "a chain must fit in the submission queue")
        var slots: [OperationSlot] = []
        slots.reserveCapacity(count)
        for step in 0..<count {
            let slot = pool.acquire(onRingThread: isRingThread)
            slot.keepAlive = prepare(step, &slot.request.pointee)
            if step < count - 1 { slot.request.pointee.flags |= hard ? CU_IOSQE_IO_HARDLINK : CU_IOSQE_IO_LINK }
            slot.chainLength = 0
            slots.last?.chainNext = slot
            slots.append(slot)
        }
        slots[0].chainLength = count
        hand(slots[0], onRingThread: isRingThread)
        return slots
    }

    /// Prepares `count` independent requests and hands them over together:
    /// on the ring thread they reach the kernel in one system call, from
    /// another thread in one wake-up of the ring. `prepare` fills request
    /// `n`; `keepAlive` is released once every request has completed.
    ///
    /// The caller awaits every returned slot in the frame that called this,
    /// with no suspension before it starts to (see
    /// `OperationSlot.awaitedOnRingThread`).
    ///
    /// The requests share one slot (or one per `OperationSlot.maximumBatch`
    /// and per submission queue's worth), so a batch costs one hand-off and
    /// one wait rather than one of each per request. On the ring thread,
    /// with room in the SQ and nothing queued ahead, they are prepared
    /// straight in the SQ (no image to copy). Give each returned slot to
    /// ``completion(ofBatch:_:)``.
    func submitBatch(
        _ count: Int, keepAlive: AnyObject? = nil, _ prepare: (Int, inout io_uring_sqe) -> Void
    ) -> BatchSlots {
        precondition(count > 0, "a batch holds at least one request")
        let onRingThread = isRingThread
        // Under an in-flight limit, one request per slot: a larger piece
        // would wait for that many free places, which requests that stay
        // in the kernel (a multishot receive, a timer) may never leave.
        let piece = maximumInFlight < Int.max / 2 ? 1 : min(OperationSlot.maximumBatch, Int(submissionEntries))
        if onRingThread && count <= piece,
            let slot = submitBatchInPlace(count, keepAlive: keepAlive, prepare)
        {
            return BatchSlots(first: slot)
        }
        var slots: [OperationSlot] = []
        slots.reserveCapacity((count + piece - 1) / piece)
        var start = 0
        while start < count {
            let length = min(piece, count - start)
            let slot = pool.acquire(onRingThread: onRingThread)
            slot.prepareBatch(length) { member, request in prepare(start + member, &request) }
            slot.keepAlive = keepAlive
            slot.awaitedOnRingThread = onRingThread
            slots.append(slot)
            start += length
        }
        for slot in slots { hand(slot, onRingThread: onRingThread) }
        return BatchSlots(first: slots[0], rest: slots.dropFirst())
    }

    private func hand(_ head: OperationSlot, onRingThread: Bool) {
        var next: OperationSlot? = head
        while let slot = next {
            slot.phase.store(OperationSlot.Phase.posted.rawValue, ordering: .relaxed)
            next = slot.chainNext
        }
        if onRingThread {
            if head.chainLength == 1 && mayEnterDirectly(head.kernelRequests) {
                // Straight into the SQ: nothing is queued ahead of it.
                registerInKernel(head)
                if localJobs.isEmpty && !reaping { enterKernel(wait: false) }
                return
            }
            acceptPosted(head)
            // Nothing else is runnable: submit now and look for the result, so
            // a request that completes during submission needs no suspension.
            // (Not from inside `reap`, which must not be re-entered.)
            if localJobs.isEmpty && ringOpen && !shuttingDown && !reaping {
                flushPending()
                enterKernel(wait: false)
            }
        } else {
            postSubmission(head)
        }
    }

    /// Waits for the slot's final completion, then returns the slot to the
    /// pool. Task cancellation cancels the request in the kernel, and this
    /// still waits for its completion, so memory the request uses stays valid.
    @inline(__always)
    nonisolated(nonsending) func completion(of slot: OperationSlot) async -> Completion {
        await awaitFinal(slot)
        let completion = Completion(result: slot.result, flags: slot.flags, aborted: slot.abortedByShutdown)
        pool.release(slot, onRingThread: isRingThread)
        return completion
    }

    /// Waits for every request of a batch slot (see
    /// ``submitBatch(_:keepAlive:_:)``), lets `read` look at their results
    /// in order (and whether the ring shut down before they reached the
    /// kernel), then returns the slot to the pool. Cancellation cancels the
    /// requests still in the kernel, and this still waits for them.
    @inline(__always)
    nonisolated(nonsending) func completion<Result>(
        ofBatch slot: OperationSlot, _ read: (_ results: UnsafeBufferPointer<Int32>, _ aborted: Bool) throws -> Result
    ) async rethrows -> Result {
        await awaitFinal(slot)
        defer { pool.release(slot, onRingThread: isRingThread) }
        return try read(UnsafeBufferPointer(start: slot.batchResults, count: slot.kernelRequests), slot.abortedByShutdown)
    }

    // MARK: Requests awaited from inlinable code

    // A call to an async function the compiler cannot see into ends with an
    // executor check in the caller, and for a task that prefers the ring's
    // executor (all of `RingActor.run`) that check takes the task's status
    // lock: about a fifth of an awaited NOP. So the operations a caller
    // awaits most (a NOP, a file read or write, a socket send or receive)
    // are `@inlinable` and made of synchronous steps, `start`, then
    // `awaitStarted` (inlined too), then `finish`: a request that completed
    // during its own submission returns with no async call at all. Only a
    // request that has to wait calls `waitForCompletion`, and pays the
    // check with its suspension.

    /// Starts a request, unless a deadline is in force: then nil, and the
    /// caller takes its path for a deadline (through
    /// ``perform(_:about:keepAlive:honorsDeadline:_:)``, which links the
    /// deadline's timeout, or a send's first try without waiting). Give the slot to
    /// ``awaitStarted(_:)`` and then to ``finish(_:_:about:)``.
    func start(
        _ operation: UringOperation, about context: some ErrorContext, _ prepare: (inout io_uring_sqe) -> Void
    ) throws -> OperationSlot? {
        if TaskDeadline.inForce != nil { return nil }
        return try startIgnoringDeadline(operation, about: context, prepare)
    }

    /// ``start(_:about:_:)`` whatever the task's deadline: for a request
    /// that cannot outlast it (a send that does not wait for room).
    func startIgnoringDeadline(
        _ operation: UringOperation, about context: some ErrorContext, _ prepare: (inout io_uring_sqe) -> Void
    ) throws -> OperationSlot {
        try admit(operation, about: context)
        return submit(awaitedInFrame: true, prepare)
    }

    /// Waits until a slot from ``start(_:about:_:)`` has
    /// completed, with no async call if it already has.
    @inlinable @inline(__always)
    nonisolated(nonsending) func awaitStarted(_ slot: OperationSlot) async {
        let isolation = #isolation
        if !isComplete(slot, callerIsIsolated: isolation != nil) { await waitForCompletion(slot) }
    }

    /// Returns a completed slot to the pool, and gives its request's
    /// non-negative result, or throws what ``check(_:_:about:)`` makes of it.
    func finish(_ slot: OperationSlot, _ operation: UringOperation, about context: some ErrorContext) throws -> Int32 {
        let completion = Completion(result: slot.result, flags: slot.flags, aborted: slot.abortedByShutdown)
        pool.release(slot, onRingThread: isRingThread)
        return try check(completion, operation, about: context)
    }

    /// ``start(_:about:_:)`` for a NOP.
    @usableFromInline
    func startNop() throws -> OperationSlot? {
        try start(.nop, about: .none) { io_uring_prep_nop(&$0) }
    }

    /// A NOP bounded by the task's deadline.
    @usableFromInline
    nonisolated(nonsending) func nopWithDeadline() async throws {
        _ = try await perform(.nop) { io_uring_prep_nop(&$0) }
    }

    /// ``finish(_:_:about:)`` for a NOP.
    @usableFromInline
    func finishNop(_ slot: OperationSlot) throws {
        _ = try finish(slot, .nop, about: .none)
    }

    /// Whether the slot has completed, after polling briefly for it where
    /// ``spinForCompletion(_:callerIsIsolated:)`` allows.
    @usableFromInline
    func isComplete(_ slot: OperationSlot, callerIsIsolated: Bool) -> Bool {
        slot.phase.load(ordering: .acquiring) == OperationSlot.Phase.completed.rawValue
            || spinForCompletion(slot, callerIsIsolated: callerIsIsolated)
    }

    /// Waits until the ring has published the slot's final completion.
    @inline(__always)
    private nonisolated(nonsending) func awaitFinal(_ slot: OperationSlot) async {
        // Fast path: the request completed while it was submitted (a NOP, a
        // read from the page cache): no cancellation handler, no suspension.
        let isolation = #isolation
        if !isComplete(slot, callerIsIsolated: isolation != nil) {
            await waitForCompletion(slot)
        }
    }

    /// Suspends until the slot has completed (it had not when looked at).
    /// Task cancellation cancels the request in the kernel, and this still
    /// waits for its completion. Inlined into this module's callers; code
    /// inlined elsewhere calls it.
    ///
    /// The wait runs in the caller's frames (see `TaskCancellationHook`).
    /// Its continuation does not hop back to the caller's isolation by
    /// itself: the frame does so once when it resumes.
    @usableFromInline @inline(__always)
    nonisolated(nonsending) func waitForCompletion(_ slot: OperationSlot) async {
        await slot.cancelHook.whileWaiting(target: self, value: slot.userData) {
            await _unsafeInheritExecutor_withUnsafeContinuation { slot.install($0) }
        }
        // Acquire the ring's last release on this slot (`.resumed`) before
        // its results are read. The resumption already implies it through
        // the executor's queue, but the slot's protocol should not lean on
        // how executors synchronize (and ThreadSanitizer cannot see inside
        // Dispatch). The fast path's load in `isComplete` acquires too.
        let phase = slot.phase.load(ordering: .acquiring)
        assert(phase == OperationSlot.Phase.completed.rawValue || phase == OperationSlot.Phase.resumed.rawValue)
    }

    /// What a slot's cancellation hook runs: cancels the request with
    /// `user_data` `userData` in `core`.
    static let cancelWaitedRequest: @convention(c) (_ core: UnsafeMutableRawPointer?, _ userData: UInt64) -> Void = {
        core, userData in
        Unmanaged<RingCore>.fromOpaque(core!).takeUnretainedValue().requestCancellation(userData)
    }

    /// Off the ring thread, polls briefly for the completion; returns whether
    /// it arrived. A result that arrives now needs no wake-up of this thread,
    /// which is the dominant cost of a cross-thread round trip. The budget
    /// adapts: it halves after each miss (down to a small floor that keeps
    /// probing) and doubles after each hit (up to `callerSpin`), so slow
    /// operations such as idle socket reads do not burn a core polling.
    ///
    /// Only a nonisolated caller on a thread of the global pool polls. A
    /// caller isolated to an actor would hold the actor's other jobs back
    /// (the main actor's, say), and one on any ring's thread would stop
    /// that ring from reaping while it polls.
    private func spinForCompletion(_ slot: OperationSlot, callerIsIsolated: Bool) -> Bool {
        guard callerSpinNanos > 0 && !callerIsIsolated && cu_is_a_ring_thread() == 0 else { return false }
        let completed = OperationSlot.Phase.completed.rawValue
        let budget = spinBudget.load(ordering: .relaxed)
        let deadline = cu_monotonic_ns() &+ budget
        var round = 0
        var hit = true
        while slot.phase.load(ordering: .acquiring) != completed {
            cu_cpu_relax()
            round &+= 1
            if round & 31 == 0 && cu_monotonic_ns() > deadline {
                hit = false
                break
            }
        }
        let next = hit ? min(callerSpinNanos, budget &* 2) : max(Self.minimumSpin, budget / 2)
        if next != budget { spinBudget.store(next, ordering: .relaxed) }
        return hit
    }

    /// Gives up on a request: cancels it, and the ring recycles the slot (and
    /// drops its `keepAlive`) when the kernel is done with it.
    func abandon(_ slot: OperationSlot) {
        requestCancellation(slot.userData)
        let (detached, _) = slot.phase.compareExchange(
            expected: OperationSlot.Phase.posted.rawValue,
            desired: OperationSlot.Phase.detached.rawValue,
            ordering: .acquiringAndReleasing)
        if !detached { pool.release(slot, onRingThread: isRingThread) }
    }

    /// Performs one request and returns its non-negative result, or throws:
    /// `CancellationError` if the task was cancelled and the request with it,
    /// otherwise the error `context` makes of the failure. A deadline set
    /// with `withDeadline` (see ``TaskDeadline``) bounds the request unless
    /// `honorsDeadline` is false.
    @inline(__always)
    nonisolated(nonsending) func perform(
        _ operation: UringOperation, about context: some ErrorContext, keepAlive: AnyObject? = nil,
        honorsDeadline: Bool = true, _ prepare: (inout io_uring_sqe) -> Void
    ) async throws -> Int32 {
        if honorsDeadline, let deadline = TaskDeadline.inForce {
            return try await perform(operation, about: context, keepAlive: keepAlive, deadline: deadline, prepare)
        }
        try admit(operation, about: context)
        let slot = submit(keepAlive: keepAlive, awaitedInFrame: true, prepare)
        let completion = await completion(of: slot)
        return try check(completion, operation, about: context)
    }

    /// ``perform(_:about:keepAlive:honorsDeadline:_:)`` for a request about
    /// nothing in particular.
    @inline(__always)
    nonisolated(nonsending) func perform(
        _ operation: UringOperation, keepAlive: AnyObject? = nil, honorsDeadline: Bool = true,
        _ prepare: (inout io_uring_sqe) -> Void
    ) async throws -> Int32 {
        try await perform(operation, about: .none, keepAlive: keepAlive, honorsDeadline: honorsDeadline, prepare)
    }

    /// Turns a completion into a result or the right error.
    func check(_ completion: Completion, _ operation: UringOperation, about context: some ErrorContext) throws -> Int32 {
        if completion.aborted { throw context.error(.shutDown, operation) }
        let result = completion.result
        if result >= 0 { return result }
        throw error(for: result, operation, about: context)
    }

    /// The error a negative result stands for.
    func error(for result: Int32, _ operation: UringOperation, about context: some ErrorContext) -> any Error {
        if let failure = failure(for: result, operation) { return context.error(failure, operation) }
        return CancellationError()
    }

    /// The failure a negative result stands for, or nil for the task's own
    /// cancellation.
    func failure(for result: Int32, _ operation: UringOperation) -> RequestFailure? {
        if (result == -ECANCELED || result == -EBADR) && Task.isCancelled { return nil }
        if result == -ECANCELED && !acceptsWork.load(ordering: .acquiring) { return .shutDown }
        if result == -EBADR { return .completionLost }
        if result == -EINVAL && !isSupported(operation) { return .unsupported }
        return .system(-result)
    }
}

/// The slots of one batch, in the order of their requests (see
/// `RingCore.submitBatch`): most batches need one, and then no array is
/// made for it.
struct BatchSlots: Sequence {
    let first: OperationSlot
    var rest: ArraySlice<OperationSlot> = []

    struct Iterator: IteratorProtocol {
        fileprivate var first: OperationSlot?
        fileprivate var rest: ArraySlice<OperationSlot>.Iterator

        mutating func next() -> OperationSlot? {
            if let slot = first {
                first = nil
                return slot
            }
            return rest.next()
        }
    }

    func makeIterator() -> Iterator { Iterator(first: first, rest: rest.makeIterator()) }
}
