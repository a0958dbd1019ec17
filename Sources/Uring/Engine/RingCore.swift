import CUring
import Glibc
import Synchronization
import SystemPackage

/// The ring and the thread that owns it.
///
/// Everything the ring thread alone touches lives here unguarded; everything
/// other threads touch goes through `inbox` (a lock) or an atomic.
///
/// Why `@unchecked Sendable` is sound: the unguarded stored properties
/// (`ring`, the job and pending queues, `kernelTable`, the `ring*` flags) are
/// read and written only on the ring thread, which every entry point checks
/// with `isRingThread` before touching them. The remaining properties are
/// immutable after `init`, atomics, or the `inbox` mutex.
@usableFromInline
final class RingCore: @unchecked Sendable {
    /// Work handed over by other threads.
    /// A job and the executor it was enqueued on.
    struct QueuedJob {
        let job: UnownedJob
        /// Enqueued on the actor's serial executor (else on the task executor).
        let onActor: Bool
    }

    struct Inbox {
        var jobs: [QueuedJob] = []
        var submissions: [OperationSlot] = []
        var cancellations: [UInt64] = []
        /// Closures to run on the ring thread (see `onRingThread`).
        var actions: [@Sendable (_ ringOpen: Bool) -> Void] = []
        var shutdownWaiters: [UnsafeContinuation<Void, Never>] = []
        var shutdownRequested = false
        var exitRequested = false
        /// The ring thread is (about to be) asleep: a poster must wake it.
        var sleeping = false
        /// The ring thread has ended: nothing posted now would be seen.
        var exited = false
    }

    static let wakeTag: UInt64 = .max
    static let cancelTag: UInt64 = .max - 1
    /// The `user_data` values another ring may post here with
    /// `IORING_OP_MSG_RING`: three channels whose meaning belongs to the
    /// receiver set at ``start(serial:task:messageReceiver:)``.
    static let messageTags: ClosedRange<UInt64> = (.max - 4)...(.max - 2)
    /// The cancellation that looks for a lost wake-up completion.
    static let wakeProbeTag: UInt64 = .max - 5

    // MARK: Immutable after init

    let pool = SlotPool()
    let eventFD: Int32
    let supportedOpcodes: [Bool]
    let kernelFeatures: UInt32
    /// Multishot timeouts (6.4) work: no probe or feature bit tells, so the
    /// kernel's version does.
    let repeatingTimeouts: Bool
    let submissionEntries: UInt32
    let completionEntries: UInt32
    let maximumInFlight: Int
    let idleSpinNanos: UInt64
    let callerSpinNanos: UInt64
    /// The current polling budget of callers off the ring thread (adapts
    /// between `minimumSpin` and `callerSpinNanos`).
    let spinBudget = Atomic<UInt64>(0)
    /// The least a caller polls once polling is on, so it keeps discovering
    /// when results come back quickly again.
    static let minimumSpin: UInt64 = 5_000
    let threadName: String
    /// Where ``RingEvent``s go (``RingOptions/onEvent``).
    let eventHandler: (@Sendable (RingEvent) -> Void)?
    /// The CPU the ring thread is pinned to, or -1.
    let processor: Int32
    /// The io_uring file descriptor (for sharing workers).
    let ringFD: Int32
    /// A second descriptor of this io_uring, through which other rings
    /// message it (the first closes at shutdown with the ring). The core
    /// lets go of it when shutdown begins; a sender's request holds it until
    /// its completion, so the number is never reused under a message in
    /// flight, and the io_uring is freed once the last such message is done.
    private let messageEndpoint: Locked<MessageEndpoint?>
    /// Takes the completions other rings post here (see `messageTags`), on
    /// the ring thread. Set before the thread starts.
    private(set) var messageReceiver: (@Sendable (_ tag: UInt64, _ result: Int32) -> Void)?
    private(set) var serialExecutor: UnownedSerialExecutor?
    private(set) var taskExecutor: UnownedTaskExecutor?

    // MARK: Shared

