import CUring
import Glibc

/// What the idle timer's completion decided, under the stream's lock.
private enum IdleOutcome<Element> {
    case nothing
    case rearm(RingClock.Instant)
    case timeOut(UnsafeContinuation<Element?, any Error>, UInt64?)
}

/// What `MultishotStream.next()` found under its lock.
private enum NextStep<Element> {
    case value(Element?)
    case failure(any Error)
    case wait
}

/// The state shared by a multishot request and the one consumer of what it
/// produces: elements in arrival order, then an end.
///
/// The request side (completion handlers, on the ring thread) calls
/// ``deliver(_:requestContinues:)``, ``requestEnded()``, ``finish(throwing:)``
/// and ``waitForResources()``; the consumer calls ``next()`` and, when it
/// stops early, ``stop()``. The stream (re)arms the request through `arm`
/// when it starts, when the kernel ends a request that should go on, and when
/// the consumer has drained a full queue.
///
/// Back-pressure: once `highWater` elements wait unconsumed, the request is
/// cancelled, and it is armed again when the consumer has taken them. What
/// the kernel produced in between is still delivered, so nothing is lost;
/// the kernel holds the rest (in the socket, or the listen backlog).
final class MultishotStream<Element: Sendable>: Sendable {
    private struct State: Sendable {
        var queue = FIFO<Element>()
        var end: Result<Void, any Error>?
        var waiter: UnsafeContinuation<Element?, any Error>?
        /// A request is in the kernel (its final completion not seen yet).
        var armed = false
        var userData: UInt64 = 0
        /// The request was cancelled for back-pressure.
        var paused = false
        /// Waiting for the kernel's resources (provided buffers) to return.
        var waitingForResources = false
        var started = false
        /// Names the consumer's current wait, for the deadline timer that
        /// bounds it: bumped when a wait starts and, under the same lock,
        /// whenever a waiter is resumed, so a timer that fires after its
        /// wait is over (its cancellation still on the way) does nothing.
        var timedWait: UInt64 = 0
        /// When the current waiter started waiting (kept only with an idle
        /// timeout).
        var waitStarted: RingClock.Instant?
        /// The idle timer is in the kernel, and its `user_data`.
        var idleTimerArmed = false
        var idleTimer: UInt64 = 0
    }

    private let state = Locked(State())
    private let core: RingCore
    private let highWater: Int
    /// What a `next()` that waits past the task's deadline (or the idle
    /// timeout) throws.
    private let timeoutError: any Error
    /// The longest one `next()` may wait for an element, if bounded.
    private let idleTimeout: Duration?
    /// Submits the request; returns its `user_data`.
    private let arm: @Sendable (MultishotStream<Element>) -> UInt64
    /// Ends the stream when the consumer's task is cancelled while it waits.
    private let cancelHook = TaskCancellationHook(fire: stopStreamOfCancelledConsumer)

    init(
        core: RingCore, highWater: Int, timeoutError: any Error, idleTimeout: Duration? = nil,
        arm: @escaping @Sendable (MultishotStream<Element>) -> UInt64
    ) {
        self.core = core
        self.highWater = max(1, highWater)
        self.timeoutError = timeoutError
        self.idleTimeout = idleTimeout
        self.arm = arm
    }

    // MARK: Consumer side

