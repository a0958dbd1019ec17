import CUring
import Glibc

/// The ring thread's loop: run jobs, submit what they prepared in one system
/// call, reap completions (which queues more jobs), and sleep in the kernel
/// when nothing is runnable.
extension RingCore {
    func runLoop() {
        threadID.store(UInt(pthread_self()), ordering: .releasing)
        _ = cu_thread_set_name(threadName)
        cu_mark_ring_thread()
        let enabled = cu_enable_ring(ring)
        if enabled < 0 {
            // Without an enabled ring nothing can be submitted: fail new work
            // and everything already posted, and keep serving jobs.
            acceptsWork.store(false, ordering: .releasing)
            io_uring_queue_exit(ring)
            ringOpen = false
        } else {
            // One registered ring descriptor saves a file lookup per enter.
            _ = io_uring_register_ring_fd(ring)
        }
        announceStarted(failure: enabled < 0 ? -enabled : 0)

        while true {
            drainInbox()
            runJobs()
            if ringOpen {
                flushPending()
                if unsubmitted > 0 || kernelInFlight > 0 {
                    enterKernel(wait: false)
                }
                if shuttingDown {
                    // Never sleep while shutting down: this either closes the
                    // ring or waits in the kernel for the stragglers.
                    finishShutdownIfDrained()
                    continue
                }
            }
            if !localJobs.isEmpty || hasRemoteWork.load(ordering: .acquiring) { continue }
            // Completions reaped above may have made room for queued requests.
            if ringOpen && canFlush { continue }
            if !ringOpen && exitRequestedAndIdle() { break }
            if ringOpen && !shuttingDown && spinForWork() { continue }
            sleep()
        }
        threadID.store(0, ordering: .releasing)
    }

    /// Ends the loop if asked to and nothing is left; from then on, posted
    /// submissions fail at once (see `postSubmission`).
    private func exitRequestedAndIdle() -> Bool {
        guard localJobs.isEmpty else { return false }
        return inbox.withLock { inbox in
            guard inbox.exitRequested && inbox.jobs.isEmpty && inbox.submissions.isEmpty && inbox.actions.isEmpty else { return false }
            inbox.exited = true
            return true
        }
    }

    /// Whether the request (or chain) at the head of the queue could go to
    /// the kernel now.
    var canFlush: Bool {
        guard let head = pending.first else { return false }
        // A stale head (cancelled while queued) is skipped by the flush.
        let entries = head.slot.ringUserData == head.userData ? head.slot.kernelEntries : 1
        return kernelInFlight == 0 || kernelInFlight + entries <= maximumInFlight
    }

    // MARK: Jobs

    func runJobs() {
        guard let serial = serialExecutor, let task = taskExecutor else { return }
        // Only the jobs queued now: those they queue wait for the next round,
        // so their requests go to the kernel together.
        var budget = localJobs.count
        while budget > 0, let queued = localJobs.popFirst() {
            if queued.onActor {
                queued.job.runSynchronously(isolatedTo: serial, taskExecutor: task)
            } else {
                queued.job.runSynchronously(on: task)
            }
            budget -= 1
        }
        // What is left for the next round (jobs these queued), for placing work.
        runnableJobs.store(localJobs.count, ordering: .relaxed)
    }

    // MARK: Inbox

    func drainInbox() {
        guard hasRemoteWork.load(ordering: .acquiring) else { return }
        var beginShutdown = false
        inbox.withLock { inbox in
            hasRemoteWork.store(false, ordering: .relaxed)
            swap(&inbox.jobs, &scratchJobs)
            swap(&inbox.submissions, &scratchSubmissions)
            swap(&inbox.cancellations, &scratchCancellations)
            swap(&inbox.actions, &scratchActions)
            if inbox.shutdownRequested || inbox.exitRequested {
                pendingShutdownWaiters.append(contentsOf: inbox.shutdownWaiters)
                inbox.shutdownWaiters.removeAll()
                beginShutdown = true
            }
        }
        for job in scratchJobs { localJobs.append(job) }
        scratchJobs.removeAll(keepingCapacity: true)
        for slot in scratchSubmissions where slot.chainLength > 0 {
            acceptPosted(slot)
        }
        scratchSubmissions.removeAll(keepingCapacity: true)
        for userData in scratchCancellations { cancel(userData) }
        scratchCancellations.removeAll(keepingCapacity: true)
        for action in scratchActions { action(ringOpen) }
        scratchActions.removeAll(keepingCapacity: true)
        if beginShutdown { startShutdown() }
    }