    let inbox = Locked(Inbox())
    let hasRemoteWork = Atomic<Bool>(false)
    let threadID = Atomic<UInt>(0)
    /// False once shutdown began: new operations fail at once.
    let acceptsWork = Atomic<Bool>(true)
    let submittedCount = Atomic<UInt64>(0)
    let completedCount = Atomic<UInt64>(0)
    let wakeUpCount = Atomic<UInt64>(0)
    let overflowCount = Atomic<UInt64>(0)
    let droppedCount = Atomic<UInt64>(0)
    /// Requests failed because their completion was among those dropped.
    let lostCount = Atomic<UInt64>(0)
    let enterCount = Atomic<UInt64>(0)
    /// Jobs the ring thread had queued when it last looked (a load figure
    /// for placing work; see `RingGroup`).
    let runnableJobs = Atomic<Int>(0)
    /// Provided-buffer group ids: the next never used, and those given back.
    private let bufferGroups = Locked((next: 0, free: [UInt16]()))
    /// Run once when the ring starts shutting down (nil once they ran).
    private let shutdownHooks = Locked<[@Sendable () -> Void]?>([])

    /// A futex word, shared by `start` (which waits on it) and the ring
    /// thread (which sets it once, after trying to enable the ring): 1 when
    /// the ring was enabled, 1 plus the errno when enabling failed. A raw
    /// pointer because futex(2) needs the word's address, and Swift offers
    /// no way to take the address of an `Atomic` property.
    private let startedWord: UnsafeMutablePointer<UInt32>

    // MARK: Ring thread only

    let ring: UnsafeMutablePointer<io_uring>
    /// Where the wake-up read puts the eventfd counter.
    let wakeBuffer: UnsafeMutablePointer<UInt64>
    /// The ring thread's own state, kept behind a pointer. Its fields are
    /// touched only on the ring thread, so the dynamic exclusivity checks
    /// Swift makes on class properties would buy nothing; skipping them took
    /// `uring-bench nop` mode (a) from 0.60 to 0.63 of C here.
    let local: UnsafeMutablePointer<RingThreadState>

    var localJobs: FIFO<QueuedJob> {
        _read { yield local.pointee.localJobs }
        _modify { yield &local.pointee.localJobs }
    }
    var pending: FIFO<PendingEntry> {
        _read { yield local.pointee.pending }
        _modify { yield &local.pointee.pending }
    }
    /// Every slot the ring has tracked, by index, unretained (see
    /// `RingThreadState.trackedSlots`).
    var kernelTable: [Unmanaged<OperationSlot>?] {
        _read { yield local.pointee.kernelTable }
        _modify { yield &local.pointee.kernelTable }
    }
    /// Requests in the kernel that will post a completion: user operations and
    /// internal cancellations (not the wake-up read).
    var kernelInFlight: Int {
        get { local.pointee.kernelInFlight }
        set { local.pointee.kernelInFlight = newValue }
    }
    var unsubmitted: Int {
        get { local.pointee.unsubmitted }
        set { local.pointee.unsubmitted = newValue }
    }
    /// True while `reap()` walks the CQ, so nothing re-enters it.
    var reaping: Bool {
        get { local.pointee.reaping }
        set { local.pointee.reaping = newValue }
    }
    /// How long the ring thread now polls before it sleeps (adapts between
    /// 0 and `idleSpinNanos`; see `RingLoop.sleep`).
    var idleSpinBudget: UInt64 {
        get { local.pointee.idleSpinBudget }
        set { local.pointee.idleSpinBudget = newValue }
    }
    /// Idle periods left before the next probe at a zero budget (see
    /// `RingLoop.spinForWork`).
    var idleProbeCountdown: Int {
        get { local.pointee.idleProbeCountdown }
        set { local.pointee.idleProbeCountdown = newValue }
    }
    /// How long the thread polled before its latest sleep.
    var lastIdlePoll: UInt64 {
        get { local.pointee.lastIdlePoll }
        set { local.pointee.lastIdlePoll = newValue }
    }
    var wakeArmed: Bool {
        get { local.pointee.wakeArmed }
        set { local.pointee.wakeArmed = newValue }
    }
    var ringOpen: Bool {
        get { local.pointee.ringOpen }
        set { local.pointee.ringOpen = newValue }
    }
    /// Cancellations out looking for lost completions.
    var probesInFlight: Int {
        get { local.pointee.probesInFlight }
        set { local.pointee.probesInFlight = newValue }
    }
    var shuttingDown: Bool {
        get { local.pointee.shuttingDown }
        set { local.pointee.shuttingDown = newValue }
    }
    var pendingShutdownWaiters: [UnsafeContinuation<Void, Never>] {
        _read { yield local.pointee.pendingShutdownWaiters }
        _modify { yield &local.pointee.pendingShutdownWaiters }
    }
    var scratchJobs: [QueuedJob] {
        _read { yield local.pointee.scratchJobs }
        _modify { yield &local.pointee.scratchJobs }
    }
    var scratchSubmissions: [OperationSlot] {
        _read { yield local.pointee.scratchSubmissions }
        _modify { yield &local.pointee.scratchSubmissions }
    }
    var scratchCancellations: [UInt64] {
        _read { yield local.pointee.scratchCancellations }
        _modify { yield &local.pointee.scratchCancellations }
    }
    var scratchActions: [@Sendable (_ ringOpen: Bool) -> Void] {
        _read { yield local.pointee.scratchActions }
        _modify { yield &local.pointee.scratchActions }
    }

