import CUring
import Glibc
import SystemPackage

/// Readiness of a descriptor, as `poll(2)` reports it.
public struct PollEvents: OptionSet, Sendable, Hashable, CustomStringConvertible {
    /// The `POLL*` bits.
    public let rawValue: UInt32

    /// Events from their `POLL*` bits.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Data can be read (`POLLIN`).
    public static let readable = PollEvents(rawValue: UInt32(POLLIN))
    /// Data can be written (`POLLOUT`).
    public static let writable = PollEvents(rawValue: UInt32(POLLOUT))
    /// Urgent data can be read (`POLLPRI`).
    public static let priority = PollEvents(rawValue: UInt32(POLLPRI))
    /// The peer closed its sending side (`POLLRDHUP`).
    public static let peerClosedWriting = PollEvents(rawValue: 0x2000)
    /// An error is pending (`POLLERR`; always reported).
    public static let error = PollEvents(rawValue: UInt32(POLLERR))
    /// The descriptor hung up (`POLLHUP`; always reported).
    public static let hangUp = PollEvents(rawValue: UInt32(POLLHUP))

    /// The set events by name, such as `[readable, hangUp]`.
    public var description: String {
        let names: [(PollEvents, String)] = [
            (.readable, "readable"), (.writable, "writable"), (.priority, "priority"),
            (.peerClosedWriting, "peerClosedWriting"), (.error, "error"), (.hangUp, "hangUp"),
        ]
        return "[" + names.filter { contains($0.0) }.map(\.1).joined(separator: ", ") + "]"
    }
}

extension RingActor {
    /// Waits until `descriptor` is ready for one of `events` and returns
    /// what it is ready for (`IORING_OP_POLL_ADD`).
    ///
    /// For descriptors the library does not own, such as one from a C
    /// library: the caller keeps `descriptor` open until this returns.
    /// Cancelling the task cancels the poll.
    public nonisolated(nonsending) func poll(
        _ descriptor: FileDescriptor, for events: PollEvents
    ) async throws -> PollEvents {
        let fd = descriptor.rawValue
        let mask = events.rawValue
        let result = try await core.perform(.poll) { io_uring_prep_poll_add(&$0, fd, mask) }
        return PollEvents(rawValue: UInt32(bitPattern: result))
    }

    /// Readiness events of `descriptor` as they happen, from one multishot
    /// poll request: an element each time the descriptor becomes ready for
    /// one of `events`.
    ///
    /// Readiness is reported on each wake-up, not held like a level: after
    /// an element, consume what is ready (read until `EAGAIN`) before
    /// waiting for the next. At most 16 events wait unconsumed; beyond that
    /// the request pauses until the consumer catches up.
    ///
    /// The caller keeps `descriptor` open while iterating.
    public nonisolated func readiness(of descriptor: FileDescriptor, for events: PollEvents) -> Readiness {
        Readiness(core: core, fd: descriptor.rawValue, events: events)
    }
}

/// A descriptor's readiness events; see ``RingActor/readiness(of:for:)``.
public struct Readiness: AsyncSequence, Sendable {
    /// What the descriptor became ready for.
    public typealias Element = PollEvents
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    let core: RingCore
    let fd: Int32
    let events: PollEvents

    /// Starts polling (on the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        let core = self.core
        let fd = self.fd
        let mask = events.rawValue
        return AsyncIterator(
            consumer: StreamConsumer {
                core.multishotStream(
                    .poll, highWater: 16,
                    prepare: { io_uring_prep_poll_multishot(&$0, fd, mask) },
                    interpret: { result, _ in
                        result >= 0 ? .element(PollEvents(rawValue: UInt32(bitPattern: result))) : .standard
                    })
            })
    }

    /// Produces the events.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: StreamConsumer<PollEvents>

        /// The next event; the sequence ends only on an error.
        public nonisolated(nonsending) mutating func next() async throws -> PollEvents? {
            try await consumer.next()
        }

        /// The next event, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> PollEvents? {
            try await consumer.next()
        }
    }
}