    /// The next element, nil at the end; throws the error that ended the
    /// stream, or `CancellationError` when the consumer's task is cancelled
    /// (which also stops the stream).
    ///
    /// Inside ``withDeadline(_:_:)``, and with an idle timeout, a wait that
    /// outlasts the limit ends the stream with ``UringError/Kind/timedOut``:
    /// a kernel timer fires at the limit, and it is cancelled when the wait
    /// ends first. A limit already past returns what is queued, and
    /// otherwise throws without starting a request, so nothing is received
    /// only to be dropped.
    nonisolated(nonsending) func next() async throws -> Element? {
        try Task.checkCancellation()
        let limit = TaskDeadline.inForce
        let expired = limit.map { $0 <= .now } ?? false
        // Fast path: an element (or the end) is already here, so no
        // cancellation handler and no continuation (see
        // `RingCore.completion(of:)` for what each costs).
        switch take(parking: nil, mayStart: !expired) {
        case .value(let element): return element
        case .failure(let error): throw error
        case .wait: break
        }
        if expired {
            stop(with: timeoutError)
            throw timeoutError
        }
        var timer: UInt64? = nil
        if let limit { timer = startTimer(until: limit) }
        defer {
            if let timer {
                state.withLock { $0.timedWait &+= 1 }
                core.requestCancellation(timer)
            }
        }
        // The wait runs in this frame (see `TaskCancellationHook`), which
        // returns to the caller's isolation once when it resumes.
        return try await cancelHook.whileWaiting(target: self, value: 0) {
            try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { park($0) }
        }
    }

    /// Submits a timer that ends the current wait, and the stream, with
    /// `timeoutError` at `limit`; returns its `user_data`.
    private func startTimer(until limit: RingClock.Instant) -> UInt64 {
        let time = KernelTimespec(absolute: limit)
        let wait = state.withLock { state in
            state.timedWait &+= 1
            return state.timedWait
        }
        return core.submitStream(keepAlive: time, handler: { result, _ in
            guard result == -ETIME else { return }
            self.timeOut(wait)
        }) {
            io_uring_prep_timeout(&$0, time.pointer, 0, CU_IORING_TIMEOUT_ABS)
        }
    }

    /// The timer of wait `wait` fired: if that wait is still going on (no
    /// element reached it), end the stream with `timeoutError`. The consumer
    /// may not have parked yet (the timer can fire first); it then finds the
    /// end when it does.
    private func timeOut(_ wait: UInt64) {
        var idleTimer: UInt64 = 0
        let (waiter, cancel) = state.withLock { state -> (UnsafeContinuation<Element?, any Error>?, UInt64?) in
            guard state.timedWait == wait, state.end == nil else { return (nil, nil) }
            let waiter = state.waiter
            state.waiter = nil
            state.waitStarted = nil
            state.timedWait &+= 1
            state.end = .failure(timeoutError)
            if state.idleTimerArmed { idleTimer = state.idleTimer }
            return (waiter, state.armed ? state.userData : nil)
        }
        if idleTimer != 0 { core.requestCancellation(idleTimer) }
        if let cancel, cancel != 0 { core.requestCancellation(cancel) }
        if let waiter { resumeAcrossThreads(waiter, with: .failure(timeoutError)) }
    }

    /// Resumes `continuation` with what is ready, or leaves it as the waiter.
    private func park(_ continuation: UnsafeContinuation<Element?, any Error>) {
        switch take(parking: continuation, mayStart: true) {
        case .value(let element): continuation.resume(returning: element)
        case .failure(let error): continuation.resume(throwing: error)
        case .wait: break
        }
    }

    /// Under the lock: starts the stream on first use (if `mayStart`), then
    /// takes the next element or the end; if there is neither, installs
    /// `waiter` (when given) and answers `.wait`.
    private func take(parking waiter: UnsafeContinuation<Element?, any Error>?, mayStart: Bool) -> NextStep<Element> {
        var mustArm = false
        var idleTimerAt: RingClock.Instant? = nil
        let step: NextStep<Element> = state.withLock { state in
            if !state.started && mayStart {
                state.started = true
                state.armed = true
                mustArm = true
            }
            // A parking consumer that finds something ends its wait here, so
            // the wait's timer (already started) can no longer end the stream.
            if waiter != nil, state.queue.first != nil || state.end != nil { state.timedWait &+= 1 }
            if let element = state.queue.popFirst() {
                mustArm = mustArm || claimRearm(&state)
                return .value(element)
            }
            switch state.end {
            case .success?: return .value(nil)
            case .failure(let error)?: return .failure(error)
            case nil:
                if let waiter {
                    state.waiter = waiter
                    if let idleTimeout {
                        let now = RingClock.Instant.now
                        state.waitStarted = now
                        if !state.idleTimerArmed {
                            state.idleTimerArmed = true
                            idleTimerAt = now + idleTimeout
                        }
                    }
                }
                return .wait
            }
        }
        if mustArm { submit() }
        if let idleTimerAt { armIdleTimer(at: idleTimerAt) }
        return step
    }