    /// Creates the ring on the calling thread, disabled, so failures surface
    /// here as typed errors. The ring thread enables it, which makes that
    /// thread the ring's single issuer.
    init(options: RingOptions) throws(UringError) {
        var params = io_uring_params()
        var flags: UInt32 = IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_R_DISABLED
        if options.singleIssuer { flags |= IORING_SETUP_SINGLE_ISSUER }
        if let idle = options.submissionPolling {
            flags |= IORING_SETUP_SQPOLL
            params.sq_thread_idle = UInt32(clamping: idle.nanoseconds / 1_000_000)
        } else if options.deferTaskRun && options.singleIssuer {
            flags |= IORING_SETUP_DEFER_TASKRUN
        } else if options.cooperativeTaskRun {
            flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG
        }
        if let cq = options.completionEntries {
            flags |= IORING_SETUP_CQSIZE
            params.cq_entries = cq
        }
        if let other = options.sharesWorkersWith {
            flags |= IORING_SETUP_ATTACH_WQ
            params.wq_fd = UInt32(bitPattern: other.executor.core.ringFD)
        }
        params.flags = flags
        guard options.entries > 0 else {
            throw .invalid(.createRing, "a ring needs at least one entry")
        }
        if let processor = options.processor, processor < 0 {
            throw .invalid(.createRing, "CPU \(processor) does not exist")
        }

        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        ring.initialize(to: io_uring())
        let created = io_uring_queue_init_params(options.entries, ring, &params)
        guard created == 0 else {
            ring.deallocate()
            throw Self.creationError(-created)
        }
        let efd = eventfd(0, Int32(EFD_CLOEXEC))
        guard efd >= 0 else {
            let code = Glibc.errno
            io_uring_queue_exit(ring)
            ring.deallocate()
            throw .system(.createRing, code)
        }
        var supported = [Bool](repeating: false, count: 256)
        if let probe = cu_probe_ring(ring) {
            let count = Int(probe.pointee.ops_len)
            for i in 0..<count {
                let op = cu_probe_op(probe, UInt32(i))!.pointee
                if op.flags & UInt16(IO_URING_OP_SUPPORTED) != 0 { supported[Int(op.op)] = true }
            }
            io_uring_free_probe(probe)
        }
        for operation in options.treatedAsUnsupported {
            if let opcode = operation.opcode { supported[Int(opcode)] = false }
        }
        // Nothing throws from here on, so nothing allocated below can leak.
        self.ring = ring
        self.wakeBuffer = .allocate(capacity: 1)
        self.wakeBuffer.initialize(to: 0)
        self.startedWord = .allocate(capacity: 1)
        self.startedWord.initialize(to: 0)
        self.local = .allocate(capacity: 1)
        self.local.initialize(to: RingThreadState())
        self.ringFD = ring.pointee.ring_fd
        let messageFD = fcntl(ring.pointee.ring_fd, F_DUPFD_CLOEXEC, 0)
        self.messageEndpoint = Locked(messageFD >= 0 ? MessageEndpoint(messageFD) : nil)
        self.eventFD = efd
        self.supportedOpcodes = supported
        self.kernelFeatures = params.features
        self.repeatingTimeouts = Self.kernelIsAtLeast(6, 4) && !options.treatedAsUnsupported.contains(.repeatingTimeout)
        self.submissionEntries = params.sq_entries
        self.completionEntries = params.cq_entries
        // No limit by default: sockets keep requests in the kernel for as long
        // as a peer is silent, and a limit could starve the request that
        // would end the wait. Overflowing completions wait in the kernel.
        self.maximumInFlight = max(1, options.maximumInFlight ?? Int.max / 2)
        self.idleSpinNanos = options.idleSpin.nanoseconds
        self.local.pointee.idleSpinBudget = idleSpinNanos
        self.callerSpinNanos = options.callerSpin.nanoseconds
        self.spinBudget.store(callerSpinNanos, ordering: .relaxed)
        self.threadName = String(decoding: options.threadName.utf8.prefix(15), as: UTF8.self)
        self.eventHandler = options.onEvent
        self.processor = options.processor.map { Int32(clamping: $0) } ?? -1
    }

