import CUring

/// Resumes a task that another thread suspended (or is suspending).
///
/// The task may not have finished suspending yet; the runtime then lets it
/// run on without suspending, ordered by an acquire inside the (not
/// instrumented) concurrency runtime. ThreadSanitizer cannot see that
/// acquire, so it would pair the resume's read of the task's continuation
/// context with the task's later reuse of that memory and report a race that
/// cannot happen. Only this thread's plain accesses during the call are left
/// unrecorded; its synchronization still is. Outside ThreadSanitizer the two
/// calls around the resume do nothing.
func resumeAcrossThreads<Value: Sendable, Failure: Error>(
    _ continuation: UnsafeContinuation<Value, Failure>, with result: Result<Value, Failure>
) {
    cu_tsan_ignore_accesses_begin()
    continuation.resume(with: result)
    cu_tsan_ignore_accesses_end()
}
