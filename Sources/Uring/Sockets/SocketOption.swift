import CUring
import Glibc
import SystemPackage

/// A socket option with a Swift type for its value, for
/// ``StreamConnection/setOption(_:to:)`` and ``StreamConnection/option(_:)``
/// (and the same methods of ``StreamListener`` and ``DatagramSocket``).
///
/// ```swift
/// try await connection.setOption(.keepAlive, to: true)
/// try await connection.setOption(.keepAliveIdle, to: .seconds(60))
/// let size = try await connection.option(.receiveBufferSize)
/// ```
///
/// Options are set through the ring as socket commands on kernels that have
/// them (6.7+), and with `setsockopt(2)` before. They are read through the
/// ring on those kernels for `SOL_SOCKET` options (the only level the
/// kernel's command reads), and with `getsockopt(2)` otherwise, which never
/// waits.
public struct SocketOption<Value: Sendable>: Sendable, CustomStringConvertible {
    let level: Int32
    let name: Int32
    let label: String
    let codec: SocketOptionCodec

    /// The option's C name, such as `SO_KEEPALIVE`.
    public var description: String { label }
}

/// How an option's value is laid out for the kernel.
enum SocketOptionCodec: Sendable {
    /// An `int` that is 0 or not.
    case flag
    /// An `int`.
    case integer
    /// An `int` of seconds.
    case seconds
    /// A `struct linger`.
    case linger
}

extension SocketOption where Value == Bool {
    /// Lets a new socket bind an address whose old connections linger in
    /// `TIME_WAIT` (`SO_REUSEADDR`).
    public static var reuseAddress: Self { Self(level: SOL_SOCKET, name: SO_REUSEADDR, label: "SO_REUSEADDR", codec: .flag) }
    /// Lets several sockets of one user listen on the same address and port,
    /// sharing its connections (`SO_REUSEPORT`).
    public static var reusePort: Self { Self(level: SOL_SOCKET, name: SO_REUSEPORT, label: "SO_REUSEPORT", codec: .flag) }
    /// Sends keep-alive probes on an idle connection (`SO_KEEPALIVE`); see
    /// ``keepAliveIdle``, ``keepAliveInterval`` and ``keepAliveCount``.
    public static var keepAlive: Self { Self(level: SOL_SOCKET, name: SO_KEEPALIVE, label: "SO_KEEPALIVE", codec: .flag) }
    /// Allows sending datagrams to a broadcast address (`SO_BROADCAST`).
    public static var broadcast: Self { Self(level: SOL_SOCKET, name: SO_BROADCAST, label: "SO_BROADCAST", codec: .flag) }
    /// Sends small segments at once instead of waiting to coalesce them
    /// (`TCP_NODELAY`, Nagle's algorithm off).
    public static var noDelay: Self {
        Self(level: Int32(IPPROTO_TCP), name: TCP_NODELAY, label: "TCP_NODELAY", codec: .flag)
    }
    /// An IPv6 socket accepts IPv6 only, not IPv4-mapped addresses
    /// (`IPV6_V6ONLY`).
    public static var ipv6Only: Self {
        Self(level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, label: "IPV6_V6ONLY", codec: .flag)
    }
    /// Delivers each received IPv4 datagram's destination address and
    /// arriving interface as an `IP_PKTINFO` control message (see
    /// ``DatagramSocket/receiveMessage(into:controlCapacity:)``).
    public static var receivePacketInfo: Self {
        Self(level: Int32(IPPROTO_IP), name: IP_PKTINFO, label: "IP_PKTINFO", codec: .flag)
    }
    /// Delivers each received IPv4 datagram's time-to-live as an `IP_TTL`
    /// control message (`IP_RECVTTL`).
    public static var receiveTimeToLive: Self {
        Self(level: Int32(IPPROTO_IP), name: IP_RECVTTL, label: "IP_RECVTTL", codec: .flag)
    }
    /// An on/off option this type has no name for, by its C level and
    /// name: `.flag(level: SOL_SOCKET, name: SO_PASSCRED)`.
    public static func flag(level: Int32, name: Int32) -> Self {
        Self(level: level, name: name, label: "option \(level)/\(name)", codec: .flag)
    }
}

extension SocketOption where Value == Int {
    /// An integer option this type has no name for, by its C level and
    /// name: `.integer(level: IPPROTO_IP, name: IP_TTL)`.
    public static func integer(level: Int32, name: Int32) -> Self {
        Self(level: level, name: name, label: "option \(level)/\(name)", codec: .integer)
    }
}

extension SocketOption where Value == Int {
    /// The receive buffer's size in bytes (`SO_RCVBUF`). The kernel doubles
    /// what is set, for its bookkeeping, and reports the doubled size.
    public static var receiveBufferSize: Self { Self(level: SOL_SOCKET, name: SO_RCVBUF, label: "SO_RCVBUF", codec: .integer) }
    /// The send buffer's size in bytes (`SO_SNDBUF`); doubled like
    /// ``receiveBufferSize``.
    public static var sendBufferSize: Self { Self(level: SOL_SOCKET, name: SO_SNDBUF, label: "SO_SNDBUF", codec: .integer) }
    /// Unanswered keep-alive probes before the connection is dropped
    /// (`TCP_KEEPCNT`).
    public static var keepAliveCount: Self {
        Self(level: Int32(IPPROTO_TCP), name: TCP_KEEPCNT, label: "TCP_KEEPCNT", codec: .integer)
    }
}