    /// Whether the running kernel's release is `major.minor` or later.
    static func kernelIsAtLeast(_ major: Int, _ minor: Int) -> Bool {
        var names = utsname()
        guard uname(&names) == 0 else { return false }
        let release = withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2 else { return false }
        return (numbers[0], numbers[1]) >= (major, minor)
    }

    private static func creationError(_ code: Int32) -> UringError {
        let errno = Errno(rawValue: code)
        switch code {
        case EPERM, ENOSYS, EACCES:
            var reason = "io_uring is not available to this process"
            let sysctl = cu_io_uring_disabled_sysctl()
            if sysctl == 2 {
                reason += ": kernel.io_uring_disabled is 2, which refuses it to every process;"
                    + " `sysctl -w kernel.io_uring_disabled=0` allows it again"
            } else if sysctl == 1 {
                reason += ": kernel.io_uring_disabled is 1, which allows it only to members of the group"
                    + " in kernel.io_uring_group; add this user to that group, or set the sysctl to 0"
            } else if code == ENOSYS {
                reason += ": the kernel was built without io_uring (CONFIG_IO_URING), or a filter hides it"
            } else {
                reason += ": io_uring_setup was refused, most likely by a seccomp filter (the default"
                    + " profiles of Docker and Podman, a systemd unit's SystemCallFilter): allow"
                    + " io_uring_setup, io_uring_enter and io_uring_register in the profile. On Linux 6.6"
                    + " and later the kernel.io_uring_disabled sysctl can refuse it too; here it does not"
            }
            return UringError(.ringUnavailable, operation: .createRing, errno: errno, detail: reason)
        case ENOMEM:
            return UringError(
                .ringUnavailable, operation: .createRing, errno: errno,
                detail: "not enough memory for the ring (check RLIMIT_MEMLOCK or use fewer entries)")
        case EINVAL:
            return UringError(
                .invalidArgument, operation: .createRing, errno: errno,
                detail: "the kernel rejected these ring options")
        default:
            return .system(.createRing, code)
        }
    }

