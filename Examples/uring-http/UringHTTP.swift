// uring-http: a small static-file HTTP/1.1 server on io_uring.
//
//     uring-http [--host H] --port P --root DIR
//
// GET and HEAD, keep-alive, Content-Length and Content-Type. A missing file
// is 404, a malformed request line 400, and a path that would leave DIR
// (through "..") 403. Files are read and sent through the ring in 64 KiB
// pieces. It prints "listening on H:P" once ready, and on SIGINT or SIGTERM
// closes every connection and exits 0.

import Glibc
import SystemPackage
import Uring

@main
struct UringHTTP {
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        var host = "127.0.0.1"
        var port: UInt16?
        var root: String?
        var arguments = CommandLine.arguments.dropFirst()
        let usage = "usage: uring-http [--host H] --port P --root DIR"
        while let argument = arguments.popFirst() {
            switch argument {
            case "--host": host = arguments.popFirst() ?? ""
            case "--port": port = arguments.popFirst().flatMap { UInt16($0) }
            case "--root": root = arguments.popFirst()
            default: fail("unknown argument '\(argument)'\n\(usage)")
            }
        }
        guard let port, let root else { fail(usage) }
        do {
            let address = try SocketAddress(ip: host, port: port)
            try await RingActor.run { ring in
                // SIGINT and SIGTERM now arrive in this sequence instead of
                // ending the process.
                let signals = try ring.signals([.interrupt, .terminate])
                let rootMetadata = try await ring.metadata(at: FilePath(root))
                guard rootMetadata.type == .directory else { fail("--root '\(root)' is not a directory") }
                let listener = try await StreamListener.bind(to: address, on: ring)
                print("listening on \(listener.localAddress)")
                flushStandardOutput()
                let connections = listener.connections
                let site = Site(root: root, ring: ring)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try await withThrowingDiscardingTaskGroup { connectionTasks in
                            for try await incoming in connections {
                                connectionTasks.addTask { try await site.serve(incoming.take()) }
                            }
                        }
                    }
                    group.addTask {
                        for try await signal in signals {
                            report("stopping on \(signal)")
                            return
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
                try await listener.close()
            }
        } catch is CancellationError {
        } catch {
            fail("\(error)")
        }
    }
}

/// The files under one directory, served over HTTP/1.1.
struct Site: Sendable {
    let root: String
    let ring: RingActor

    /// Answers requests on one connection until either side closes it.
    func serve(_ connection: consuming StreamConnection) async throws {
        // Responses are written whole; nothing is gained by Nagle's delay.
        try? await connection.setNoDelay()
        var pending: [UInt8] = []
        // One file buffer per connection, made for its first file: a fresh
        // 64 KiB array per request cost more in page faults and zeroing than
        // the request's own I/O (perf of uring-bench http).
        var buffer: [UInt8] = []
        var chunks = connection.received().makeAsyncIterator()
        do {
            while true {
                // Read until a whole request head is buffered.
                var headEnd = endOfHead(pending)
                while headEnd == nil {
                    guard let chunk = try await chunks.next() else { return }  // the client closed
                    pending += chunk
                    if pending.count > 64 * 1024 {
                        try await respond(400, "request head too large\n", keepAlive: false, on: connection)
                        return
                    }
                    headEnd = endOfHead(pending)
                }
                let head = RequestHead(pending[..<headEnd!])
                pending.removeFirst(headEnd! + 4)
                guard let head else {
                    try await respond(400, "malformed request line\n", keepAlive: false, on: connection)
                    return
                }
                guard try await answer(head, on: connection, buffer: &buffer) else { return }
            }
        } catch let error as UringError {
            report("\(connection.remoteAddress.map { "\($0)" } ?? "client"): \(error)")
        }
    }

    /// Answers one request; returns whether the connection stays open.
    /// `buffer` is the connection's file buffer.
    private func answer(
        _ head: RequestHead, on connection: borrowing StreamConnection, buffer: inout [UInt8]
    ) async throws -> Bool {
        let method = head.method
        let keepAlive = head.keepAlive
        guard method == "GET" || method == "HEAD" else {
            try await respond(405, "only GET and HEAD\n", keepAlive: keepAlive, on: connection, extra: "Allow: GET, HEAD\r\n")
            return keepAlive
        }
        let sendsBody = method == "GET"
        guard let relative = decodePath(head.target) else {
            try await respond(403, "forbidden\n", keepAlive: keepAlive, on: connection, body: sendsBody)
            return keepAlive
        }
        var path = root + relative
        if path.hasSuffix("/") { path += "index.html" }
        let file: File
        do {
            file = try await File.open(FilePath(path), on: ring)
        } catch let error as UringError where [.noSuchFileOrDirectory, .notDirectory, .permissionDenied].contains(error.errno) {
            try await respond(404, "not found\n", keepAlive: keepAlive, on: connection, body: sendsBody)
            return keepAlive
        }
        // The first piece tells the size of a file shorter than the buffer
        // (a short read of a regular file ends at its end), so a small file
        // needs no statx, which io_uring always hands to a worker thread.
        if buffer.count != 64 * 1024 { buffer = [UInt8](repeating: 0, count: 64 * 1024) }
        var n: Int
        do {
            n = try await file.read(into: &buffer, at: 0)
        } catch let error as UringError where error.errno == .isDirectory {
            try await file.close()
            try await respond(404, "not found\n", keepAlive: keepAlive, on: connection, body: sendsBody)
            return keepAlive
        }
        var size = Int64(n)
        if n == buffer.count {
            let metadata = try await file.metadata()
            guard metadata.type == .regular else {
                try await file.close()
                try await respond(404, "not found\n", keepAlive: keepAlive, on: connection, body: sendsBody)
                return keepAlive
            }
            size = metadata.size
        }
        let header = "HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\nContent-Type: \(contentType(path))\r\n"
            + "Connection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        // The head goes out with the body's first piece, in one send: two
        // small sends would wait on the client's delayed ACK.
        var response = Array(header.utf8)
        if sendsBody {
            response.append(contentsOf: buffer[..<n])
            try await connection.sendAll(response)
            var offset = Int64(n)
            while offset < size {
                n = try await file.read(into: &buffer, at: offset)
                if n == 0 { break }
                if n < buffer.count {
                    // Only a short read (the file's last piece) needs a shorter array.
                    try await connection.sendAll(Array(buffer[..<n]))
                } else {
                    try await connection.sendAll(buffer)
                }
                offset += Int64(n)
            }
        } else {
            try await connection.sendAll(response)
        }
        try await file.close()
        return keepAlive
    }

