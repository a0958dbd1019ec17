import CUring
import Glibc
import Synchronization

/// The deadline in force for the current task, set by ``withDeadline(_:_:)``:
/// every request the engine performs for the task is linked to a kernel
/// timer that fires then.
enum TaskDeadline {
    @TaskLocal static var current: RingClock.Instant?

    /// How many `withDeadline` scopes are open in the process. While none
    /// is, operations skip the task-local lookup (a few percent of an
    /// awaited NOP).
    static let open = Atomic<Int>(0)

    /// The current task's deadline, if any scope is open anywhere.
    static var inForce: RingClock.Instant? {
        open.load(ordering: .relaxed) == 0 ? nil : current
    }
}

extension RingCore {
    /// Performs one request linked to a timeout at `deadline`
    /// (`IORING_OP_LINK_TIMEOUT`); see ``withDeadline(_:_:)``.
    nonisolated(nonsending) func perform(
        _ operation: UringOperation, about context: some ErrorContext, keepAlive: AnyObject?,
        deadline: RingClock.Instant, _ prepare: (inout io_uring_sqe) -> Void
    ) async throws -> Int32 {
        try admit(operation, about: context)
        guard isSupported(.linkTimeout) else { throw context.error(.unsupported, .linkTimeout) }
        guard submissionEntries >= 2 else {
            throw context.error(.invalid("a deadline needs a ring of at least 2 entries (this one has 1)"), operation)
        }
        guard deadline > .now else { throw context.error(.timedOut, operation) }
        let time = KernelTimespec(absolute: deadline)
        let slots = submitChain(2) { step, request in
            if step == 0 {
                prepare(&request)
                return keepAlive
            }
            io_uring_prep_link_timeout(&request, time.pointer, CU_IORING_TIMEOUT_ABS)
            return time
        }
        let completion = await completion(of: slots[0])
        let timer = await self.completion(of: slots[1])
        if completion.result == -ECANCELED && timer.result == -ETIME && !Task.isCancelled {
            throw context.error(.timedOut, operation)
        }
        return try check(completion, operation, about: context)
    }
}

/// Set by a deadline timer when it fires.
final class TimerFired: Sendable {
    let flag = Atomic<Bool>(false)
}

extension RingCore {
    /// Waits for the request in `slot`, which a kernel timer that nobody
    /// awaits cancels at `deadline` (at once if it has passed): the form
    /// for a request already submitted, or one a linked timeout would not
    /// end. The request is still awaited to its completion, so memory it
    /// uses is never touched after this returns. Returns the completion,
    /// and whether it failed because the timer cancelled it.
    nonisolated(nonsending) func completion(
        of slot: OperationSlot, cancellingAt deadline: RingClock.Instant
    ) async -> (Completion, cancelledByDeadline: Bool) {
        let target = slot.userData
        let time = KernelTimespec(absolute: deadline)
        let fired = TimerFired()
        let timer = submitStream(keepAlive: time, handler: { [self] result, _ in
            guard result == -ETIME else { return }
            fired.flag.store(true, ordering: .releasing)
            requestCancellation(target)
        }) {
            io_uring_prep_timeout(&$0, time.pointer, 0, CU_IORING_TIMEOUT_ABS)
        }
        let completion = await completion(of: slot)
        requestCancellation(timer)
        // Cancelled by the timer: ECANCELED, or EINTR for a request a kernel
        // worker was blocked in.
        return (completion, completion.result < 0 && fired.flag.load(ordering: .acquiring))
    }
}
