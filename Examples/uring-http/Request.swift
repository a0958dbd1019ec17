// Reading HTTP/1.1 request heads from a connection, incrementally and with
// limits: every way a client can get a head wrong ends in a status code.

import Uring

/// The parts of a request head this server acts on.
struct RequestHead {
    var method: String
    var target: String
    /// HTTP/1.1 keeps the connection by default, HTTP/1.0 does not; the
    /// `Connection` field's tokens override either.
    var keepAlive: Bool
    /// The body's length from `Content-Length` (0 when absent).
    var contentLength = 0
    /// A `Transfer-Encoding` field was present (this server handles none).
    var hasTransferEncoding = false
}

/// Why a head could not be taken: the status to answer with.
struct BadRequest: Error {
    var status: Int
    var reason: String
}

/// The limits a request must keep to.
struct RequestLimits: Sendable {
    /// The longest request target, in bytes (longer: 414).
    var maximumTarget = 8 * 1024
    /// The longest head, in bytes (longer: 431).
    var maximumHead = 32 * 1024
    /// The longest body read and discarded (longer: 413).
    var maximumBody = 1 << 20
    /// How long a client may take to send a whole head once it started.
    var headerTimeout = Duration.seconds(10)
    /// How long a kept-alive connection may wait for its next request.
    var keepAliveTimeout = Duration.seconds(15)
    /// How long one response may take to send.
    var sendTimeout = Duration.seconds(30)
}

/// What the next request on a connection turned out to be.
enum NextRequest {
    case head(RequestHead)
    /// The client closed the connection between requests.
    case closed
    /// The client went quiet: between requests (`idle`), or mid-head.
    case timedOut(idle: Bool)
}

/// Reads request heads (and discards bodies) from one connection's received
/// chunks, scanning each byte once.
struct RequestReader {
    private var chunks: ReceivedChunks.AsyncIterator
    private var pending: [UInt8] = []
    /// How many bytes of `pending` have been scanned for the head's end.
    private var scanned = 0
    /// Where the request line ends, once seen.
    private var lineEnd: Int?
    let limits: RequestLimits

    init(_ chunks: ReceivedChunks, limits: RequestLimits) {
        self.chunks = chunks.makeAsyncIterator()
        self.limits = limits
    }

    /// The next request's head. Throws ``BadRequest`` for a head to refuse,
    /// and the connection's errors.
    mutating func next() async throws -> NextRequest {
        if pending.isEmpty {
            // Between requests the sequence's own idle timeout (the
            // keep-alive timeout, one kernel timer per connection) bounds the
            // wait; a per-wait deadline would cost two requests per request.
            switch try await receive(within: nil) {
            case .bytes: break
            case .closed: return .closed
            case .timedOut: return .timedOut(idle: true)
            }
        }
        let deadline = RingClock.Instant.now + limits.headerTimeout
        while true {
            if let end = try scan() {
                let head = try RequestHead(pending[..<end], limits: limits)
                pending.removeFirst(end + 4)
                scanned = 0
                lineEnd = nil
                return .head(head)
            }
            switch try await receive(within: deadline - .now) {
            case .bytes: continue
            case .closed: return .closed  // gone mid-head: nobody to answer
            case .timedOut: return .timedOut(idle: false)
            }
        }
    }

    /// Reads and drops `count` body bytes.
    mutating func discard(_ count: Int) async throws -> Bool {
        var left = count
        let deadline = RingClock.Instant.now + limits.headerTimeout
        while true {
            let taken = min(left, pending.count)
            pending.removeFirst(taken)
            left -= taken
            if left == 0 { return true }
            guard case .bytes = try await receive(within: deadline - .now) else { return false }
        }
    }

    private enum Received { case bytes, closed, timedOut }

