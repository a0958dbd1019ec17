import CUring
import SystemPackage

/// The owner of one io_uring instance and of the thread that drives it.
///
/// The actor's executor is the ring thread itself (``RingExecutor``). Code
/// isolated to the actor, or running in a task that prefers the ring's
/// executor (see ``run(options:_:)``), reaches the kernel with no thread hop.
/// Code anywhere else may use the ring too: its requests are handed over
/// through a small locked inbox.
///
/// ```swift
/// try await RingActor.run { ring in
///     let file = try await File.open("data.bin", on: ring)
///     for try await chunk in file.chunks() { consume(chunk) }
///     try await file.close()
/// }
/// ```
///
/// The ring thread blocks `SIGPIPE`: a write the kernel runs on it, to a
/// pipe whose reader has gone, fails with `EPIPE` instead of killing the
/// process. Code running on the ring thread that starts programs itself
/// (`fork`, `system`, `popen`) passes that mask on; ``ChildProcess``
/// resets it. A `SIGPIPE` raised there stays pending on that thread, so
/// ``signals(_:)`` does not see it.
public final actor RingActor {
    /// The ring's task executor: the ring thread, for `withTaskExecutorPreference`.
    public nonisolated let executor: RingExecutor

    /// The options the ring was created with.
    public nonisolated let options: RingOptions

    /// The ring thread, as this actor's executor.
    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.serial.asUnownedSerialExecutor()
    }

    @usableFromInline nonisolated var core: RingCore { executor.core }

    /// The pool multishot receives use when given none (created on first use).
    private nonisolated let sharedPool = Locked<ReceiveBufferPool?>(nil)
    /// What the socket layer counts for ``statistics``.
    nonisolated let serverCounters = ServerCounters()
    /// Chunk storage `chunks()` sequences read into again.
    nonisolated let chunkSpares = ChunkSpares()
    /// Empty pipes that sending a file to a socket uses again.
    nonisolated let splicePipes = SplicePipes()

    /// The ring's shared receive pool: 256 buffers of 16 KiB, created on
    /// first use.
    nonisolated(nonsending) func sharedReceivePool() async throws -> ReceiveBufferPool {
        if let pool = sharedPool.withLock({ $0 }) { return pool }
        let made = try await ReceiveBufferPool(bufferCount: 256, bufferSize: 16 * 1024, ring: self)
        // Two first users may race; the loser's pool is dropped (and unregistered).
        return sharedPool.withLock { pool in
            if let existing = pool { return existing }
            pool = made
            return made
        }
    }

    /// The pool a multishot receive uses: `given`, which must belong to this
    /// ring, or the shared one.
    nonisolated(nonsending) func receivePool(
        _ given: ReceiveBufferPool?, for operation: UringOperation, path: FilePath?, address: SocketAddress?
    ) async throws -> ReceiveBufferPool {
        guard let given else { return try await sharedReceivePool() }
        guard given.core === core else {
            throw UringError.invalid(operation, path: path, "the buffer pool belongs to another ring").about(address)
        }
        return given
    }

    /// Creates a ring and starts its thread.
    ///
    /// Blocks until the thread has enabled the ring (its start-up, well
    /// under a millisecond on an idle machine), so that other rings can send
    /// it messages as soon as it returns.
    ///
    /// - Throws: ``UringError`` of kind ``UringError/Kind/ringUnavailable``
    ///   when io_uring is disabled (`kernel.io_uring_disabled`) or denied (for
    ///   example by seccomp), ``UringError/Kind/invalidArgument`` when the
    ///   kernel rejects the options, or ``UringError/Kind/system`` for
    ///   ``UringOperation/createRing`` when the thread could not be started
    ///   or could not enable the ring.
    public init(options: RingOptions = RingOptions()) throws(UringError) {
        self.options = options
        do {
            self.executor = try RingExecutor(options: options)
        } catch {
            options.onEvent?(.ringCreationFailed(error))
            throw error
        }
        executor.core.onShutdown { [splicePipes] in splicePipes.closeAll() }
    }

    /// Runs `body` on a new ring's thread, isolated to the ring, with the
    /// ring's executor preferred by the task and by its child tasks; then
    /// shuts the ring down, whether `body` returned or threw.
    ///
    /// Inside `body`, operations reach the kernel without any thread hop.
    public nonisolated(nonsending) static func run<Result>(
        options: RingOptions = RingOptions(),
        _ body: (isolated RingActor) async throws -> sending Result
    ) async throws -> Result {
        let ring = try RingActor(options: options)
        let outcome: Swift.Result<Result, any Error>
        do {
            let value = try await withTaskExecutorPreference(ring.executor) {
                try await body(ring)
            }
            outcome = .success(value)
        } catch {
            outcome = .failure(error)
        }
        await ring.shutdown()
        return try outcome.get()
    }

    private static let sharedRing = Result<RingActor, UringError> { () throws(UringError) in
        var options = RingOptions()
        options.threadName = "uring-shared"
        return try RingActor(options: options)
    }

    /// A ring created on first use with default options and kept for the
    /// life of the process, for programs that need just one.
    public static var shared: RingActor {
        get throws(UringError) { try sharedRing.get() }
    }

    /// Cancels every operation in flight, waits for their completions, and
    /// closes the ring. Operations started afterwards fail with
    /// ``UringError/Kind/ringShutDown``. Calling it again does nothing.
    ///
    /// The ring thread keeps serving this actor's jobs (with no ring) until
    /// the last reference to the actor is gone, then ends; so isolated code
    /// that still runs after shutdown is never stranded.
    public nonisolated func shutdown() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            core.post {
                $0.shutdownRequested = true
                $0.shutdownWaiters.append(continuation)
            }
        }
    }

    /// Counters of the ring's work so far.
    public nonisolated var statistics: RingStatistics {
        var statistics = core.statistics
        serverCounters.fill(&statistics)
        return statistics
    }

    /// Whether the running kernel's io_uring supports `operation`.
    public nonisolated func isSupported(_ operation: UringOperation) -> Bool {
        core.isSupported(operation)
    }

    /// What the kernel's io_uring offers this ring beyond the basics.
    public nonisolated var features: RingFeatures { RingFeatures(rawValue: core.kernelFeatures) }

    /// The submission and completion queue sizes the kernel granted.
    public nonisolated var queueSizes: (submission: UInt32, completion: UInt32) {
        (core.submissionEntries, core.completionEntries)
    }

    /// Sends a request that does nothing and waits for its completion: the
    /// cheapest round trip through the ring.
    @inlinable @inline(__always)
    public nonisolated(nonsending) func nop() async throws {
        let core = self.core
        guard let slot = try core.startNop() else {
            // Under a deadline: the full path, with its linked timeout.
            try await core.nopWithDeadline()
            return
        }
        await core.awaitStarted(slot)
        try core.finishNop(slot)
    }
}