    // MARK: Idle timeout

    /// Submits the idle timer for `instant`. One timer per stream, re-armed
    /// only when it fires: a stream whose waits are short pays for one
    /// timer per idle period, not one per wait.
    private func armIdleTimer(at instant: RingClock.Instant) {
        let time = KernelTimespec(absolute: instant)
        let userData = core.submitStream(keepAlive: time, handler: { result, _ in
            self.idleTimerFired(expired: result == -ETIME)
        }) {
            io_uring_prep_timeout(&$0, time.pointer, 0, CU_IORING_TIMEOUT_ABS)
        }
        let cancel = state.withLock { state -> Bool in
            state.idleTimer = userData
            return state.end != nil  // ended while the timer was being handed over
        }
        if cancel { core.requestCancellation(userData) }
    }

    /// The idle timer completed: if the consumer has been waiting for the
    /// whole idle timeout, end the stream with `timeoutError`; if it is
    /// waiting but started later, wait on until that wait's limit; if it is
    /// not waiting, disarm until its next wait.
    private func idleTimerFired(expired: Bool) {
        guard let idleTimeout else { return }
        let outcome = state.withLock { state -> IdleOutcome<Element> in
            guard expired, state.end == nil, let waiter = state.waiter, let started = state.waitStarted else {
                state.idleTimerArmed = false
                return .nothing
            }
            let limit = started + idleTimeout
            if limit > .now { return .rearm(limit) }
            state.idleTimerArmed = false
            state.waiter = nil
            state.waitStarted = nil
            state.timedWait &+= 1
            state.end = .failure(timeoutError)
            return .timeOut(waiter, state.armed ? state.userData : nil)
        }
        switch outcome {
        case .nothing: break
        case .rearm(let limit): armIdleTimer(at: limit)
        case .timeOut(let waiter, let cancel):
            if let cancel, cancel != 0 { core.requestCancellation(cancel) }
            resumeAcrossThreads(waiter, with: .failure(timeoutError))
        }
    }

    /// The consumer is gone: cancel the request, drop what waits, and end.
    func stop(with error: (any Error)? = nil) {
        var dropped = FIFO<Element>()
        var idleTimer: UInt64 = 0
        let (waiter, cancel) = state.withLock { state -> (UnsafeContinuation<Element?, any Error>?, UInt64?) in
            swap(&dropped, &state.queue)
            if state.end == nil { state.end = error.map { .failure($0) } ?? .success(()) }
            let waiter = state.waiter
            state.waiter = nil
            state.waitStarted = nil
            state.timedWait &+= 1
            if state.idleTimerArmed { idleTimer = state.idleTimer }
            return (waiter, state.armed ? state.userData : nil)
        }
        if let cancel, cancel != 0 { core.requestCancellation(cancel) }
        if idleTimer != 0 { core.requestCancellation(idleTimer) }
        if let waiter { resumeAcrossThreads(waiter, with: Self.end(error)) }
        withExtendedLifetime(dropped) {}  // elements release their resources here, outside the lock
    }

    // MARK: Request side

    /// One element from the kernel. Returns false if nobody will take it (the
    /// stream ended); the element is then dropped, which releases it.
    @discardableResult
    func deliver(_ element: Element, requestContinues: Bool) -> Bool {
        var rejected: Element? = nil
        var cancel: UInt64 = 0
        let waiter = state.withLock { state -> UnsafeContinuation<Element?, any Error>? in
            if state.end != nil {
                rejected = element
                return nil
            }
            if let waiter = state.waiter {
                // The wait is over now, not when the consumer runs again: a
                // timer firing in between must not end the stream.
                state.waiter = nil
                state.waitStarted = nil
                state.timedWait &+= 1
                return waiter
            }
            state.queue.append(element)
            if state.queue.count >= highWater && requestContinues && state.armed && !state.paused {
                state.paused = true
                cancel = state.userData
            }
            return nil
        }
        if cancel != 0 { core.requestCancellation(cancel) }
        if let waiter { resumeAcrossThreads(waiter, with: .success(element)) }
        return rejected == nil
    }

