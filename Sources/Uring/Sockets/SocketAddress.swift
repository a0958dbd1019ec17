import Glibc

/// The address of a socket: IPv4 or IPv6 with a port, or a Unix-domain path.
///
/// ```swift
/// let local = try SocketAddress(ip: "127.0.0.1", port: 8080)
/// let any6 = try SocketAddress(ip: "::", port: 0)
/// let unix = try SocketAddress(unixPath: "/run/app.sock")
/// print(local)  // 127.0.0.1:8080
/// ```
///
/// It prints the way people write addresses: `127.0.0.1:8080`,
/// `[::1]:8080`, `unix:/run/app.sock`.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// The kind of address.
    public enum Family: Sendable, Hashable {
        /// IPv4 (`AF_INET`).
        case ipv4
        /// IPv6 (`AF_INET6`).
        case ipv6
        /// Unix domain (`AF_UNIX`).
        case unix
    }

    /// The raw `sockaddr` bytes, exactly `length` long.
    let bytes: [UInt8]

    /// Creates an IPv4 or IPv6 address from its text form (`"10.0.0.1"`,
    /// `"::1"`) and a port.
    ///
    /// - Throws: ``UringError`` (``UringError/Kind/invalidArgument``) naming
    ///   the text when it is neither.
    public init(ip: String, port: UInt16) throws(UringError) {
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, ip, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, ip, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = port.bigEndian
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        throw UringError(
            .invalidArgument, operation: .socket, errno: .invalidArgument,
            detail: "'\(ip)' is not an IPv4 or IPv6 address")
    }

    /// The IPv4 loopback address, `127.0.0.1`, with `port`.
    public static func loopback(port: UInt16) -> SocketAddress {
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = port.bigEndian
        v4.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return SocketAddress(raw: withUnsafeBytes(of: &v4) { Array($0) })
    }

    /// Creates a Unix-domain address. A path starting with a NUL byte names
    /// an abstract socket (no file).
    ///
    /// - Throws: ``UringError`` (``UringError/Kind/invalidArgument``) when
    ///   the path is empty or longer than 107 bytes.
    public init(unixPath path: String) throws(UringError) {
        var address = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let utf8 = Array(path.utf8)
        guard !utf8.isEmpty, utf8.count < capacity else {
            throw UringError(
                .invalidArgument, operation: .socket, errno: .invalidArgument,
                detail: "a Unix socket path must have 1 to \(capacity - 1) bytes; '\(path)' has \(utf8.count)")
        }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in utf8.enumerated() { raw[i] = byte }
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        // Abstract names are exactly as long as given; paths keep their NUL.
        let length = pathOffset + utf8.count + (utf8[0] == 0 ? 0 : 1)
        bytes = withUnsafeBytes(of: &address) { Array($0.prefix(length)) }
    }

    /// Wraps `sockaddr` bytes the kernel produced.
    init(raw: [UInt8]) {
        bytes = raw
    }

    /// Reads an address the kernel wrote into `storage` (`length` bytes).
    init(storage: UnsafeRawPointer, length: Int) {
        bytes = Array(UnsafeRawBufferPointer(start: storage, count: max(0, min(length, MemoryLayout<sockaddr_storage>.size))))
    }

    /// The address family.
    public var family: Family {
        switch rawFamily {
        case Int32(AF_INET): .ipv4
        case Int32(AF_INET6): .ipv6
        default: .unix
        }
    }

    var rawFamily: Int32 {
        guard bytes.count >= 2 else { return Int32(AF_UNSPEC) }
        return Int32(bytes.withUnsafeBytes { $0.loadUnaligned(as: sa_family_t.self) })
    }

    /// The port of an IP address (nil for Unix-domain addresses).
    public var port: UInt16? {
        switch family {
        case .ipv4: bytes.withUnsafeBytes { UInt16(bigEndian: $0.loadUnaligned(as: sockaddr_in.self).sin_port) }
        case .ipv6: bytes.withUnsafeBytes { UInt16(bigEndian: $0.loadUnaligned(as: sockaddr_in6.self).sin6_port) }
        case .unix: nil
        }
    }

    /// The host part as text: `127.0.0.1`, `::1`, or the Unix path.
    public var host: String {
        switch family {
        case .ipv4:
            let address = bytes.withUnsafeBytes { $0.loadUnaligned(as: sockaddr_in.self) }.sin_addr
            return withUnsafeBytes(of: address) { Self.text(family: AF_INET, $0.baseAddress!) }
        case .ipv6:
            let address = bytes.withUnsafeBytes { $0.loadUnaligned(as: sockaddr_in6.self) }.sin6_addr
            return withUnsafeBytes(of: address) { Self.text(family: AF_INET6, $0.baseAddress!) }
        case .unix:
            let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
            guard bytes.count > pathOffset else { return "" }
            var path = bytes[pathOffset...]
            if path.first == 0 { return "@" + String(decoding: path.dropFirst(), as: UTF8.self) }
            if let end = path.firstIndex(of: 0) { path = path[..<end] }
            return String(decoding: path, as: UTF8.self)
        }
    }

    private static func text(family: Int32, _ address: UnsafeRawPointer) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(family, address, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `127.0.0.1:8080`, `[::1]:8080` or `unix:/path`.
    public var description: String {
        switch family {
        case .ipv4: "\(host):\(port ?? 0)"
        case .ipv6: "[\(host)]:\(port ?? 0)"
        case .unix: "unix:\(host)"
        }
    }

    /// The `AF_*` domain for a new socket of this family.
    var domain: Int32 { rawFamily }
}

/// A `sockaddr` the kernel reads or writes while a request is in flight,
/// kept at one address until the completion (it is the request's
/// `keepAlive`).
final class SocketAddressBox: @unchecked Sendable {
    // `@unchecked Sendable`: the kernel writes `storage`/`length` only while
    // the request is in flight; Swift reads them only after its completion.
    let storage: UnsafeMutablePointer<sockaddr_storage>
    let length: UnsafeMutablePointer<socklen_t>

    /// Room for the kernel to write an address.
    init() {
        storage = .allocate(capacity: 1)
        storage.initialize(to: sockaddr_storage())
        length = .allocate(capacity: 1)
        length.initialize(to: socklen_t(MemoryLayout<sockaddr_storage>.size))
    }

    /// A copy of `address` for the kernel to read.
    convenience init(_ address: SocketAddress) {
        self.init()
        address.bytes.withUnsafeBytes { UnsafeMutableRawPointer(storage).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        length.pointee = socklen_t(address.bytes.count)
    }

    deinit {
        storage.deallocate()
        length.deallocate()
    }

    var sockaddr: UnsafeMutablePointer<Glibc.sockaddr> {
        UnsafeMutableRawPointer(storage).assumingMemoryBound(to: Glibc.sockaddr.self)
    }

    /// The address the kernel wrote.
    var address: SocketAddress {
        SocketAddress(storage: storage, length: Int(length.pointee))
    }
}