    private mutating func receive(within limit: Duration?) async throws -> Received {
        do {
            let chunk: ReceivedBytes?
            if let limit {
                chunk = try await withTimeout(limit) { try await chunks.next(isolation: #isolation) }
            } else {
                chunk = try await chunks.next(isolation: #isolation)
            }
            guard let chunk else { return .closed }
            pending.append(contentsOf: chunk)
            return .bytes
        } catch let error as UringError where error.kind == .timedOut {
            return .timedOut
        }
    }

    /// Looks at the bytes not scanned yet: the index of the CR LF CR LF that
    /// ends the head, if it arrived. Throws for a bare LF and for a request
    /// line or head over its limit.
    private mutating func scan() throws -> Int? {
        let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")
        while scanned < pending.count {
            let i = scanned
            scanned += 1
            guard pending[i] == lf else { continue }
            guard i > 0, pending[i - 1] == cr else { throw BadRequest(status: 400, reason: "bare LF in the request head") }
            if lineEnd == nil { lineEnd = i - 1 }
            if i >= 3 && pending[i - 2] == lf && pending[i - 3] == cr {
                guard i - 3 <= limits.maximumHead else { throw BadRequest(status: 431, reason: "request head too large") }
                return i - 3
            }
        }
        if lineEnd == nil && pending.count > limits.maximumTarget + 32 {
            throw BadRequest(status: 414, reason: "request target too long")
        }
        if pending.count > limits.maximumHead {
            throw BadRequest(status: 431, reason: "request head too large")
        }
        return nil
    }
}

extension RequestHead {
    /// Parses a head (without its final blank line), whose lines are known
    /// to end in CR LF.
    init(_ head: ArraySlice<UInt8>, limits: RequestLimits) throws {
        // Lines are walked in place: splitting the head into arrays of
        // lines and words cost six allocations per request.
        var rest = head
        let requestLine = Self.takeLine(&rest)
        let space = UInt8(ascii: " ")
        guard let firstSpace = requestLine.firstIndex(of: space),
            let secondSpace = requestLine[(firstSpace + 1)...].firstIndex(of: space),
            !requestLine[(secondSpace + 1)...].contains(space)
        else { throw BadRequest(status: 400, reason: "malformed request line") }
        let methodBytes = requestLine[..<firstSpace]
        let targetBytes = requestLine[(firstSpace + 1)..<secondSpace]
        let version = requestLine[(secondSpace + 1)...]
        guard !methodBytes.isEmpty, methodBytes.allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) })
        else { throw BadRequest(status: 400, reason: "malformed request line") }
        guard targetBytes.count <= limits.maximumTarget else { throw BadRequest(status: 414, reason: "request target too long") }
        guard targetBytes.first == UInt8(ascii: "/") else { throw BadRequest(status: 400, reason: "malformed request target") }
        guard version.elementsEqual("HTTP/1.1".utf8) || version.elementsEqual("HTTP/1.0".utf8) else {
            throw BadRequest(status: 400, reason: "unsupported HTTP version")
        }
        method = String(decoding: methodBytes, as: UTF8.self)
        target = String(decoding: targetBytes, as: UTF8.self)
        keepAlive = version.elementsEqual("HTTP/1.1".utf8)
        var contentLength: Int?
        while !rest.isEmpty {
            let line = Self.takeLine(&rest)
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                !line[..<colon].contains(where: { $0 == 32 || $0 == 9 }),
                !line.contains(where: { $0 < 32 && $0 != 9 })
            else { throw BadRequest(status: 400, reason: "malformed header field") }
            let name = line[..<colon]
            let value = trimmed(line[(colon + 1)...])
            // Compared byte by byte, with no String made per field.
            if name.equalsIgnoringCase("connection") {
                var tokens = value
                while !tokens.isEmpty {
                    let comma = tokens.firstIndex(of: UInt8(ascii: ",")) ?? tokens.endIndex
                    let token = trimmed(tokens[..<comma])
                    tokens = comma == tokens.endIndex ? tokens[comma...] : tokens[(comma + 1)...]
                    if token.equalsIgnoringCase("close") { keepAlive = false }
                    if token.equalsIgnoringCase("keep-alive") { keepAlive = true }
                }
            } else if name.equalsIgnoringCase("content-length") {
                guard !value.isEmpty, value.count <= 18, value.allSatisfy({ (48...57).contains($0) }),
                    let length = Int(String(decoding: value, as: UTF8.self)),
                    contentLength == nil || contentLength == length
                else { throw BadRequest(status: 400, reason: "malformed Content-Length") }
                contentLength = length
            } else if name.equalsIgnoringCase("transfer-encoding") {
                hasTransferEncoding = true
            }
        }
        self.contentLength = contentLength ?? 0
    }

