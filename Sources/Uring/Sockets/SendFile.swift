import CUring
import Glibc
import Synchronization
import SystemPackage

/// The two ends of a pipe that a file's bytes pass through on their way to
/// a socket, kept open until every request that names them has completed.
final class SplicePipe: Sendable {
    let reading: OwnedDescriptor
    let writing: OwnedDescriptor
    /// Bytes the pipe holds.
    let capacity: Int

    /// Pipes open in the process, for the size of the next one.
    private static let open = Atomic<Int>(0)

    init(address: SocketAddress?) throws(UringError) {
        var fds: [Int32] = [-1, -1]
        guard cu_pipe(&fds) == 0 else {
            throw UringError(.system, operation: .splice, errno: Errno(rawValue: Glibc.errno), detail: "pipe2 failed")
                .about(address)
        }
        reading = OwnedDescriptor(fds[0])
        writing = OwnedDescriptor(fds[1])
        // Larger pipes mean fewer splices (each goes through a kernel
        // worker), but the kernel counts every pipe's size against the
        // user's allowance (pipe-user-pages-soft, 64 MiB), past which new
        // pipes get a single page. So the first few pipes open at once get
        // 1 MiB, the next 256 KiB, and the rest keep the default 64 KiB.
        // Pipes a ring keeps idle count as open, so one process holds at
        // most 28 MiB of enlarged pipes. Other processes of the same user
        // share the allowance; past it a pipe is small and a send takes
        // more splices, but nothing fails.
        // The kernel may grant less than asked, so ask what was granted.
        let others = Self.open.add(1, ordering: .relaxed).oldValue
        let wanted = others < 16 ? 1 << 20 : others < 64 ? 256 << 10 : 0
        if wanted > 0 { _ = fcntl(fds[1], 1031 /* F_SETPIPE_SZ */, Int32(wanted)) }
        let granted = fcntl(fds[1], 1032 /* F_GETPIPE_SZ */)
        capacity = granted > 0 ? Int(granted) : 64 * 1024
    }

    deinit { Self.open.subtract(1, ordering: .relaxed) }
}

/// A ring's empty splice pipes, kept for its next sends to a socket (a
/// pipe costs four system calls to make and size and one to close).
///
/// A server sending files on many connections at once holds a pipe per
/// send, so keeping only a few made most sends open a new pipe, sized
/// smaller because the ones in use already count: 0.65 new pipes per
/// 1 MiB response at 64 connections. The process keeps up to
/// ``keptInProcess`` idle (two descriptors each), the largest handed out
/// first.
final class SplicePipes: Sendable {
    /// The most pipes kept idle by all rings of the process together.
    static let keptInProcess = 64
    /// Pipes kept idle now, by every ring.
    private static let keptNow = Atomic<Int>(0)
    /// Sorted by capacity, the largest last; none kept once `closed`.
    private let idle = Locked<(pipes: [SplicePipe], closed: Bool)>(([], false))

    /// An empty pipe: the largest kept, or a new one.
    func take(address: SocketAddress?) throws(UringError) -> SplicePipe {
        if let pipe = idle.withLock({ $0.pipes.popLast() }) {
            Self.keptNow.subtract(1, ordering: .relaxed)
            return pipe
        }
        return try SplicePipe(address: address)
    }

    /// How many this ring keeps now.
    var idleCount: Int { idle.withLock { $0.pipes.count } }

    /// How many all rings keep now.
    static var idleInProcess: Int { keptNow.load(ordering: .relaxed) }

    /// Keeps `pipe`, which must be empty, unless the process keeps enough
    /// already or the ring shut down (then it is closed).
    func giveBack(_ pipe: SplicePipe) {
        guard Self.keptNow.add(1, ordering: .relaxed).newValue <= Self.keptInProcess else {
            Self.keptNow.subtract(1, ordering: .relaxed)
            return
        }
        let kept = idle.withLock { idle -> Bool in
            guard !idle.closed else { return false }
            let place = idle.pipes.firstIndex { $0.capacity > pipe.capacity } ?? idle.pipes.endIndex
            idle.pipes.insert(pipe, at: place)
            return true
        }
        if !kept { Self.keptNow.subtract(1, ordering: .relaxed) }
    }

