/// How a ring is set up. The defaults suit one busy thread doing I/O for many
/// tasks: a single submitter and deferred completion work.
public struct RingOptions: Sendable {
    /// Submission queue entries (rounded up to a power of two by the kernel).
    public var entries: UInt32 = 256
    /// Completion queue entries; `nil` lets the kernel pick twice `entries`.
    public var completionEntries: UInt32? = nil
    /// Only the ring thread submits (`IORING_SETUP_SINGLE_ISSUER`).
    public var singleIssuer = true
    /// Completion work runs only when the ring thread asks for completions
    /// (`IORING_SETUP_DEFER_TASKRUN`). Needs ``singleIssuer`` and is turned off
    /// by ``submissionPolling``.
    public var deferTaskRun = true
    /// The kernel does not interrupt the ring thread to run completion work
    /// (`IORING_SETUP_COOP_TASKRUN`); used only without ``deferTaskRun``.
    public var cooperativeTaskRun = false
    /// A kernel thread polls the submission queue and sleeps after this much
    /// idle time (`IORING_SETUP_SQPOLL`). `nil` (the default) means no poller.
    public var submissionPolling: Duration? = nil
    /// Share the asynchronous worker pool of another ring
    /// (`IORING_SETUP_ATTACH_WQ`).
    public var sharesWorkersWith: RingActor? = nil
    /// The most operations the ring lets into the kernel at once. Callers past
    /// this wait in order. `nil` (the default) means no limit: completions
    /// beyond the completion queue's size wait in the kernel
    /// (`IORING_FEAT_NODROP`) until the ring reads them.
    ///
    /// Every request in the kernel counts, including receives and accepts
    /// that wait for a peer and multishot requests, which stay in the kernel
    /// for as long as their sequence is iterated. With many connections a
    /// limit can therefore hold back the very send a waiting receive needs;
    /// set one only for work whose operations finish on their own (files).
    public var maximumInFlight: Int? = nil
    /// The longest the ring thread polls for new work before it sleeps.
    /// The actual budget adapts: it halves each time work comes later than
    /// this after the thread went idle (polling would not have caught it,
    /// and would only have taken a CPU from the threads doing the work),
    /// down to no polling, and doubles back each time work comes sooner.
    /// With polling down to nothing, one idle period in 64 still polls for
    /// this long, and polling resumes if work comes within it. Each round
    /// of polling offers the CPU to any thread waiting for it
    /// (`sched_yield`), so a polling ring rarely holds up a thread that
    /// shares its core; how readily the scheduler takes the offer depends
    /// on the kernel (measured on 6.18's EEVDF scheduler). Zero turns
    /// polling off.
    public var idleSpin: Duration = .microseconds(50)
    /// The longest a caller on Swift's global pool polls for its result
    /// before it suspends. A result that comes back within this time costs
    /// no thread wake-up at all. Code isolated to an actor never polls (it
    /// would hold the actor's other work back), nor does code on any ring's
    /// thread (that ring would stop reaping). The actual budget adapts: it shrinks
    /// while results keep arriving too late to catch and grows
    /// back when they arrive in time (it never drops below 5 µs). Zero turns
    /// polling off.
    public var callerSpin: Duration = .microseconds(20)

    /// The CPU to pin the ring thread to, or `nil` (the default) to let the
    /// scheduler place it. It must be one the process may run on (see
    /// `taskset`), or creating the ring fails with
    /// ``UringError/Kind/invalidArgument``. ``RingGroup`` pins each of its
    /// rings to a CPU of its own. Threads the ring thread starts inherit the
    /// pin, Swift's global pool threads included (see "Using every core").
    public var processor: Int? = nil

    /// The ring thread's name, as `top -H`, `ps -L` and debuggers show it
    /// (at most 15 bytes are kept).
    public var threadName = "uring-ring"

    /// Called with each ``RingEvent``: what the library did on its own that
    /// an application may want to log or count. `nil` (the default) ignores
    /// them.
    ///
    /// It is called on the ring's thread for most events, and otherwise on
    /// the thread that found the event (the creating thread for a ring that
    /// could not be created, the closing task's for a descriptor closed
    /// after shutdown), so it must return quickly and must not wait for the
    /// ring.
    public var onEvent: (@Sendable (RingEvent) -> Void)? = nil

    /// Operations treated as missing from the kernel's probe, so tests can
    /// check the `unsupported` path on a kernel that has everything.
    var treatedAsUnsupported: Set<UringOperation> = []

    /// The defaults.
    public init() {}

    /// Defaults with a different number of submission queue entries.
    public init(entries: UInt32) {
        self.entries = entries
    }
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }
}