    /// Takes the first line off `rest`, without its CR LF (every line but
    /// the head's last ends in CR LF; the last one's is part of the blank
    /// line that ended the head).
    private static func takeLine(_ rest: inout ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        guard let end = rest.firstIndex(of: UInt8(ascii: "\n")) else {
            defer { rest = rest[rest.endIndex...] }
            return rest
        }
        let line = rest[..<end]
        rest = rest[(end + 1)...]
        return line.last == UInt8(ascii: "\r") ? line.dropLast() : line
    }
}

extension ArraySlice<UInt8> {
    /// Whether these bytes spell `lowercased` (ASCII, lower case), ignoring
    /// the case of ASCII letters.
    func equalsIgnoringCase(_ lowercased: StaticString) -> Bool {
        guard count == lowercased.utf8CodeUnitCount else { return false }
        return lowercased.withUTF8Buffer { expected in
            zip(self, expected).allSatisfy { lowercase($0) == $1 }
        }
    }
}

/// An ASCII letter in lower case; other bytes as they are.
func lowercase(_ byte: UInt8) -> UInt8 {
    (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 : byte
}

/// `bytes` without leading and trailing spaces and tabs.
func trimmed(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
    var bytes = bytes
    while let first = bytes.first, first == 32 || first == 9 { bytes.removeFirst() }
    while let last = bytes.last, last == 32 || last == 9 { bytes.removeLast() }
    return bytes
}

/// The request target as a path relative to the root: query dropped,
/// percent escapes decoded, no leading slash, `index.html` for a directory.
/// Throws 400 for a NUL or a bad escape, 403 for a ".." segment. Works on
/// bytes: String operations here cost more than the request's I/O.
func decodePath(_ target: String) throws(BadRequest) -> String {
    let slash = UInt8(ascii: "/")
    var bytes: [UInt8] = []
    bytes.reserveCapacity(target.utf8.count + 11)  // room for "/index.html"
    var utf8 = target.utf8[...]
    while let byte = utf8.popFirst(), byte != UInt8(ascii: "?") {
        if byte == UInt8(ascii: "%") {
            guard let high = utf8.popFirst().flatMap(hexValue), let low = utf8.popFirst().flatMap(hexValue) else {
                throw BadRequest(status: 400, reason: "malformed percent escape")
            }
            bytes.append(high << 4 | low)
        } else {
            bytes.append(byte)
        }
    }
    if bytes.contains(0) { throw BadRequest(status: 400, reason: "NUL in the path") }
    // Segments joined by one slash, without empty ones, moved down in
    // place (a segment never lands past where it was read); ".." refused.
    let dot = UInt8(ascii: ".")
    let endsInSlash = bytes.last == slash
    let count = bytes.count
    var written = 0
    var read = 0
    while read < count {
        if bytes[read] == slash {
            read += 1
            continue
        }
        var end = read
        while end < count && bytes[end] != slash { end += 1 }
        if end - read == 2 && bytes[read] == dot && bytes[read + 1] == dot {
            throw BadRequest(status: 403, reason: "forbidden")
        }
        if written > 0 {
            bytes[written] = slash
            written += 1
        }
        for index in read..<end {
            bytes[written] = bytes[index]
            written += 1
        }
        read = end
    }
    bytes.removeLast(count - written)
    if written == 0 {
        bytes.append(contentsOf: "index.html".utf8)
    } else if endsInSlash {
        bytes.append(contentsOf: "/index.html".utf8)
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The value of one hexadecimal digit.
func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}