    /// Records which executor this core runs jobs for and who receives other
    /// rings' messages, then starts the thread.
    func start(
        serial: UnownedSerialExecutor, task: UnownedTaskExecutor,
        messageReceiver: @escaping @Sendable (_ tag: UInt64, _ result: Int32) -> Void
    ) throws(UringError) {
        serialExecutor = serial
        taskExecutor = task
        self.messageReceiver = messageReceiver
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let status = cu_thread_start(&thread, processor, { context in
            let core = Unmanaged<RingCore>.fromOpaque(context!).takeRetainedValue()
            core.runLoop()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<RingCore>.fromOpaque(context).release()
            io_uring_queue_exit(ring)
            if status == EINVAL && processor >= 0 {
                throw .invalid(.createRing, "CPU \(processor) is not one this process may run on")
            }
            throw .system(.createRing, status)
        }
        // Named here too, so the name shows as soon as the ring exists (the
        // thread names itself again when it starts).
        _ = cu_thread_set_name_of(thread, threadName)
        pthread_detach(thread)
        // Until the thread enables the ring, other rings' messages to it
        // fail with EBADFD; so `start` blocks until the ring is enabled, and
        // the ring is usable from every thread once the initializer returns.
        // The wait is the thread's start-up, well under a millisecond unless
        // the machine is starved.
        var word = cu_atomic_load32(startedWord)
        while word == 0 {
            _ = cu_futex_wait_blocking(startedWord, 0)
            word = cu_atomic_load32(startedWord)
        }
        if word > 1 {
            // The thread closed the ring; let it end as soon as it is idle.
            post {
                $0.exitRequested = true
                $0.shutdownRequested = true
            }
            throw .system(.createRing, Int32(word - 1))
        }
    }

    /// Called once by the ring thread after trying to enable the ring, with
    /// 0 or the errno of the failure: lets `start` return (or throw).
    func announceStarted(failure: Int32) {
        _ = cu_atomic_add32(startedWord, 1 + UInt32(failure))
        _ = cu_futex_wake(startedWord, Int32.max)
    }

    /// Runs `hook` when the ring starts shutting down (at once if it has),
    /// for layers whose waits no request in the kernel would end.
    func onShutdown(_ hook: @escaping @Sendable () -> Void) {
        let registered = shutdownHooks.withLock { hooks -> Bool in
            guard hooks != nil else { return false }
            hooks!.append(hook)
            return true
        }
        if !registered { hook() }
    }

    /// The descriptor other rings message this one through, while it
    /// takes work; keep it alive until the message's completion.
    func messageTarget() -> MessageEndpoint? {
        guard acceptsWork.load(ordering: .acquiring) else { return nil }
        return messageEndpoint.withLock { $0 }
    }

    /// Lets go of the message descriptor (at shutdown).
    func closeMessageEndpoint() {
        // Released after the lock: closed here unless a message holds it.
        _ = messageEndpoint.withLock { $0.take() }
    }

    /// Runs the shutdown hooks, once.
    func runShutdownHooks() {
        let hooks = shutdownHooks.withLock { hooks -> [@Sendable () -> Void] in
            defer { hooks = nil }
            return hooks ?? []
        }
        for hook in hooks { hook() }
    }

    deinit {
        close(eventFD)
        ring.deallocate()
        wakeBuffer.deallocate()
        startedWord.deallocate()
        local.deinitialize(count: 1)
        local.deallocate()
    }

    var isRingThread: Bool {
        let id = threadID.load(ordering: .relaxed)
        return id != 0 && pthread_equal(pthread_self(), pthread_t(id)) != 0
    }

    func isSupported(_ operation: UringOperation) -> Bool {
        if operation == .repeatingTimeout { return repeatingTimeouts }
        guard let opcode = operation.opcode else { return true }
        return supportedOpcodes[Int(opcode)]
    }

    // MARK: Entry points from any thread

    /// Queues a job for the ring thread.
    func enqueue(_ job: UnownedJob, onActor: Bool) {
        let queued = QueuedJob(job: job, onActor: onActor)
        if isRingThread {
            localJobs.append(queued)
        } else {
            post { $0.jobs.append(queued) }
        }
    }

    /// Asks the ring thread to cancel the request with this `user_data`.
    func requestCancellation(_ userData: UInt64) {
        post { $0.cancellations.append(userData) }
    }

    /// A provided-buffer group id no other pool of this ring uses.
    func allocateBufferGroup() -> UInt16? {
        bufferGroups.withLock { groups in
            if let id = groups.free.popLast() { return id }
            guard groups.next <= Int(UInt16.max) else { return nil }
            defer { groups.next += 1 }
            return UInt16(groups.next)
        }
    }

    func releaseBufferGroup(_ id: UInt16) {
        bufferGroups.withLock { $0.free.append(id) }
    }

    /// Runs `action` on the ring thread (now, if this is it), for work the
    /// kernel accepts only from the ring's single issuer, such as registering
    /// a buffer ring. `action` learns whether the ring is still open; if the
    /// ring thread has ended, it runs here with `false`.
    func onRingThread(_ action: @escaping @Sendable (_ ringOpen: Bool) -> Void) {
        if isRingThread {
            action(ringOpen)
            return
        }
        let accepted = postIfAccepted { inbox in
            if inbox.exited { return false }
            inbox.actions.append(action)
            return true
        }
        if !accepted { action(false) }
    }

    /// Runs a registration call (`io_uring_register`) on the ring thread, the
    /// ring's single issuer and the only thread the kernel accepts it from,
    /// and returns its result: `-ESHUTDOWN` if the ring is closed.
    nonisolated(nonsending) func register(
        _ call: @escaping @Sendable (UnsafeMutablePointer<io_uring>) -> Int32
    ) async -> Int32 {
        await onRingThread { [self] open -> Int32 in open ? call(self.ring) : -ESHUTDOWN }
    }

    /// Like ``register(_:)``, without waiting for the call; nothing happens
    /// if the ring is closed.
    func registerLater(_ call: @escaping @Sendable (UnsafeMutablePointer<io_uring>) -> Void) {
        onRingThread { [self] open in
            if open { call(self.ring) }
        }
    }

    /// Runs `body` on the ring thread and returns its result.
    nonisolated(nonsending) func onRingThread<Value: Sendable>(
        _ body: @escaping @Sendable (_ ringOpen: Bool) -> Value
    ) async -> Value {
        if isRingThread { return body(ringOpen) }
        // The release/acquire pair makes everything `body` wrote on the ring
        // thread (a buffer ring's header, say) visible here in a way
        // ThreadSanitizer can see; the resumption alone synchronizes inside
        // the uninstrumented concurrency runtime.
        let handOff = HandOff()
        let value = await withUnsafeContinuation { (continuation: UnsafeContinuation<Value, Never>) in
            onRingThread { (open: Bool) in
                let value = body(open)
                handOff.done.store(true, ordering: .releasing)
                resumeAcrossThreads(continuation, with: .success(value))
            }
        }
        _ = handOff.done.load(ordering: .acquiring)
        return value
    }

    /// Hands a request (and the rest of its chain) to the ring thread. If
    /// that thread has already ended, the request fails here as aborted.
    func postSubmission(_ head: OperationSlot) {
        let accepted = postIfAccepted { inbox in
            if inbox.exited { return false }
            inbox.submissions.append(head)
            return true
        }
        if accepted { return }
        var next: OperationSlot? = head
        while let slot = next {
            next = slot.chainNext
            if let handler = slot.onFinalCompletion {
                pool.release(slot, onRingThread: false)
                handler(-ECANCELED, 0)
                continue
            }
            slot.abortedByShutdown = true
            slot.result = -ECANCELED
            slot.fillPendingResults(with: -ECANCELED)
            // Nobody else holds the slot: the ring thread is gone.
            let before = slot.phase.exchange(OperationSlot.Phase.completed.rawValue, ordering: .acquiringAndReleasing)
            if before == OperationSlot.Phase.detached.rawValue { pool.release(slot, onRingThread: false) }
        }
    }

    /// Runs `change` on the inbox and wakes the ring thread if it sleeps.
    func post(_ change: (inout Inbox) -> Void) {
        _ = postIfAccepted { inbox in
            change(&inbox)
            return true
        }
    }

    /// Like `post`, in one lock, but `change` may decline by returning false;
    /// then nothing is signalled. Returns what `change` returned.
    private func postIfAccepted(_ change: (inout Inbox) -> Bool) -> Bool {
        let (accepted, mustWake) = inbox.withLock { inbox -> (Bool, Bool) in
            guard change(&inbox) else { return (false, false) }
            hasRemoteWork.store(true, ordering: .releasing)
            let sleeping = inbox.sleeping
            inbox.sleeping = false
            return (true, sleeping)
        }
        if mustWake { signalWake() }
        return accepted
    }

    func signalWake() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(eventFD, $0.baseAddress, 8) }
    }

    /// Statistics snapshot.
    var statistics: RingStatistics {
        let submitted = submittedCount.load(ordering: .relaxed)
        let completed = completedCount.load(ordering: .relaxed)
        return RingStatistics(
            submitted: submitted,
            completed: completed,
            wakeUps: wakeUpCount.load(ordering: .relaxed),
            completionQueueOverflows: overflowCount.load(ordering: .relaxed),
            droppedCompletions: droppedCount.load(ordering: .relaxed),
            lostOperations: lostCount.load(ordering: .relaxed),
            kernelEnters: enterCount.load(ordering: .relaxed),
            slotsCreated: pool.createdCount,
            slotsInUse: pool.inUseCount)
    }
}