extension SocketOption where Value == Duration {
    /// Idle time before the first keep-alive probe (`TCP_KEEPIDLE`), in
    /// whole seconds (a fraction rounds up).
    public static var keepAliveIdle: Self {
        Self(level: Int32(IPPROTO_TCP), name: TCP_KEEPIDLE, label: "TCP_KEEPIDLE", codec: .seconds)
    }
    /// Time between keep-alive probes (`TCP_KEEPINTVL`), in whole seconds
    /// (a fraction rounds up).
    public static var keepAliveInterval: Self {
        Self(level: Int32(IPPROTO_TCP), name: TCP_KEEPINTVL, label: "TCP_KEEPINTVL", codec: .seconds)
    }
}

extension SocketOption where Value == Duration? {
    /// How long closing waits for unsent data (`SO_LINGER`), in whole
    /// seconds, a fraction rounding up: `nil` (the default) closes at once
    /// and sends the rest in the background; zero resets the connection,
    /// discarding it.
    public static var linger: Self { Self(level: SOL_SOCKET, name: SO_LINGER, label: "SO_LINGER", codec: .linger) }
}

extension SocketOption {
    /// The value as the kernel takes it: two `int`s (a `struct linger`, or
    /// an `int` and unused space) and how many bytes count.
    func encode(_ value: Value) -> (words: (Int32, Int32), length: Int32) {
        switch codec {
        case .flag: return (((value as? Bool) == true ? 1 : 0, 0), 4)
        case .integer: return ((Int32(clamping: value as? Int ?? 0), 0), 4)
        case .seconds: return ((Self.wholeSeconds(value as? Duration ?? .zero), 0), 4)
        case .linger:
            let duration = (value as? Duration?) ?? nil
            return ((duration == nil ? 0 : 1, duration.map(Self.wholeSeconds) ?? 0), 8)
        }
    }

    /// Whole seconds, rounding a fraction up: half a second of linger must
    /// not become zero, which would reset the connection on close.
    static func wholeSeconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        return Int32(clamping: attoseconds > 0 ? seconds + 1 : seconds)
    }

    /// The value from what the kernel returned.
    func decode(_ words: (Int32, Int32)) -> Value {
        let value: any Sendable
        switch codec {
        case .flag: value = words.0 != 0
        case .integer: value = Int(words.0)
        case .seconds: value = Duration.seconds(words.0)
        case .linger: value = words.0 == 0 ? Duration?.none : Duration?.some(.seconds(words.1))
        }
        // Each static constructor pairs a codec with the one Value it decodes to.
        return value as! Value
    }

    /// Checks a value the kernel would take but misread.
    func validate(_ value: Value, address: SocketAddress?) throws(UringError) {
        let negative: Bool
        switch codec {
        case .flag: negative = false
        case .integer: negative = (value as? Int ?? 0) < 0
        case .seconds: negative = (value as? Duration ?? .zero) < .zero
        case .linger: negative = ((value as? Duration?) ?? nil).map { $0 < .zero } ?? false
        }
        if negative {
            throw UringError.invalid(.socketOption, "\(label) cannot be negative").about(address)
        }
    }
}

extension SocketIO {
    /// Sets a typed option (see ``SocketOption``).
    nonisolated(nonsending) func setOption<Value>(_ option: SocketOption<Value>, to value: Value) async throws {
        try option.validate(value, address: address)
        let (words, length) = option.encode(value)
        let box = KernelMemory<(Int32, Int32)>(words)
        if core.isSupported(.socketOption) {
            do {
                try await setOptionThroughRing(option, box, length: length)
                return
            } catch let error as UringError where error.errno == .notSupported || error.errno == .invalidArgument {
                // Kernels before 6.7 have the command opcode but no socket
                // commands; a bad value gets EINVAL again below, by name.
            } catch var error as UringError {
                error.detail = option.label
                throw error
            }
        }
        if setsockopt(fd, option.level, option.name, box.pointer, socklen_t(length)) != 0 {
            throw UringError(.system, operation: .socketOption, errno: Errno(rawValue: Glibc.errno), detail: option.label).about(address)
        }
    }

    /// Sets an option with the ring's socket command only (no fallback), so
    /// tests can check the command's layout on kernels that have it.
    nonisolated(nonsending) func setOptionThroughRing<Value>(
        _ option: SocketOption<Value>, _ box: KernelMemory<(Int32, Int32)>, length: Int32
    ) async throws {
        _ = try await core.perform(.socketOption, about: .address(address), keepAlive: box) {
            cu_prep_setsockopt(&$0, fd, option.level, option.name, box.pointer, length)
        }
    }

    /// Reads an option with the ring's socket command only (no fallback).
    nonisolated(nonsending) func optionThroughRing<Value>(_ option: SocketOption<Value>) async throws -> Value {
        let box = KernelMemory<(Int32, Int32)>((0, 0))
        let length: Int32 = option.codec == .linger ? 8 : 4
        _ = try await core.perform(.socketOption, about: .address(address), keepAlive: box) {
            cu_prep_getsockopt(&$0, fd, option.level, option.name, box.pointer, length)
        }
        return option.decode(box.pointer.pointee)
    }

    /// Reads a typed option.
    nonisolated(nonsending) func option<Value>(_ option: SocketOption<Value>) async throws -> Value {
        if option.level == SOL_SOCKET && core.isSupported(.socketOption) {
            do {
                return try await optionThroughRing(option)
            } catch let error as UringError where error.errno == .notSupported || error.errno == .invalidArgument {
                // As for setting: no socket commands before 6.7.
            } catch var error as UringError {
                error.detail = option.label
                throw error
            }
        }
        let box = KernelMemory<(Int32, Int32)>((0, 0))
        var size = socklen_t(option.codec == .linger ? 8 : 4)
        if getsockopt(fd, option.level, option.name, box.pointer, &size) != 0 {
            throw UringError(.system, operation: .socketOption, errno: Errno(rawValue: Glibc.errno), detail: option.label).about(address)
        }
        return option.decode(box.pointer.pointee)
    }
}
