import CUring
import Glibc
import SystemPackage

/// A control message (ancillary data) sent or received alongside a socket
/// message's bytes: descriptors passed over a Unix socket, an IP packet's
/// destination address or traffic class, a receive timestamp, and so on.
///
/// ```swift
/// // Pass three open files to the peer in one message.
/// _ = try await connection.send(header, control: [.descriptors([a, b, c])])
/// // Ask for each datagram's time-to-live, then read it from the message.
/// try await socket.setOption(.receiveTimeToLive, to: true)
/// let message = try await socket.receiveMessage(into: &buffer)
/// let ttl = message.controlMessages.first { $0.type == IP_TTL }?.value(as: Int32.self)
/// ```
///
/// The level and type are the C values (`SOL_SOCKET`, `IPPROTO_IP`,
/// `SCM_RIGHTS`, `IP_TTL` …), as `cmsg(3)` and the protocol manuals name
/// them; the data is the message's payload without its header.
public struct ControlMessage: Sendable, Hashable {
    /// The protocol level, such as `SOL_SOCKET` or `IPPROTO_IP`.
    public var level: Int32
    /// The message type within its level, such as `SCM_RIGHTS` or `IP_TTL`.
    public var type: Int32
    /// The payload.
    public var data: [UInt8]

    /// A message of `data` at `level` and `type`.
    public init(level: Int32, type: Int32, data: [UInt8]) {
        self.level = level
        self.type = type
        self.data = data
    }

    /// A message whose payload is the bytes of `value` (an `int`, a
    /// `struct in_pktinfo`, …).
    public init<Value: BitwiseCopyable>(level: Int32, type: Int32, value: Value) {
        let data = withUnsafeBytes(of: value) { Array($0) }
        self.init(level: level, type: type, data: data)
    }

    /// Descriptors to pass to the peer of a Unix-domain socket
    /// (`SCM_RIGHTS`). The peer receives new descriptors for the same open
    /// files; the caller keeps its own, which must stay open until the send
    /// returns. The kernel takes at most 253 per message.
    public static func descriptors(_ descriptors: [FileDescriptor]) -> ControlMessage {
        var data: [UInt8] = []
        data.reserveCapacity(descriptors.count * 4)
        for descriptor in descriptors { withUnsafeBytes(of: descriptor.rawValue) { data.append(contentsOf: $0) } }
        return ControlMessage(level: SOL_SOCKET, type: Int32(SCM_RIGHTS), data: data)
    }

    /// The payload read as a `Value`, or nil if it has fewer bytes than one.
    public func value<Value: BitwiseCopyable>(as type: Value.Type) -> Value? {
        guard data.count >= MemoryLayout<Value>.size else { return nil }
        return data.withUnsafeBytes { $0.loadUnaligned(as: Value.self) }
    }
}

/// A message received with its metadata; see
/// ``DatagramSocket/receiveMessage(into:controlCapacity:)`` and
/// ``StreamConnection/receiveMessage(into:controlCapacity:)``.
public struct ReceivedMessage: Sendable {
    /// The bytes received into the buffer; for a stream, 0 once the peer has
    /// closed its sending side.
    public let count: Int
    /// The sender's address (a datagram's source; nil on a connected
    /// stream or an unnamed Unix socket).
    public let sender: SocketAddress?
    /// Whether a datagram was longer than the buffer and cut (`MSG_TRUNC`).
    public let truncated: Bool
    /// Whether control data did not fit in `controlCapacity` and was lost
    /// (`MSG_CTRUNC`); descriptors that did not fit were closed by the kernel.
    public let controlTruncated: Bool
    /// The control messages received, other than those carrying descriptors.
    public let controlMessages: [ControlMessage]
    /// The descriptors passed with the message (`SCM_RIGHTS`, and a pidfd
    /// with `SCM_PIDFD`), close-on-exec.
    public let descriptors: ReceivedDescriptors
}

/// Descriptors received in a message. They are closed when this object
/// goes away unless taken first, so ignoring them leaks nothing.
public final class ReceivedDescriptors: Sendable {
    private let owned: Locked<[OwnedDescriptor]>

    init(_ descriptors: [OwnedDescriptor]) {
        owned = Locked(descriptors)
    }

    /// How many descriptors are still here to take.
    public var count: Int { owned.withLock { $0.count } }

    /// Takes the descriptors: the caller owns them from now on and must
    /// close them. A second call returns an empty array.
    public func take() -> [FileDescriptor] {
        let taken = owned.withLock { owned -> [OwnedDescriptor] in
            defer { owned = [] }
            return owned
        }
        return taken.map { FileDescriptor(rawValue: $0.detach()) }
    }
}

extension MessageBox {
    /// The received message's metadata, after its completion.
    func receivedMessage(count: Int) -> ReceivedMessage {
        let (messages, descriptors) = receivedControl()
        return ReceivedMessage(
            count: count, sender: senderAddress, truncated: truncated, controlTruncated: controlTruncated,
            controlMessages: messages, descriptors: ReceivedDescriptors(descriptors))
    }
}

extension IOBuffer where Self: Copyable {
    /// `buffers` as iovecs for a vectored request, and their total size.
    ///
    /// Sound while the caller keeps `buffers` lent to the request (inout or
    /// a parameter alive until the completion); see ``IOBuffer``.
    static func vectors(reading buffers: [Self]) -> [iovec] {
        buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.stableAddress()), iov_len: $0.count) }
    }

    /// Writable counterpart of ``vectors(reading:)``.
    static func vectors(writing buffers: inout [Self]) -> [iovec] {
        var vectors: [iovec] = []
        vectors.reserveCapacity(buffers.count)
        for i in buffers.indices {
            vectors.append(iovec(iov_base: buffers[i].stableMutableAddress(), iov_len: buffers[i].count))
        }
        return vectors
    }
}
