import CUring
import Glibc
import SystemPackage

/// What one ring sent another; see ``RingActor/messages``.
public enum RingMessage: Sendable {
    /// A number (``RingActor/send(_:to:)``); also a plain wake-up.
    case value(Int32)
    /// A value of any sendable type (``RingActor/send(object:to:)``).
    case object(any Sendable)
    /// A registered file, now in this ring's table (``RegisteredFile/send(to:)``).
    case file(IncomingRegisteredFile)
}

/// A registered file another ring sent, not yet claimed. ``take()`` moves it
/// out once; dropped unclaimed, it clears its slot.
public final class IncomingRegisteredFile: Sendable {
    private let slot: OwnedOnce
    private let ring: RingActor

    init(slot: Int32, ring: RingActor) {
        self.slot = OwnedOnce(slot, release: { [core = ring.core] in Registration.clearFileSlot($0, on: core) })
        self.ring = ring
    }

    /// Moves the file out of the box.
    ///
    /// - Throws: ``UringError`` (``UringError/Kind/invalidArgument``) if it
    ///   was already taken.
    public func take() throws(UringError) -> RegisteredFile {
        guard let slot = slot.take() else { throw .invalid(.message, "this registered file was already taken") }
        return RegisteredFile(slot: slot, path: nil, ring: ring)
    }
}

extension RingActor {
    /// Posts `value` into `target`'s completion queue (`IORING_OP_MSG_RING`):
    /// it wakes `target`'s thread if it sleeps, and arrives in
    /// `target.messages` as ``RingMessage/value(_:)``. This is how one ring
    /// per core hands work to another with no lock and no eventfd.
    ///
    /// - Throws: ``UringError`` naming `msg_ring`: kind
    ///   ``UringError/Kind/ringShutDown`` when `target` was shut down,
    ///   `EOVERFLOW` when its completion queue is full.
    public nonisolated(nonsending) func send(_ value: Int32, to target: RingActor) async throws {
        let endpoint = try target.messageTarget()
        _ = try await core.perform(.message, keepAlive: endpoint) {
            cu_prep_msg_ring_data(&$0, endpoint.fd, UInt32(bitPattern: value), MessageChannel.value)
        }
    }

    /// Hands `object` to `target`, where it arrives in `target.messages` as
    /// ``RingMessage/object(_:)``. The object is parked with `target` and its
    /// ticket travels through `target`'s completion queue, so values and
    /// objects keep the order in which they reach the kernel. (Registered
    /// files travel by another path in the kernel and may overtake them.)
    public nonisolated(nonsending) func send(object: some Sendable, to target: RingActor) async throws {
        let endpoint = try target.messageTarget()
        let mailbox = target.executor.mailbox
        let ticket = mailbox.park(object)
        do {
            _ = try await core.perform(.message, keepAlive: endpoint) {
                cu_prep_msg_ring_data(&$0, endpoint.fd, UInt32(bitPattern: ticket), MessageChannel.object)
            }
        } catch {
            _ = mailbox.unpark(ticket)
            throw error
        }
    }

    /// The messages other rings send to this one, in arrival order: values
    /// and objects in the order they were sent, files possibly ahead of them.
    ///
    /// Messages that arrive while nobody iterates wait in the ring's mailbox
    /// (without limit). Iterate from one task at a time; several waiting
    /// tasks are served in the order they began waiting.
    public nonisolated var messages: RingMessages { RingMessages(ring: self) }
}

extension RegisteredFile {
    /// Gives `target` its own reference to this file, in a free slot of its
    /// table (`IORING_OP_MSG_RING` with `IORING_MSG_SEND_FD`); it arrives in
    /// `target.messages` as ``RingMessage/file(_:)``. This file stays open
    /// here: close it to move the file rather than share it.
    ///
    /// - Throws: ``UringError`` naming `msg_ring` (`ENFILE` when `target` has
    ///   no table or no free slot).
    public func send(to target: RingActor) async throws {
        let endpoint = try target.messageTarget()
        let slot = self.slot
        _ = try await ring.core.perform(.message, about: .path(path), keepAlive: endpoint) {
            cu_prep_msg_ring_fd(&$0, endpoint.fd, slot, CU_FILE_INDEX_ALLOC, MessageChannel.file)
        }
    }
}

extension RingActor {
    /// The descriptor other rings message this one through; the message's
    /// request keeps it open until its completion.
    nonisolated func messageTarget() throws(UringError) -> MessageEndpoint {
        guard let endpoint = core.messageTarget() else { throw .shutDown(.message) }
        return endpoint
    }
}

/// Which of the engine's message tags carries which kind of message.
enum MessageChannel {
    static let value = RingCore.messageTags.upperBound
    static let object = RingCore.messageTags.upperBound - 1
    static let file = RingCore.messageTags.lowerBound
}