/// A request waiting for room in the kernel, with the `user_data` it had when
/// queued: an entry whose slot has since finished (cancelled while queued)
/// is stale and skipped.
struct PendingEntry {
    let slot: OperationSlot
    let userData: UInt64
}

/// What only the ring thread reads and writes (see `RingCore.local`).
struct RingThreadState {
    var localJobs = FIFO<RingCore.QueuedJob>()
    var pending = FIFO<PendingEntry>()
    var reaping = false
    /// Slots by index, unretained, so looking one up for a completion costs
    /// no reference counting. Sound because `trackedSlots` holds each of
    /// them for the ring's life (a slot, once tracked, stays in the table).
    var kernelTable: [Unmanaged<OperationSlot>?] = []
    var trackedSlots: [OperationSlot] = []
    var kernelInFlight = 0
    var unsubmitted = 0
    var idleSpinBudget: UInt64 = 0
    var idleProbeCountdown = RingCore.idleProbeInterval
    var lastIdlePoll: UInt64 = 0
    var wakeArmed = false
    var ringOpen = true
    var shuttingDown = false
    var probesInFlight = 0
    /// Completions a test asked to be dropped, and how many were.
    var dropsToSimulate = 0
    var simulatedDrops: UInt64 = 0
    var pendingShutdownWaiters: [UnsafeContinuation<Void, Never>] = []
    var scratchJobs: [RingCore.QueuedJob] = []
    var scratchSubmissions: [OperationSlot] = []
    var scratchCancellations: [UInt64] = []
    var scratchActions: [@Sendable (_ ringOpen: Bool) -> Void] = []
}

/// A descriptor of a ring that other rings name in `IORING_OP_MSG_RING`,
/// closed when the last holder lets go.
final class MessageEndpoint: Sendable {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

extension Atomic<UInt64> {
    /// Adds `amount` to a counter that only the ring thread writes (others
    /// only read it): a plain load and store, without the locked
    /// read-modify-write of `add`, which cost a tenth of the ring thread's
    /// time in batches of NOPs.
    @inline(__always)
    func addOnRingThread(_ amount: UInt64) {
        store(load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }
}

/// A flag the ring thread sets (releasing) when it hands a result back.
final class HandOff: Sendable {
    let done = Atomic<Bool>(false)
}

extension RingCore {
    /// Passes `event` to the application's handler, if it set one.
    func report(_ event: @autoclosure () -> RingEvent) {
        eventHandler?(event())
    }
}
