/// The executor behind a ``RingActor``'s task tree: one dedicated thread that
/// runs jobs and drives the ring between them.
///
/// `withTaskExecutorPreference(ring.executor)` (what ``RingActor/run(options:_:)``
/// does) keeps a whole task tree on the ring thread, where operations reach
/// the kernel without a thread hop. The actor itself runs on the same thread
/// through a companion serial executor; the two are separate objects only so
/// the thread knows whether a job is the actor's or the task tree's, and runs
/// each without an extra hop.
public final class RingExecutor: TaskExecutor {
    let core: RingCore
    let serial: RingSerialExecutor
    /// Messages other rings sent this one.
    let mailbox = Mailbox()

    init(options: RingOptions) throws(UringError) {
        let core = try RingCore(options: options)
        self.core = core
        self.serial = RingSerialExecutor(core: core)
        let mailbox = self.mailbox
        core.onShutdown { mailbox.close() }
        try core.start(
            serial: serial.asUnownedSerialExecutor(), task: UnownedTaskExecutor(ordinary: self),
            messageReceiver: { tag, result in mailbox.receive(tag: tag, result: result) })
    }

    deinit {
        // Nothing can enqueue on this executor any more: let the thread shut
        // the ring down (if `shutdown()` was not called) and end.
        core.post {
            $0.exitRequested = true
            $0.shutdownRequested = true
        }
    }

    /// Queues a job of a task that prefers this executor.
    public func enqueue(_ job: consuming ExecutorJob) {
        core.enqueue(UnownedJob(job), onActor: false)
    }

    /// This executor as an unowned task executor.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Whether the calling thread is this ring's thread.
    public var isCurrentThread: Bool { core.isRingThread }
}

/// The ``RingActor``'s serial executor: the same thread as ``RingExecutor``.
final class RingSerialExecutor: SerialExecutor {
    let core: RingCore

    init(core: RingCore) {
        self.core = core
    }

    func enqueue(_ job: consuming ExecutorJob) {
        core.enqueue(UnownedJob(job), onActor: true)
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        precondition(core.isRingThread, "expected to run on the ring's thread")
    }

    func isIsolatingCurrentContext() -> Bool? {
        core.isRingThread
    }
}
