// Answering requests: regular files under the root, exactly as many bytes
// as promised, and a status for every failure a client can cause.

import Glibc
import SystemPackage
import Uring

/// The root directory, open once; every file is opened beneath it.
final class Root: Sendable {
    let directory: Directory
    init(_ directory: consuming Directory) { self.directory = directory }
}

/// The files under one directory, served over HTTP/1.1.
struct Site: Sendable {
    let root: Root
    let limits: RequestLimits

    /// Answers requests on one connection until either side closes it, a
    /// limit is broken or a timeout passes.
    func serve(_ connection: borrowing StreamConnection) async throws {
        // Responses are written whole; nothing is gained by Nagle's delay.
        try? await connection.setNoDelay()
        var requests = RequestReader(connection.received(idleTimeout: limits.keepAliveTimeout), limits: limits)
        // One file buffer per connection, made for its first file: a fresh
        // 64 KiB array per request cost more in page faults and zeroing than
        // the request's own I/O (perf of uring-bench http).
        var buffer: [UInt8] = []
        while true {
            let head: RequestHead
            do {
                switch try await requests.next() {
                case .head(let next): head = next
                case .closed, .timedOut(idle: true): return
                case .timedOut(idle: false):
                    try await respond(408, "request head not received in time\n", keepAlive: false, on: connection)
                    return
                }
            } catch let bad as BadRequest {
                try await respond(bad.status, bad.reason + "\n", keepAlive: false, on: connection)
                return
            }
            if head.hasTransferEncoding {
                try await respond(501, "transfer codings are not supported\n", keepAlive: false, on: connection)
                return
            }
            if head.contentLength > limits.maximumBody {
                try await respond(413, "request body too large\n", keepAlive: false, on: connection)
                return
            }
            // A body is read and dropped, never taken for the next request.
            guard try await requests.discard(head.contentLength) else { return }
            guard try await answer(head, on: connection, buffer: &buffer) else { return }
        }
    }

    /// Answers one request; returns whether the connection stays open.
    private func answer(
        _ head: RequestHead, on connection: borrowing StreamConnection, buffer: inout [UInt8]
    ) async throws -> Bool {
        let keepAlive = head.keepAlive
        guard head.method == "GET" || head.method == "HEAD" else {
            try await respond(405, "only GET and HEAD\n", keepAlive: keepAlive, on: connection, extra: "Allow: GET, HEAD\r\n")
            return keepAlive
        }
        let sendsBody = head.method == "GET"
        let relative: String
        do {
            relative = try decodePath(head.target)
        } catch {
            try await respond(error.status, error.reason + "\n", keepAlive: keepAlive, on: connection, body: sendsBody)
            return keepAlive
        }
        // Beneath the root whatever the path's symbolic links say, and
        // without waiting: a FIFO would otherwise block the open until a
        // writer came.
        let file: File
        do {
            file = try await File.open(
                FilePath(relative), relativeTo: root.directory, options: [.nonBlocking],
                resolving: [.beneath, .noMagicLinks], on: connection.ring)
        } catch let error as UringError {
            let (status, text) = Self.status(for: error)
            if status == 500 { report("\(error)") }
            try await respond(status, text, keepAlive: keepAlive, on: connection, body: sendsBody)
            return keepAlive
        }
        // Regular files only, decided before any read could wait.
        var info = stat()
        let regular = file.withUnsafeDescriptor { descriptor in
            guard fstat(descriptor.rawValue, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return false }
            // Reads of a regular file may wait for the disk again. F_SETFL
            // sets only the status flags, and O_NONBLOCK is the only one set.
            _ = fcntl(descriptor.rawValue, F_SETFL, 0)
            return true
        }
        guard regular else {
            try await file.close()
            try await respond(404, "not found\n", keepAlive: keepAlive, on: connection, body: sendsBody)
            return keepAlive
        }
        let size = Int64(info.st_size)
        let type = contentType(relative)
        guard sendsBody else {
            try await file.close()
            try await send(Self.okHead(size: size, type: type, keepAlive: keepAlive, room: 0), on: connection)
            return keepAlive
        }
        if size > 64 * 1024 {
            // A large body moves from the page cache to the socket without
            // passing through this process (splice, as nginx's sendfile),
            // after the head, which the kernel holds back to leave with the
            // body's first bytes. (Reading the first 64 KiB and sending them
            // with the head, as small files go, cost this thread three copies
            // of them per request: in 11 interleaved rounds this way served
            // 0–19% more 1 MiB requests per second.)
            let head = Self.okHead(size: size, type: type, keepAlive: keepAlive, room: 0)
            let sent = try await sendWhole(file, count: size, after: head, on: connection)
            try await file.close()
            // A short body can only be signalled by closing the connection.
            return keepAlive && sent == size
        }
        if buffer.count != 64 * 1024 { buffer = [UInt8](repeating: 0, count: 64 * 1024) }
        // The head goes out with the body, in one send: two small sends
        // would cost the client two wake-ups.
        var response = Self.okHead(size: size, type: type, keepAlive: keepAlive, room: Int(size))
        var complete = true
        var n = size == 0 ? 0 : try await file.read(into: &buffer, at: 0)
        n = Int(min(Int64(n), size))  // the file grew: send only what was promised
        response.append(contentsOf: buffer[..<n])
        try await send(response, on: connection)
        var offset = Int64(n)
        if n == 0 && size > 0 {
            complete = false  // the file shrank: the promised length cannot be kept
        } else if offset < size {
            // A short read of a small file (one that grew is sent only as
            // far as promised).
            let sent = try await sendRest(file, from: offset, count: size - offset, on: connection)
            offset += sent
            complete = offset == size
        }
        try await file.close()
        // A short body can only be signalled by closing the connection.
        return keepAlive && complete
    }