    /// The kernel ended the request (its completion without `F_MORE`) and
    /// nothing is wrong: arm it again unless the stream is over, the queue is
    /// full, or resources are short.
    func requestEnded() {
        let mustArm = state.withLock { state -> Bool in
            state.armed = false
            state.paused = false
            return claimRearm(&state)
        }
        if mustArm { submit() }
    }

    /// The request ended for lack of a resource the consumer gives back
    /// (provided buffers); ``resourcesReturned()`` re-arms it.
    func waitForResources() {
        state.withLock { state in
            state.armed = false
            state.paused = false
            state.waitingForResources = true
        }
    }

    /// Resources came back: re-arm if the stream is waiting for them.
    func resourcesReturned() {
        let mustArm = state.withLock { state -> Bool in
            guard state.waitingForResources else { return false }
            state.waitingForResources = false
            return claimRearm(&state)
        }
        if mustArm { submit() }
    }

    /// Whether the stream still waits for resources.
    var isWaitingForResources: Bool { state.withLock { $0.waitingForResources && $0.end == nil } }

    /// Ends the stream: normally with nil, or with `error` once the queue is
    /// drained.
    func finish(throwing error: (any Error)?) {
        var idleTimer: UInt64 = 0
        let waiter = state.withLock { state -> UnsafeContinuation<Element?, any Error>? in
            state.armed = false
            if state.end == nil { state.end = error.map { .failure($0) } ?? .success(()) }
            if state.idleTimerArmed { idleTimer = state.idleTimer }
            guard state.queue.isEmpty, let waiter = state.waiter else { return nil }
            state.waiter = nil
            state.waitStarted = nil
            state.timedWait &+= 1
            return waiter
        }
        if idleTimer != 0 { core.requestCancellation(idleTimer) }
        if let waiter { resumeAcrossThreads(waiter, with: Self.end(error)) }
    }

    /// What a waiting consumer gets at the end: nil, or the error.
    private static func end(_ error: (any Error)?) -> Result<Element?, any Error> {
        error.map { .failure($0) } ?? .success(nil)
    }

    // MARK: Arming

    /// Marks the request armed if it should be re-armed now; the caller then
    /// calls ``submit()`` outside the lock.
    private func claimRearm(_ state: inout State) -> Bool {
        guard state.started, state.end == nil, !state.armed, !state.waitingForResources,
            state.queue.count < highWater
        else { return false }
        state.armed = true
        return true
    }

    private func submit() {
        let userData = arm(self)
        let cancel = state.withLock { state -> Bool in
            state.userData = userData
            // Stopped (or paused) while the request was being handed over.
            return state.armed && (state.end != nil || state.paused)
        }
        if cancel { core.requestCancellation(userData) }
    }
}

/// A stream whose consumer can be cancelled while it waits.
private protocol CancellableConsumer: AnyObject {
    func consumerCancelled()
}

extension MultishotStream: CancellableConsumer {
    fileprivate func consumerCancelled() { stop(with: CancellationError()) }
}

/// What a stream's cancellation hook runs: ends the stream of a consumer
/// whose task was cancelled while it waited.
private let stopStreamOfCancelledConsumer: @convention(c) (_ stream: UnsafeMutableRawPointer?, _ unused: UInt64) -> Void = {
    stream, _ in
    // Only streams register this hook (see `MultishotStream.next()`).
    (Unmanaged<AnyObject>.fromOpaque(stream!).takeUnretainedValue() as! any CancellableConsumer).consumerCancelled()
}
