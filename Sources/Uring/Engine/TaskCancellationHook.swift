import CUring

/// A handler that a task's cancellation runs while its owner waits: the
/// cheap form of `withTaskCancellationHandler` for the engine's waits.
///
/// The standard library's function runs its operation in a concurrent
/// closure and returns to the caller's isolation afterwards, so each wait
/// through it passed up to four executor checks (`swift_task_switch`);
/// for a task that prefers the ring's executor (everything `RingActor.run`
/// or a ring group starts) each check takes the task's status lock. On
/// `uring-echo` that was about four checks per echoed message. A wait here
/// runs in the caller's `nonisolated(nonsending)` frames: once they are
/// inlined (optimized builds), the only check is the one that returns to
/// the caller's isolation when the wait resumes. It registers the same
/// kind of record with the task, through the runtime entry point the
/// standard library uses (see `CUringCancellation.h`).
///
/// The hook's memory is made once per owner (an operation slot, a stream),
/// so a wait allocates nothing but the task's record.
///
/// Why `@unchecked Sendable` is sound: the waiting task writes the memory
/// before it registers the hook; a cancelling thread reads it only while
/// the hook is registered, and removing the hook waits for a handler that
/// is running. Only then may the owner wait again, or go back to its pool
/// for another task to take, whose writes the pool's own synchronization
/// orders after the removal.
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

    /// Runs `wait` with the hook registered. If the task is cancelled
    /// before this returns, the handler runs once with `target` and
    /// `value`, on the cancelling thread (at once, on this one, if the task
    /// already was), possibly after `wait` itself has finished. Once this
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