    /// The head of a 200 response, made as bytes with room for `room` more
    /// (the body, for small files): one allocation, where building it as a
    /// String and copying it out took five.
    private static func okHead(size: Int64, type: String, keepAlive: Bool, room: Int) -> [UInt8] {
        var head: [UInt8] = []
        head.reserveCapacity(96 + type.utf8.count + room)
        head.append(contentsOf: "HTTP/1.1 200 OK\r\nContent-Length: ".utf8)
        head.append(contentsOf: String(size).utf8)  // 15 digits or fewer below 10^15 bytes: a small string, not allocated
        head.append(contentsOf: "\r\nContent-Type: ".utf8)
        head.append(contentsOf: type.utf8)
        head.append(contentsOf: (keepAlive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n").utf8)
        return head
    }

    /// The status for a failed open: nothing about the file system beyond
    /// "not there" or "not allowed" reaches the client.
    private static func status(for error: UringError) -> (Int, String) {
        switch error.errno {
        case .noSuchFileOrDirectory, .notDirectory, .tooManySymbolicLinkLevels, .isDirectory, .noSuchAddressOrDevice:
            return (404, "not found\n")
        case .permissionDenied, .notPermitted, .improperLink:
            return (403, "forbidden\n")
        case .fileNameTooLong:
            return (414, "path too long\n")
        default:
            return (500, "internal error\n")
        }
    }

    private static let reasons = [
        400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
        408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
        431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    ]

    private func respond(
        _ status: Int, _ text: String, keepAlive: Bool, on connection: borrowing StreamConnection,
        extra: String = "", body: Bool = true
    ) async throws {
        let reason = Self.reasons[status] ?? "Error"
        let bytes = Array(text.utf8)
        var response = "HTTP/1.1 \(status) \(reason)\r\nContent-Length: \(bytes.count)\r\n"
        response += "Content-Type: text/plain; charset=utf-8\r\n\(extra)Connection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        try await send(Array(response.utf8) + (body ? bytes : []), on: connection)
    }

    /// Sends all of `bytes` within the send timeout.
    private func send(_ bytes: [UInt8], on connection: borrowing StreamConnection) async throws {
        try await connection.sendAll(bytes, timeout: limits.sendTimeout)
    }

    /// Sends `head`, then `count` bytes of `file`, within the send timeout;
    /// returns how many of the file's were sent (fewer if it shrank).
    private func sendWhole(
        _ file: borrowing File, count: Int64, after head: [UInt8], on connection: borrowing StreamConnection
    ) async throws -> Int64 {
        try await withTimeout(limits.sendTimeout) {
            try await connection.send(file, count: count, after: head)
        }
    }

    /// Sends `count` bytes of `file` from `offset`, within the send timeout;
    /// returns how many were sent (fewer if the file shrank).
    private func sendRest(
        _ file: borrowing File, from offset: Int64, count: Int64, on connection: borrowing StreamConnection
    ) async throws -> Int64 {
        try await withTimeout(limits.sendTimeout) {
            try await connection.send(file, from: offset, count: count)
        }
    }
}

/// Content types by file extension.
let contentTypes = [
    "html": "text/html; charset=utf-8", "txt": "text/plain; charset=utf-8", "css": "text/css",
    "js": "text/javascript", "json": "application/json", "png": "image/png", "jpg": "image/jpeg",
    "svg": "image/svg+xml", "pdf": "application/pdf",
]

/// The content type for a path, by its extension.
func contentType(_ path: String) -> String {
    // The bytes after the last "." of the last segment, in ASCII lower
    // case: a small string, so no allocation (splitting the path and
    // `lowercased()` took 4.5% of the server's CPU time serving 1 KiB
    // files).
    let utf8 = path.utf8
    guard let dot = utf8.lastIndex(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "/") }),
        utf8[dot] == UInt8(ascii: ".")
    else { return "application/octet-stream" }
    let bytes = utf8[utf8.index(after: dot)...]
    let count = bytes.count
    guard count <= 15 else { return "application/octet-stream" }  // longer than any in the table
    let ext = String(unsafeUninitializedCapacity: count) { buffer in
        for (i, byte) in bytes.enumerated() { buffer[i] = lowercase(byte) }
        return count
    }
    return contentTypes[ext] ?? "application/octet-stream"
}