    /// Closes the kept pipes and keeps none from now on: the ring shut
    /// down, and its descriptors should not outlive that.
    func closeAll() {
        let closing = idle.withLock { idle -> [SplicePipe] in
            idle.closed = true
            defer { idle.pipes = [] }
            return idle.pipes
        }
        Self.keptNow.subtract(closing.count, ordering: .relaxed)
        // The pipes close here, as `closing` goes, outside the lock.
    }

    deinit { Self.keptNow.subtract(idle.withLock { $0.pipes.count }, ordering: .relaxed) }
}

extension StreamConnection {
    /// Sends `count` bytes of `file` from `offset` without copying them
    /// through the process, the way `sendfile(2)` does: each piece is
    /// spliced from the file into a pipe and from the pipe into the socket,
    /// both through the ring (`IORING_OP_SPLICE`), linked so that each piece
    /// is one submission. The pipe (1 MiB while few are open) comes from a
    /// few empty ones the ring keeps for its sends. Files that cannot be
    /// spliced are read and sent instead.
    ///
    /// Under ``withTimeout(_:_:)`` or ``withDeadline(_:_:)`` a peer that
    /// stops reading cannot hold the call past the deadline: then the
    /// socket's sending side is shut down, which ends the waiting splice,
    /// and the call throws ``UringError/Kind/timedOut``. (A kernel timer
    /// linked to the splice does not end it.)
    ///
    /// ```swift
    /// let size = try await file.metadata().size
    /// try await connection.sendAll(Array(head.utf8))
    /// let sent = try await connection.send(file, from: 0, count: size)
    /// ```
    ///
    /// - Parameters:
    ///   - file: The file to send; any ring's file will do.
    ///   - offset: Where in the file to start.
    ///   - count: How many bytes to send.
    /// - Returns: The bytes sent: `count`, or fewer if the file ends first
    ///   (it shrank).
    /// - Throws: ``UringError`` naming the file or the peer. After an error
    ///   an unknown part of the range has been sent; close the connection.
    public func send(_ file: borrowing File, from offset: Int64 = 0, count: Int64) async throws -> Int64 {
        try await send(file, from: offset, count: count, head: UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// Sends all of `header`, then `count` bytes of `file` from `offset`,
    /// as ``send(_:from:count:)`` does: the response head of an HTTP server,
    /// say, then its body from a file.
    ///
    /// The header is sent with `MSG_MORE`, so the kernel holds it until the
    /// file's first bytes join it: the peer gets them in the same segments
    /// rather than a small segment of its own first. If the file has
    /// nothing at `offset`, the header is pushed out alone (unless the
    /// socket is corked with `TCP_CORK`). A deadline in force covers the
    /// header too; a timeout during its send names `send`.
    ///
    /// ```swift
    /// let head = Array("HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\n\r\n".utf8)
    /// let sent = try await connection.send(file, count: size, after: head)
    /// ```
    ///
    /// - Parameters:
    ///   - file: The file to send; any ring's file will do.
    ///   - offset: Where in the file to start.
    ///   - count: How many bytes of the file to send.
    ///   - header: Bytes to send first, all of them.
    /// - Returns: The bytes of the file sent (the header's are not counted):
    ///   `count`, or fewer if the file ends first (it shrank).
    /// - Throws: ``UringError`` naming the file or the peer. After an error
    ///   an unknown part of the header and range has been sent; close the
    ///   connection.
    public func send<Header: IOBuffer & ~Copyable>(
        _ file: borrowing File, from offset: Int64 = 0, count: Int64, after header: borrowing Header
    ) async throws -> Int64 {
        // The header is borrowed for the whole call, so its bytes stay put
        // until every request that reads them has completed.
        try await send(file, from: offset, count: count, head: UnsafeRawBufferPointer(start: address(of: header), count: header.count))
    }

    /// Both forms: `head` (possibly empty) goes first.
    private func send(_ file: borrowing File, from offset: Int64, count: Int64, head: UnsafeRawBufferPointer) async throws -> Int64 {
        guard offset >= 0, count >= 0 else {
            throw UringError.invalid(.splice, path: file.path, "offset \(offset) and count \(count) must not be negative")
        }
        if count == 0 {
            if let start = head.baseAddress, head.count > 0 { try await io.sendAll(start, count: head.count) }
            return 0
        }
        guard ring.isSupported(.splice) else {
            try await sendHead(head, timed: false)
            return try await sendByReading(file, from: offset, count: count, after: head)
        }
        guard let deadline = TaskDeadline.inForce else {
            try await sendHead(head, timed: false)
            return try await splice(file, from: offset, count: count, after: head, timed: false)
        }
        // A timer cannot interrupt a splice that waits in a kernel worker for
        // room in the socket (the kernel lets it wait), so a deadline is kept
        // by a watchdog timer instead: when it passes first, it shuts the socket's
        // sending side, which ends the waiting splice, and the send throws
        // `timedOut`. The connection cannot send after that; close it.
        // The header's send comes first, and a timeout names what it ended.
        let first: UringOperation = head.count > 0 ? .send : .splice
        guard deadline > .now else { throw UringError.timedOut(first).about(remoteAddress) }
        let socket = io.fd
        let watchdog = SendWatchdog {
            _ = Glibc.shutdown(socket, Int32(SHUT_WR))
            return true
        }
        let core = ring.core
        try core.admit(.splice, about: .address(remoteAddress))
        // A kernel timer nobody awaits: its handler runs on the ring thread
        // when it fires (-ETIME), or when it is cancelled below.
        let time = KernelTimespec(absolute: deadline)
        let timer = core.submitStream(keepAlive: time, handler: { result, _ in
            if result == -ETIME { watchdog.fire() }
        }) {
            io_uring_prep_timeout(&$0, time.pointer, 0, CU_IORING_TIMEOUT_ABS)
        }
        defer { core.requestCancellation(timer) }
        var headSent = false
        do {
            try await sendHead(head, timed: true)
            headSent = true
            let sent = try await splice(file, from: offset, count: count, after: head, timed: true)
            if watchdog.finish().fired { throw UringError.timedOut(.splice).about(remoteAddress) }
            return sent
        } catch {
            if watchdog.finish().fired { throw UringError.timedOut(headSent ? .splice : first).about(remoteAddress) }
            throw error
        }
    }

    /// Sends all of `head` with `MSG_MORE` (the kernel holds the bytes for
    /// what follows). `timed`: a watchdog keeps the deadline (shutting the
    /// socket ends a waiting send), so the send links no timer of its own.
    private func sendHead(_ head: UnsafeRawBufferPointer, timed: Bool) async throws {
        guard let start = head.baseAddress else { return }
        let socket = io.fd
        var done = 0
        while done < head.count {
            let length = min(head.count - done, DescriptorIO.maximumTransfer)
            let moved = Int(try await ring.core.perform(.send, about: .address(remoteAddress), honorsDeadline: !timed) {
                io_uring_prep_send(&$0, socket, start + done, length, Int32(MSG_NOSIGNAL) | Int32(MSG_MORE))
            })
            // A socket that takes nothing would loop here for ever.
            if moved == 0 { throw UringError.system(.send, EPIPE).about(remoteAddress) }
            done += moved
        }
    }

    /// A header sent with `MSG_MORE` that nothing followed (the file had
    /// nothing at the offset) would wait in a TCP socket for the next send,
    /// or a probe timer: this sends it now. Unless the socket is corked
    /// (`TCP_CORK`), when holding bytes is what its owner asked for, turning
    /// the cork off, which it already is, pushes what is held. Other
    /// sockets ignore `MSG_MORE`, and refuse the option.
    private func releaseHeldHeader(_ head: UnsafeRawBufferPointer) {
        guard head.count > 0 else { return }
        let socket = io.fd
        var corked: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(socket, Int32(IPPROTO_TCP), TCP_CORK, &corked, &length) == 0, corked == 0 else { return }
        _ = setsockopt(socket, Int32(IPPROTO_TCP), TCP_CORK, &corked, length)
    }

    /// The splicing itself, after `head` was sent (only to release it if
    /// nothing follows). `timed`: a watchdog keeps the deadline, so no step
    /// links a timer of its own.
    private func splice(
        _ file: borrowing File, from offset: Int64, count: Int64, after head: UnsafeRawBufferPointer, timed: Bool
    ) async throws -> Int64 {
        let pipe = try ring.splicePipes.take(address: remoteAddress)
        let input = file.descriptor.rawValue
        let socket = io.fd
        let core = ring.core
        var sent: Int64 = 0
        // A one-entry ring cannot hold a chain: there each step goes alone.
        let chained = core.submissionEntries >= 2
        while sent < count {
            let want = UInt32(min(count - sent, Int64(pipe.capacity)))
            let position = offset + sent
            var fill: Completion? = nil
            var send: Completion? = nil
            if chained {
                // Both steps in one submission, linked: the kernel starts the
                // send as soon as the pipe is filled, with no trip back here.
                // A short fill breaks the link, and the send completes
                // cancelled, unstarted.
                try core.admit(.splice, about: .path(file.path))
                let slots = core.submitChain(2) { step, request in
                    if step == 0 {
                        io_uring_prep_splice(&request, input, position, pipe.writing.fd, -1, want, 0)
                    } else {
                        io_uring_prep_splice(&request, pipe.reading.fd, -1, socket, -1, want, 0)
                    }
                    return pipe
                }
                fill = await core.completion(of: slots[0])
                send = await core.completion(of: slots[1])
            }
            let filled: Int
            do {
                if let fill {
                    filled = Int(try core.check(fill, .splice, about: .path(file.path)))
                } else {
                    filled = Int(try await core.perform(.splice, about: .path(file.path), keepAlive: pipe, honorsDeadline: !timed) {
                        io_uring_prep_splice(&$0, input, position, pipe.writing.fd, -1, want, 0)
                    })
                }
            } catch let error as UringError where sent == 0 && error.errno == .invalidArgument {
                // A file its file system cannot splice (some /proc and FUSE
                // files); the send half, if any, was cancelled unstarted.
                return try await sendByReading(file, from: offset, count: count, after: head)
            }
            if filled == 0 { break }  // the file ended early
            var drained = 0
            if let send, !(send.result == -ECANCELED && filled < Int(want)) {
                drained = Int(try core.check(send, .splice, about: .address(remoteAddress)))
            }
            while drained < filled {
                let left = UInt32(filled - drained)
                let moved = Int(try await core.perform(.splice, about: .address(remoteAddress), keepAlive: pipe, honorsDeadline: !timed) {
                    io_uring_prep_splice(&$0, pipe.reading.fd, -1, socket, -1, left, 0)
                })
                // A socket that takes nothing would loop here for ever.
                if moved == 0 { throw UringError.system(.splice, EPIPE).about(remoteAddress) }
                drained += moved
            }
            sent += Int64(filled)
        }
        // Every byte put in the pipe has left it (a failure above throws and
        // closes the pipe instead).
        ring.splicePipes.giveBack(pipe)
        if sent == 0 { releaseHeldHeader(head) }
        return sent
    }

    /// The same by reads and sends, for files that cannot be spliced.
    /// (`head` was sent before; it is released if nothing follows.)
    private func sendByReading(
        _ file: borrowing File, from offset: Int64, count: Int64, after head: UnsafeRawBufferPointer
    ) async throws -> Int64 {
        var buffer = [UInt8](repeating: 0, count: Int(min(count, 256 * 1024)))
        var sent: Int64 = 0
        while sent < count {
            let want = Int(min(count - sent, Int64(buffer.count)))
            let n = try await file.read(into: &buffer, at: offset + sent)
            if n == 0 { break }
            let piece = min(n, want)
            try await io.sendAll(address(of: buffer), count: piece)
            sent += Int64(piece)
        }
        if sent == 0 { releaseHeldHeader(head) }
        return sent
    }
}