/// A ring's incoming messages; see ``RingActor/messages``.
public struct RingMessages: AsyncSequence, Sendable {
    /// One message.
    public typealias Element = RingMessage
    /// `CancellationError`, or ``UringError`` once the ring is gone.
    public typealias Failure = any Error

    let ring: RingActor

    /// Reads the mailbox.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(ring: ring) }

    /// Produces messages as they arrive.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let ring: RingActor

        /// The next message; the sequence never ends while the ring lives.
        public nonisolated(nonsending) mutating func next() async throws -> RingMessage? {
            try await ring.executor.mailbox.next(ring: ring)
        }

        /// The next message, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> RingMessage? {
            try await ring.executor.mailbox.next(ring: ring)
        }
    }
}

/// Messages delivered to a ring and the tasks waiting for them.
final class Mailbox: Sendable {
    private enum Arrival: Sendable {
        case value(Int32)
        case object(Int32)
        case file(Int32)
    }

    private struct State: Sendable {
        var arrivals = FIFO<Arrival>()
        var parked: [Int32: any Sendable] = [:]
        var nextTicket: Int32 = 0
        var waiters: [(id: UInt64, continuation: UnsafeContinuation<Arrival?, any Error>)] = []
        var nextWaiter: UInt64 = 0
        var closed = false
    }

    private let state = Locked(State())

    /// Keeps `object` until its ticket arrives; returns the ticket.
    func park(_ object: any Sendable) -> Int32 {
        state.withLock { state in
            repeat { state.nextTicket = state.nextTicket == .max ? 0 : state.nextTicket + 1 }
            while state.parked[state.nextTicket] != nil
            state.parked[state.nextTicket] = object
            return state.nextTicket
        }
    }

    func unpark(_ ticket: Int32) -> (any Sendable)? {
        state.withLock { $0.parked.removeValue(forKey: ticket) }
    }

    /// A message completion reaped on the ring thread.
    func receive(tag: UInt64, result: Int32) {
        let arrival: Arrival
        switch tag {
        case MessageChannel.value: arrival = .value(result)
        case MessageChannel.object: arrival = .object(result)
        default:
            guard result >= 0 else { return }
            arrival = .file(result)
        }
        let waiter = state.withLock { state -> UnsafeContinuation<Arrival?, any Error>? in
            if state.waiters.isEmpty {
                state.arrivals.append(arrival)
                return nil
            }
            return state.waiters.removeFirst().continuation
        }
        waiter.map { resumeAcrossThreads($0, with: .success(arrival)) }
    }

    /// The ring is shutting down: end every wait.
    func close() {
        let waiters = state.withLock { state in
            state.closed = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
    }

    nonisolated(nonsending) func next(ring: RingActor) async throws -> RingMessage? {
        try Task.checkCancellation()
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        // Code on an actor waits through a function isolated to it, so its
        // continuation does not resume on the global pool (see
        // `RingCore.completion(of:)`).
        let isolation = #isolation
        let arrival =
            if let isolation {
                try await wait(as: id, isolatedTo: isolation)
            } else {
                try await withTaskCancellationHandler {
                    try await withUnsafeThrowingContinuation { park(id, $0) }
                } onCancel: {
                    cancelWait(id)
                }
            }
        switch arrival {
        case nil: return nil
        case .value(let value)?: return .value(value)
        case .object(let ticket)?:
            guard let object = unpark(ticket) else { return .value(0) }
            return .object(object)
        case .file(let slot)?:
            return .file(IncomingRegisteredFile(slot: slot, ring: ring))
        }
    }

    private func wait(as id: UInt64, isolatedTo isolation: isolated any Actor) async throws -> Arrival? {
        try await withTaskCancellationHandler {
            _ = isolation  // this capture is what isolates the closure
            return try await withUnsafeThrowingContinuation { park(id, $0) }
        } onCancel: {
            cancelWait(id)
        }
    }

    /// Resumes `continuation` with the next arrival, or queues it as waiter `id`.
    private func park(_ id: UInt64, _ continuation: UnsafeContinuation<Arrival?, any Error>) {
        let ready = state.withLock { state -> Result<Arrival?, any Error>? in
            if let arrival = state.arrivals.popFirst() { return .success(arrival) }
            if state.closed { return .success(nil) }
            // A cancellation that came before this waiter is queued found no
            // waiter to cancel; seen here, under the same lock, it is not lost.
            if Task.isCancelled { return .failure(CancellationError()) }
            state.waiters.append((id: id, continuation: continuation))
            return nil
        }
        if let ready { continuation.resume(with: ready) }
    }

    /// Resumes waiter `id` with `CancellationError`, if it still waits.
    private func cancelWait(_ id: UInt64) {
        let waiter = state.withLock { state -> UnsafeContinuation<Arrival?, any Error>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index).continuation
        }
        waiter?.resume(throwing: CancellationError())
    }
}