    /// Records a slot the ring now owns, so completions and cancellations can
    /// find it by `user_data`; returns that `user_data`.
    private func track(_ slot: OperationSlot, as side: OperationSlot.RingSide) -> UInt64 {
        // A slot keeps its index for life and the table never lets go of
        // it, so it is stored once: storing it again on every use cost a
        // retain and a release per request.
        if !slot.inKernelTable {
            let index = Int(slot.index)
            if index >= kernelTable.count {
                kernelTable.append(contentsOf: repeatElement(nil, count: index + 1 - kernelTable.count))
            }
            kernelTable[index] = Unmanaged.passUnretained(slot)
            local.pointee.trackedSlots.append(slot)
            slot.inKernelTable = true
        }
        let userData = slot.userData
        slot.ringUserData = userData
        slot.ringSide = side
        slot.cancelBeforeSubmit = false
        return userData
    }

    /// Takes a posted slot (and the rest of its chain) into the pending queue.
    func acceptPosted(_ head: OperationSlot) {
        var next: OperationSlot? = head
        while let slot = next {
            let userData = track(slot, as: .pending)
            pending.append(PendingEntry(slot: slot, userData: userData))
            next = slot.chainNext
        }
        if !ringOpen || shuttingDown { flushPending() }
    }

    // MARK: Submission

    /// Moves pending requests into the SQ while the in-flight limit allows.
    func flushPending() {
        while let head = pending.first {
            if head.slot.ringUserData != head.userData || head.slot.ringSide != .pending {
                _ = pending.popFirst()  // finished while queued (cancelled)
                continue
            }
            // Slots in the queue, and the submission entries they need (a
            // chain's slots are one request each; a batch is one slot).
            let length = head.slot.chainLength
            let entries = head.slot.kernelEntries
            if ringOpen && !shuttingDown {
                if kernelInFlight + entries > maximumInFlight && kernelInFlight > 0 { return }
                if Int(cu_sq_space(ring)) < entries {
                    enterKernel(wait: false)
                    if Int(cu_sq_space(ring)) < entries { return }
                }
            }
            // The chain's slots are linked, and queued back to back.
            var cancelled = false
            var member: OperationSlot? = head.slot
            while let slot = member {
                cancelled = cancelled || slot.cancelBeforeSubmit
                member = slot.chainNext
            }
            for _ in 0..<length { _ = pending.popFirst() }
            let open = ringOpen && !shuttingDown
            member = head.slot
            while let slot = member {
                member = slot.chainNext  // read first: a finished slot goes back to its caller
                if !open {
                    slot.abortedByShutdown = true
                    finish(slot, result: -ECANCELED, flags: 0)
                } else if cancelled {
                    finish(slot, result: -ECANCELED, flags: 0)
                } else {
                    push(slot, userData: slot.ringUserData)
                    slot.ringSide = .inKernel
                }
            }
            if !open || cancelled { continue }
            countSubmitted(entries)
        }
    }

    /// Whether requests needing `entries` SQ entries may go straight into
    /// the SQ: nothing is queued ahead of them, the ring is open, and the
    /// in-flight limit and the SQ have room.
    func mayEnterDirectly(_ entries: Int) -> Bool {
        pending.isEmpty && ringOpen && !shuttingDown
            && (kernelInFlight + entries <= maximumInFlight || kernelInFlight == 0)
            && Int(cu_sq_space(ring)) >= entries
    }

    /// Accounts for `entries` requests just put into the SQ.
    private func countSubmitted(_ entries: Int) {
        kernelInFlight += entries
        unsubmitted += entries
        submittedCount.addOnRingThread(UInt64(entries))
    }