    private static let reasons = [400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"]

    private func respond(
        _ status: Int, _ text: String, keepAlive: Bool, on connection: borrowing StreamConnection,
        extra: String = "", body: Bool = true
    ) async throws {
        let reason = Self.reasons[status] ?? "Error"
        let bytes = Array(text.utf8)
        var response = "HTTP/1.1 \(status) \(reason)\r\nContent-Length: \(bytes.count)\r\n"
        response += "Content-Type: text/plain; charset=utf-8\r\n\(extra)Connection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        try await connection.sendAll(Array(response.utf8) + (body ? bytes : []))
    }
}

/// A request line and the one header field this server acts on, read from
/// the head's bytes (String operations per request cost more than the
/// request's I/O).
struct RequestHead {
    var method: String
    var target: String
    /// HTTP/1.1 keeps the connection by default, HTTP/1.0 does not; a
    /// `Connection` field overrides either.
    var keepAlive: Bool

    /// Parses a head without its final blank line; nil if the request line
    /// is malformed.
    init?(_ head: ArraySlice<UInt8>) {
        let cr = UInt8(ascii: "\r")
        let lineEnd = head.firstIndex(of: cr) ?? head.endIndex
        let parts = head[..<lineEnd].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1].first == UInt8(ascii: "/"), parts[2].starts(with: "HTTP/1.".utf8),
            !parts[0].isEmpty, parts[0].allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) })
        else { return nil }
        method = String(decoding: parts[0], as: UTF8.self)
        target = String(decoding: parts[1], as: UTF8.self)
        keepAlive = parts[2].elementsEqual("HTTP/1.1".utf8)
        var start = lineEnd
        while start < head.endIndex {
            start = min(start + 2, head.endIndex)  // past CR LF
            let end = head[start...].firstIndex(of: cr) ?? head.endIndex
            let field = head[start..<end]
            let name = "connection:".utf8
            if field.count >= name.count && zip(field, name).allSatisfy({ lowercase($0) == $1 }) {
                let value = String(decoding: field.map(lowercase), as: UTF8.self)
                if value.contains("close") { keepAlive = false }
                if value.contains("keep-alive") { keepAlive = true }
            }
            start = end
        }
    }
}

/// An ASCII letter in lower case; other bytes as they are.
func lowercase(_ byte: UInt8) -> UInt8 {
    (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 : byte
}

/// The index of the blank line ending a request head, if buffered.
func endOfHead(_ bytes: [UInt8]) -> Int? {
    guard bytes.count >= 4 else { return nil }
    for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
        return i
    }
    return nil
}

/// The request target as a path under the root (query dropped, percent
/// escapes decoded), or nil if it would climb out through "..".
func decodePath(_ target: String) -> String? {
    let pathPart = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
    var bytes: [UInt8] = []
    var utf8 = Array(pathPart.utf8)[...]
    while let byte = utf8.popFirst() {
        if byte == UInt8(ascii: "%"), utf8.count >= 2,
            let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
        {
            bytes.append(value)
            utf8 = utf8.dropFirst(2)
        } else {
            bytes.append(byte)
        }
    }
    if bytes.contains(0) { return nil }
    let path = String(decoding: bytes, as: UTF8.self)
    let segments = path.split(separator: "/", omittingEmptySubsequences: false)
    if segments.contains("..") { return nil }
    return path
}

/// Content types by file extension.
let contentTypes = [
    "html": "text/html; charset=utf-8", "txt": "text/plain; charset=utf-8", "css": "text/css",
    "js": "text/javascript", "json": "application/json", "png": "image/png", "jpg": "image/jpeg",
    "svg": "image/svg+xml", "pdf": "application/pdf",
]

/// The content type for a path, by its extension.
func contentType(_ path: String) -> String {
    let name = path.split(separator: "/").last ?? ""
    guard let dot = name.lastIndex(of: ".") else { return "application/octet-stream" }
    return contentTypes[String(name[name.index(after: dot)...]).lowercased()] ?? "application/octet-stream"
}

func report(_ message: String) {
    var line = "uring-http: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    report(message)
    exit(1)
}

/// Pushes printed lines out now (the test harness reads them from a file).
func flushStandardOutput() {
    fflush(nil)
}
