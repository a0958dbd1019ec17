/// The executor behind a ``RingActor``: one dedicated thread that runs jobs
/// and drives the ring between them.
///
/// It is both the actor's `SerialExecutor` and a `TaskExecutor`, so
/// `withTaskExecutorPreference(ring.executor)` keeps a whole task tree on the
/// ring thread, where operations reach the kernel without a thread hop.
public final class RingExecutor: SerialExecutor, TaskExecutor {
    let core: RingCore

    init(options: RingOptions) throws(UringError) {
        core = try RingCore(options: options)
        try core.start(serial: UnownedSerialExecutor(ordinary: self), task: UnownedTaskExecutor(ordinary: self))
    }

    deinit {
        // Nothing can enqueue on this executor any more: let the thread shut
        // the ring down (if `shutdown()` was not called) and end.
        core.post {
            $0.exitRequested = true
            $0.shutdownRequested = true
        }
    }

    /// Queues a job to run on the ring thread.
    public func enqueue(_ job: consuming ExecutorJob) {
        core.enqueue(UnownedJob(job))
    }

    /// This executor as an unowned serial executor.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// This executor as an unowned task executor.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Traps unless the caller runs on the ring thread.
    public func checkIsolated() {
        precondition(core.isRingThread, "expected to run on the ring's thread")
    }

    /// Whether the caller runs on the ring thread.
    public func isIsolatingCurrentContext() -> Bool? {
        core.isRingThread
    }

    /// Whether the calling thread is this ring's thread.
    public var isCurrentThread: Bool { core.isRingThread }
}
