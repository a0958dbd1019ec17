import CUring

/// A handler that a task's cancellation runs while its owner waits: the
/// cheap form of `withTaskCancellationHandler` for the engine's waits.
///
/// The standard library's function takes a concurrent operation closure
/// and returns to the caller's isolation afterwards, so each wait through
/// it passed up to four executor checks; for a task that prefers the ring's
/// executor (everything `RingActor.run` or a ring group starts) each check
/// takes the task's status lock. On `uring-echo` that was four checks per
/// echoed message, and code isolated to `RingActor` went through a
/// function isolated to it as well. A wait here stays in the caller's
/// frame and isolation: no check when it starts and at most one when it
/// resumes. It registers the same kind of record with the task, through
/// the runtime entry point the standard library uses (see
/// `CUringCancellation.h`).
///
/// The hook's memory is made once per owner (an operation slot, a stream),
/// so a wait allocates nothing but the task's record.
///
/// Why `@unchecked Sendable` is sound: the memory is written only by the
/// one task waiting, before it registers the hook, and read by a
/// cancelling thread only while the hook is registered; registering,
/// firing and removing all take the task's status lock, which orders them.
struct TaskCancellationHook: ~Copyable, @unchecked Sendable {
    /// What the runtime's record points to.
    private let hook: UnsafeMutablePointer<cu_cancel_hook>

    /// A hook whose handler is `fire(target, value)`, with the target and
    /// value given to each wait.
    init(fire: @convention(c) (_ target: UnsafeMutableRawPointer?, _ value: UInt64) -> Void) {
        hook = .allocate(capacity: 1)
        hook.initialize(to: cu_cancel_hook(fire: fire, target: nil, value: 0))
    }

    deinit { hook.deallocate() }

    /// Runs `wait` with the hook registered: if the task is cancelled
    /// meanwhile (or already was), the handler runs with `target` and
    /// `value`, on the cancelling thread, before `wait` ends. Once this
    /// returns, the handler is neither running nor will run. `target` must
    /// outlive the call, and one owner waits once at a time.
    @inline(__always)
    nonisolated(nonsending) func whileWaiting<T>(
        target: AnyObject, value: UInt64, _ wait: nonisolated(nonsending) () async throws -> T
    ) async rethrows -> T {
        hook.pointee.target = Unmanaged.passUnretained(target).toOpaque()
        hook.pointee.value = value
        // The record comes from the task's stack-ordered allocator: it is
        // removed before this frame frees anything allocated before it.
        let record = cu_task_add_cancel_hook(hook)
        defer { cu_task_remove_cancel_hook(record) }
        return try await wait()
    }
}