    /// Puts one slot straight into the SQ (the caller checked for room).
    func registerInKernel(_ slot: OperationSlot) {
        let userData = track(slot, as: .inKernel)
        push(slot, userData: userData)
        countSubmitted(slot.kernelRequests)
    }

    /// On the ring thread, when nothing is queued ahead and the SQ and the
    /// in-flight limit have room for all `count` requests: takes a slot for
    /// them and has `prepare` fill each request straight in the SQ, so no
    /// image is made and copied. Returns nil, preparing nothing, otherwise.
    func submitBatchInPlace(
        _ count: Int, keepAlive: AnyObject?, _ prepare: (Int, inout io_uring_sqe) -> Void
    ) -> OperationSlot? {
        guard mayEnterDirectly(count) else { return nil }
        let slot = pool.acquire(onRingThread: true)
        slot.reserveBatch(count)
        slot.keepAlive = keepAlive
        slot.phase.store(OperationSlot.Phase.posted.rawValue, ordering: .relaxed)
        slot.awaitedOnRingThread = true
        let userData = track(slot, as: .inKernel)
        // The space was checked above, and only this thread fills the SQ.
        let first = cu_sq_reserve(ring, UInt32(count))
        for member in 0..<count {
            let request = cu_sq_entry(ring, first &+ UInt32(member))!
            prepare(member, &request.pointee)
            request.pointee.user_data = userData | UInt64(member) << OperationSlot.memberShift
        }
        slot.batchOutstanding = count
        countSubmitted(count)
        if localJobs.isEmpty && !reaping { enterKernel(wait: false) }
        return slot
    }

    /// Copies the slot's request, or each request of its batch, into the SQ
    /// (the caller checked for room).
    private func push(_ slot: OperationSlot, userData: UInt64) {
        let count = slot.batchCount
        if count == 0 {
            let pushed = cu_sq_push(ring, slot.request, userData)
            precondition(pushed == 1, "SQ space was checked")
        } else {
            let pushed = cu_sq_push_batch(
                ring, slot.batchRequests, UInt32(count), userData, UInt32(OperationSlot.memberShift))
            precondition(pushed == count, "SQ space was checked")
            slot.batchOutstanding = count
        }
    }

    /// Submits the SQ and reaps completions; with `wait`, first blocks until
    /// at least one completion arrives.
    func enterKernel(wait: Bool) {
        var result: Int32
        enterCount.addOnRingThread(1)
        repeat {
            result = wait ? io_uring_submit_and_wait(ring, 1) : io_uring_submit_and_get_events(ring)
        } while result == -EINTR
        if result >= 0 {
            unsubmitted = max(0, unsubmitted - Int(result))
        } else if result == -EBUSY || result == -EAGAIN {
            // The kernel holds completions we have not read, or is short of
            // memory: reap, and the SQ goes in on the next round.
        }
        reap()
    }

