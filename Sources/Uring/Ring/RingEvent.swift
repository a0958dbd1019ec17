import SystemPackage

/// Something notable the library did on its own, without an operation of
/// the application's failing: the application learns of it only through
/// ``RingOptions/onEvent``.
///
/// The library never prints. Set ``RingOptions/onEvent`` to hear of these
/// events, or use the `UringLogging` module (the package's `Logging` trait)
/// to pass them to a swift-log `Logger`. Each is rare: a server that sees a
/// steady stream of them is short of descriptors, memory or buffers.
public enum RingEvent: Sendable, CustomStringConvertible {
    /// Accepting connections ran out of a resource (descriptors or kernel
    /// memory) and waits `retryAfter` before accepting again; connections
    /// wait in the listen backlog meanwhile (see ``IncomingConnections``).
    case acceptBackedOff(address: SocketAddress?, error: Errno, retryAfter: Duration)
    /// A receiving sequence (of a socket at `address`, or a pipe or file at
    /// `path`) found every buffer of its ``ReceiveBufferPool`` lent out, and
    /// waits for one to come back: consumers hold the chunks they receive
    /// for longer than the pool allows for. Reported once per pool until a
    /// buffer comes back; ``RingStatistics/receivePoolWaits`` counts every
    /// wait.
    case receivePoolExhausted(path: FilePath?, address: SocketAddress?, bufferCount: Int)
    /// A ring could not be created; the error is also thrown.
    case ringCreationFailed(UringError)
    /// A descriptor (of the file at `path` or the socket at `address`) was
    /// closed with the `close` system call on the closing task's thread,
    /// because its ring had shut down before the descriptor was closed.
    case descriptorClosedAfterShutdown(descriptor: FileDescriptor, path: FilePath?, address: SocketAddress?)
    /// The kernel dropped completions (its completion backlog could not
    /// grow); the operations they belonged to fail with
    /// ``UringError/Kind/completionLost``.
    case completionsDropped(total: UInt64)

    /// How much the event matters.
    public var severity: Severity {
        switch self {
        case .ringCreationFailed, .completionsDropped: .error
        case .acceptBackedOff, .receivePoolExhausted: .warning
        case .descriptorClosedAfterShutdown: .notice
        }
    }

    /// How much an event matters, in the levels logging libraries share.
    public enum Severity: Sendable, Hashable, Comparable {
        /// Worth knowing; nothing was lost.
        case notice
        /// Service is degraded until the cause goes away.
        case warning
        /// Something failed.
        case error
    }

    /// One line saying what happened.
    public var description: String {
        switch self {
        case .acceptBackedOff(let address, let error, let retryAfter):
            "accepting on \(address.map { "\($0)" } ?? "a listener") backs off for \(retryAfter): \(error)"
        case .receivePoolExhausted(let path, let address, let bufferCount):
            "receiving from \(Self.name(path, address, otherwise: "a descriptor")) waits for one of the pool's "
                + "\(bufferCount) buffers to come back"
        case .ringCreationFailed(let error):
            "a ring could not be created: \(error)"
        case .descriptorClosedAfterShutdown(let descriptor, let path, let address):
            "descriptor \(descriptor.rawValue) (\(Self.name(path, address, otherwise: "unnamed"))) was closed "
                + "synchronously: its ring had shut down"
        case .completionsDropped(let total):
            "the kernel has dropped \(total) completions; their operations failed"
        }
    }

    /// What an event is about, for its description.
    private static func name(_ path: FilePath?, _ address: SocketAddress?, otherwise: String) -> String {
        if let address { return "\(address)" }
        if let path { return "'\(path)'" }
        return otherwise
    }
}