    /// Submits, then waits for one completion or until the time is up; then
    /// reaps.
    private func waitInKernel(atMostNanoseconds nanoseconds: Int) {
        var timeout = __kernel_timespec(
            tv_sec: Int64(nanoseconds / 1_000_000_000), tv_nsec: Int64(nanoseconds % 1_000_000_000))
        var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
        enterCount.addOnRingThread(1)
        let result = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &timeout, nil)
        if result >= 0 { unsubmitted = max(0, unsubmitted - Int(result)) }
        reap()
    }

    /// Reads every available completion; if the kernel dropped some, starts
    /// finding whose they were (see `probeForLostCompletions`).
    @discardableResult
    func reap() -> Int {
        // A multishot handler that submits on the ring thread must not walk
        // the CQ again while this walk has not advanced its head.
        if reaping { return 0 }
        let total = reapAvailable()
        let dropped = UInt64(cu_cq_dropped(ring)) &+ local.pointee.simulatedDrops
        if dropped != droppedCount.load(ordering: .relaxed) {
            droppedCount.store(dropped, ordering: .relaxed)
            report(.completionsDropped(total: dropped))
            probeForLostCompletions()
        }
        return total
    }

    private func reapAvailable() -> Int {
        reaping = true
        defer { reaping = false }
        var total = 0
        while true {
            let ready = cu_cq_ready(ring)
            if ready == 0 { break }
            var i: UInt32 = 0
            while i < ready {
                let cqe = cu_cq_at(ring, i)!
                i += 1
                if local.pointee.dropsToSimulate > 0 && isDroppableForTesting(cqe.pointee) {
                    local.pointee.dropsToSimulate -= 1
                    local.pointee.simulatedDrops += 1
                    continue
                }
                if let batch = dispatch(userData: cqe.pointee.user_data, result: cqe.pointee.res, flags: cqe.pointee.flags),
                    local.pointee.dropsToSimulate == 0
                {
                    // A batch's members usually complete together: the
                    // ones that follow need no lookup each.
                    i = batch._withUnsafeGuaranteedRef { completeMembers(of: $0, from: i, to: ready) }
                }
            }
            cu_cq_advance(ring, ready)
            total += Int(ready)
        }
        if cu_cq_has_overflow(ring) != 0 {
            // Completions the CQ could not hold wait in the kernel; entering
            // with GETEVENTS moves them into the CQ.
            overflowCount.addOnRingThread(1)
            _ = io_uring_get_events(ring)
            reaping = false
            total += reapAvailable()
        }
        return total
    }

    /// Hands a completion to whoever waits for it; returns the slot when it
    /// is a batch's still waiting for other members.
    @inline(__always)
    private func dispatch(userData: UInt64, result: Int32, flags: UInt32) -> Unmanaged<OperationSlot>? {
        // The ring's own requests and probes all have the top bit set; a
        // caller's request (slot indexes stay below 2³¹) never has.
        if userData & Self.probeBit != 0 {
            dispatchInternal(userData: userData, result: result)
            return nil
        }
        guard let found = slotInKernel(userData) else {
            return nil  // Not ours any more; cannot happen unless the kernel misbehaves.
        }
        // Without a retain and a release per completion: `trackedSlots`
        // keeps every slot in the table alive for the ring's life.
        return found._withUnsafeGuaranteedRef { slot in
            complete(slot, userData: userData, result: result, flags: flags)
            return slot.batchOutstanding > 0 && !slot.probedForLoss ? found : nil
        }
    }

    /// Records the results of the completions from CQ place `start` on
    /// that belong to `slot`, a batch still in the kernel and not probed for
    /// lost completions, up to the first that does not; returns that
    /// place. The same as `completeMember` for each, with one lookup.
    private func completeMembers(of slot: OperationSlot, from start: UInt32, to end: UInt32) -> UInt32 {
        let base = slot.ringUserData
        let count = slot.batchCount
        let results = slot.batchResults!
        var place = start
        while place < end {
            let cqe = cu_cq_at(ring, place)!
            let userData = cqe.pointee.user_data
            let member = Self.member(of: userData)
            guard userData & ~OperationSlot.memberMask == base && member < count
                && results[member] == OperationSlot.resultPending
            else { break }
            results[member] = cqe.pointee.res
            place += 1
        }
        let completed = Int(place - start)
        guard completed > 0 else { return place }
        kernelInFlight -= completed
        completedCount.addOnRingThread(UInt64(completed))
        slot.batchOutstanding -= completed
        if slot.batchOutstanding == 0 { finish(slot, result: 0, flags: 0) }
        return place
    }

    /// A completion of one of the ring's own requests, or of a probe.
    private func dispatchInternal(userData: UInt64, result: Int32) {
        if userData == Self.wakeTag {
            wakeArmed = false
            return
        }
        if userData == Self.cancelTag {
            kernelInFlight -= 1
            return
        }
        if userData == Self.wakeProbeTag {
            kernelInFlight -= 1
            probesInFlight -= 1
            // Not found: the wake-up read's completion was the one dropped.
            if result == -ENOENT { wakeArmed = false }
            return
        }
        if Self.messageTags.contains(userData) {
            messageReceiver?(userData, result)
            return
        }
        probeCompleted(target: userData & ~Self.probeBit, result: result)
    }

    /// Hands a completion to the slot it belongs to.
    @inline(__always)
    private func complete(_ slot: OperationSlot, userData: UInt64, result: Int32, flags: UInt32) {
        if slot.batchCount > 0 {
            completeMember(of: slot, userData: userData, result: result)
            return
        }
        if flags & IORING_CQE_F_MORE != 0 {
            slot.onIntermediateCompletion?(result, flags)
            return
        }
        kernelInFlight -= 1
        completedCount.addOnRingThread(1)
        // A request cancelled to look for lost completions fails as such,
        // not as if someone had cancelled it.
        let reported = slot.probedForLoss && result == -ECANCELED ? -EBADR : result
        finish(slot, result: reported, flags: flags)
    }

    /// The slot whose request in the kernel carries this `user_data` (for a
    /// batch member, the batch's slot).
    @inline(__always)
    private func slotInKernel(_ userData: UInt64) -> Unmanaged<OperationSlot>? {
        let index = Int(userData >> 32)
        // Through `local` itself: the property's read accessor is a
        // coroutine the optimizer leaves uninlined, a call per completion.
        guard index < local.pointee.kernelTable.count, let entry = local.pointee.kernelTable[index] else { return nil }
        let matches = entry._withUnsafeGuaranteedRef { slot in
            slot.ringUserData == userData & ~OperationSlot.memberMask && slot.ringSide == .inKernel
                && Self.member(of: userData) < slot.kernelRequests
        }
        return matches ? entry : nil
    }

    /// A batch member's place in its batch (0 for any other request).
    static func member(of userData: UInt64) -> Int {
        Int((userData & OperationSlot.memberMask) >> OperationSlot.memberShift)
    }

    /// Records one batch member's final result; the batch finishes with its
    /// last member.
    private func completeMember(of slot: OperationSlot, userData: UInt64, result: Int32, lost: Bool = false) {
        let results = slot.batchResults!
        let member = Self.member(of: userData)
        guard results[member] == OperationSlot.resultPending else { return }
        kernelInFlight -= 1
        completedCount.addOnRingThread(1)
        if lost { lostCount.addOnRingThread(1) }
        // As for single requests: cancelled to look for a lost completion
        // is reported as lost, not as cancelled.
        results[member] = lost || (slot.probedForLoss && result == -ECANCELED) ? -EBADR : result
        slot.batchOutstanding -= 1
        if slot.batchOutstanding == 0 { finish(slot, result: 0, flags: 0) }
    }

    /// The `user_data` of each request of the slot still in the kernel.
    private func requestsInKernel(of slot: OperationSlot) -> [UInt64] {
        let base = slot.ringUserData
        guard slot.batchCount > 0 else { return [base] }
        let results = slot.batchResults!
        return (0..<slot.batchCount).filter { results[$0] == OperationSlot.resultPending }.map {
            base | UInt64($0) << OperationSlot.memberShift
        }
    }

    // MARK: Lost completions

    /// Marks a probe's `user_data`: the target's own, with the top bit set
    /// (slot indexes never reach 2³¹).
    static let probeBit: UInt64 = 1 << 63

    /// After the kernel dropped completions (it could not allocate room for
    /// them while the CQ overflowed), finds the requests they belonged to,
    /// so no caller waits forever: every request in the kernel is
    /// cancelled by its `user_data`. A cancel that finds nothing (`ENOENT`)
    /// means the request already completed, and as its completion would
    /// have come before the cancel's, that completion was lost: the request
    /// fails now. The others end with the cancellation. Either way the
    /// caller gets ``UringError/Kind/completionLost`` (`EBADR`).
    private func probeForLostCompletions() {
        guard ringOpen else { return }
        for case let entry? in kernelTable {
            let slot = entry.takeUnretainedValue()
            guard slot.ringSide == .inKernel && !slot.probedForLoss else { continue }
            slot.probedForLoss = true
            for userData in requestsInKernel(of: slot) {
                var request = io_uring_sqe()
                io_uring_prep_cancel64(&request, userData, 0)
                pushInternal(&request, tag: userData | Self.probeBit)
                kernelInFlight += 1
                probesInFlight += 1
            }
        }
        if wakeArmed {
            var request = io_uring_sqe()
            io_uring_prep_cancel64(&request, Self.wakeTag, 0)
            pushInternal(&request, tag: Self.wakeProbeTag)
            kernelInFlight += 1
            probesInFlight += 1
        }
    }

    private func probeCompleted(target: UInt64, result: Int32) {
        kernelInFlight -= 1
        probesInFlight -= 1
        guard result == -ENOENT, let slot = slotInKernel(target)?.takeUnretainedValue() else { return }
        if slot.batchCount > 0 {
            completeMember(of: slot, userData: target, result: -EBADR, lost: true)
            return
        }
        kernelInFlight -= 1
        completedCount.addOnRingThread(1)
        lostCount.addOnRingThread(1)
        finish(slot, result: -EBADR, flags: 0)
    }

    /// Whether a test may have this completion dropped: a final completion
    /// of a caller's request, never the ring's own.
    private func isDroppableForTesting(_ cqe: io_uring_cqe) -> Bool {
        cqe.user_data & Self.probeBit == 0 && cqe.flags & IORING_CQE_F_MORE == 0
    }

    /// For tests of the recovery above: the next `count` final completions
    /// of callers' requests are discarded as if the kernel had dropped them.
    func dropCompletionsForTesting(_ count: Int) {
        onRingThread { _ in self.local.pointee.dropsToSimulate += count }
    }

    /// Publishes a final result and wakes or recycles according to the caller.
    /// For a batch, `result` goes to every member that has none yet.
    func finish(_ slot: OperationSlot, result: Int32, flags: UInt32) {
        slot.fillPendingResults(with: result)
        slot.ringSide = .none
        slot.ringUserData = 0
        slot.probedForLoss = false
        if let handler = slot.onFinalCompletion {
            pool.release(slot, onRingThread: true)
            handler(result, flags & ~IORING_CQE_F_MORE)
            return
        }
        slot.result = result
        slot.flags = flags
        let before: UInt8
        if slot.awaitedOnRingThread {
            // The caller is on this thread too (see `awaitedOnRingThread`),
            // so the phase cannot move between this load and this store.
            before = slot.phase.load(ordering: .acquiring)
            slot.phase.store(OperationSlot.Phase.completed.rawValue, ordering: .releasing)
        } else {
            before = slot.phase.exchange(OperationSlot.Phase.completed.rawValue, ordering: .acquiringAndReleasing)
        }
        switch OperationSlot.Phase(rawValue: before) {
        case .waiting:
            let continuation = slot.continuation!
            slot.phase.store(OperationSlot.Phase.resumed.rawValue, ordering: .releasing)
            resumeAcrossThreads(continuation, with: .success(()))
        case .detached:
            pool.release(slot, onRingThread: true)
        default:
            break  // The caller is polling and will see `.completed`.
        }
    }

    /// Cancels the request with this `user_data`, if it is still ours.
    func cancel(_ userData: UInt64) {
        let index = Int(userData >> 32)
        guard index < kernelTable.count, let slot = kernelTable[index]?.takeUnretainedValue(),
            slot.ringUserData == userData
        else { return }
        switch slot.ringSide {
        case .pending:
            if slot.chainLength == 1 && slot.chainNext == nil {
                // Finish it now: a request queued behind the in-flight limit
                // must not wait for room just to be cancelled. Its queue
                // entry is now stale and will be skipped.
                finish(slot, result: -ECANCELED, flags: 0)
            } else {
                slot.cancelBeforeSubmit = true  // a chain goes or fails as one
            }
        case .inKernel:
            for target in requestsInKernel(of: slot) {
                var request = io_uring_sqe()
                io_uring_prep_cancel64(&request, target, 0)
                pushInternal(&request, tag: Self.cancelTag)
                kernelInFlight += 1
            }
        case .none:
            break
        }
    }

    /// Puts an internal request in the SQ, submitting first if it is full.
    private func pushInternal(_ request: inout io_uring_sqe, tag: UInt64) {
        while cu_sq_push(ring, &request, tag) == 0 {
            enterKernel(wait: false)
        }
        unsubmitted += 1
    }

    // MARK: Idle

    /// Polls briefly for new work before sleeping, for `idleSpinBudget`.
    /// Returns true if some came.
    ///
    /// With the budget at 0, one idle period in `idleProbeInterval` polls
    /// for the whole `idleSpinNanos` anyway, and restores the budget if
    /// work came within it. Sleep lengths alone cannot show that work has
    /// become frequent again when waking the thread takes longer than
    /// `idleSpinNanos` (a slow guest), so without the probe the budget
    /// could stay at 0 for good.
    private func spinForWork() -> Bool {
        var budget = idleSpinBudget
        let probing = budget == 0 && idleSpinNanos > 0
        if probing {
            idleProbeCountdown -= 1
            guard idleProbeCountdown <= 0 else {
                lastIdlePoll = 0
                return false
            }
            idleProbeCountdown = Self.idleProbeInterval
            budget = idleSpinNanos
        }
        lastIdlePoll = 0
        guard budget > 0 else { return false }
        let start = cu_monotonic_ns()
        let deadline = start &+ budget
        var round = 0
        while true {
            // Reaps every other round: a round is a system call already (the
            // yield below), so reaping less often would see completions late
            // (one connection's echo latency rose by about a third with
            // every eighth).
            if hasRemoteWork.load(ordering: .acquiring) || (kernelInFlight > 0 && round & 1 == 0 && reapedWork()) {
                if probing { idleSpinBudget = idleSpinNanos }
                return true
            }
            // Yields rather than pauses: the core goes to any thread waiting
            // for it, at the cost of one system call when none is. Where
            // threads outnumber cores (two rings and their clients on two
            // cores, say), the thread that would bring this ring its work is
            // often the one waiting; `uring-bench cores`' echo with two rings
            // ran at about 0.6 of its rate here with a plain pause.
            sched_yield()
            round &+= 1
            let now = cu_monotonic_ns()
            if now > deadline {
                // The last yield may have given the core away for a whole
                // time slice, during which the work may have come: look
                // once more, so that work the poll's own overrun let
                // through is not counted as late.
                if hasRemoteWork.load(ordering: .acquiring) || (kernelInFlight > 0 && reapedWork()) {
                    if probing { idleSpinBudget = idleSpinNanos }
                    return true
                }
                // The real length, not the budget: `adaptIdleSpin` counts
                // all of it as time the work took to come.
                lastIdlePoll = now &- start
                return false
            }
        }
    }

    /// Reaps without waiting; true if that left work for the thread.
    private func reapedWork() -> Bool {
        enterKernel(wait: false)
        return !localJobs.isEmpty || canFlush
    }

    /// How many idle periods at a zero budget pass between two probes: the
    /// probe's cost, one `idleSpinNanos` of polling, is then at most about
    /// 1/64 of what the full budget would cost.
    static let idleProbeInterval = 64

    /// Blocks until a completion or a poster's wake-up.
    private func sleep() {
        let mustSleep = inbox.withLock { inbox in
            // Anything posted since the last drain (its poster saw the
            // thread awake, so it sent no wake-up) must be taken first.
            if !inbox.jobs.isEmpty || !inbox.submissions.isEmpty || !inbox.cancellations.isEmpty
                || !inbox.actions.isEmpty
                || ((inbox.shutdownRequested || inbox.exitRequested) && hasRemoteWork.load(ordering: .relaxed))
            {
                return false
            }
            inbox.sleeping = true
            return true
        }
        guard mustSleep else { return }
        let asleepSince = idleSpinNanos > 0 ? cu_monotonic_ns() : 0
        defer { if idleSpinNanos > 0 { adaptIdleSpin(asleepFor: cu_monotonic_ns() &- asleepSince) } }
        if ringOpen {
            if !wakeArmed {
                var request = io_uring_sqe()
                io_uring_prep_read(&request, eventFD, wakeBuffer, 8, 0)
                pushInternal(&request, tag: Self.wakeTag)
                wakeArmed = true
            }
            // Arming may have reaped completions; wait only if that left
            // nothing to do.
            if localJobs.isEmpty && !canFlush { enterKernel(wait: true) }
        } else {
            var value: UInt64 = 0
            _ = withUnsafeMutableBytes(of: &value) { read(eventFD, $0.baseAddress, 8) }
        }
        let wasWoken = inbox.withLock { inbox in
            let stillSleeping = inbox.sleeping
            inbox.sleeping = false
            return !stillSleeping
        }
        if wasWoken { wakeUpCount.addOnRingThread(1) }
    }

    /// Adapts how long the thread polls before it sleeps to how soon work
    /// came after the thread went idle (its polling plus its sleep). Work
    /// that came within `idleSpinNanos` would have been caught by polling
    /// that long, so the budget doubles (from 1 µs) up to that; work that
    /// came later (a producer slower than that, a file read, an idle peer)
    /// would not, so the budget halves (to 0 below 1 µs), and a thread that
    /// keeps waiting for slow work stops taking a CPU from the threads
    /// doing it.
    private func adaptIdleSpin(asleepFor slept: UInt64) {
        let budget = idleSpinBudget
        // The thread polled for `lastIdlePoll` (as measured: about the
        // budget, or a probe's full `idleSpinNanos`, unless a yield overran
        // it) before it slept, so work came that plus `slept` after the
        // thread went idle.
        if lastIdlePoll &+ slept <= idleSpinNanos {
            idleSpinBudget = min(idleSpinNanos, max(budget &* 2, 1_000))
        } else if budget / 2 < 1_000 {
            // Polling stops; the next probe comes a full interval later.
            if budget > 0 { idleProbeCountdown = Self.idleProbeInterval }
            idleSpinBudget = 0
        } else {
            idleSpinBudget = budget / 2
        }
    }

    // MARK: Shutdown

    /// Stops taking work and cancels everything in the kernel.
    private func startShutdown() {
        acceptsWork.store(false, ordering: .releasing)
        // Waits that no request in the kernel will end (ring messages,
        // streams waiting for buffers) end now.
        runShutdownHooks()
        closeMessageEndpoint()
        guard ringOpen, !shuttingDown else {
            if !ringOpen { resumeShutdownWaiters() }
            return
        }
        shuttingDown = true
        flushPending()  // fails every pending request
        var request = io_uring_sqe()
        io_uring_prep_cancel64(&request, 0, Int32(IORING_ASYNC_CANCEL_ANY))
        pushInternal(&request, tag: Self.cancelTag)
        kernelInFlight += 1
    }

    /// Closes the ring once nothing is left in the kernel.
    private func finishShutdownIfDrained() {
        // The wake-up read counts too: the kernel must be done with its
        // buffer before the ring (and later the buffer) goes away.
        guard isDrained, pending.isEmpty, !wakeArmed else {
            if (kernelInFlight > 0 || wakeArmed) && unsubmitted == 0 && localJobs.isEmpty {
                // Wait for the stragglers (for example a read already running
                // in a worker thread, which cannot be interrupted), but at most
                // 10 ms at a time: nothing can wake this wait, and jobs may be
                // posted meanwhile.
                waitInKernel(atMostNanoseconds: 10_000_000)
            }
            return
        }
        io_uring_queue_exit(ring)
        ringOpen = false
        shuttingDown = false
        resumeShutdownWaiters()
    }

    /// Nothing of ours is left in the kernel. Once completions were lost,
    /// an internal cancellation's may have been among them, so the count
    /// cannot be trusted and the table is searched instead (a cancellation
    /// holds no caller's memory).
    private var isDrained: Bool {
        if kernelInFlight <= 0 { return true }
        guard droppedCount.load(ordering: .relaxed) > 0, probesInFlight == 0 else { return false }
        return !kernelTable.contains { $0?.takeUnretainedValue().ringSide == .inKernel }
    }

    private func resumeShutdownWaiters() {
        let waiters = pendingShutdownWaiters
        pendingShutdownWaiters.removeAll()
        for waiter in waiters { resumeAcrossThreads(waiter, with: .success(())) }
    }
}
