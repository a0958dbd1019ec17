import CUring
import Glibc
import SystemPackage

/// The ring operations every socket type shares, written once.
///
/// Like `DescriptorIO` it owns nothing: the socket types own the descriptor
/// and borrow themselves for each call. `address` is what errors name.
@usableFromInline
struct SocketIO {
    @usableFromInline let core: RingCore
    let fd: Int32
    let address: SocketAddress?

    // MARK: Creating and naming

    /// Opens a socket through the ring (`IORING_OP_SOCKET`), or with the
    /// system call on kernels whose ring lacks it. The descriptor is
    /// close-on-exec.
    nonisolated(nonsending) static func open(
        domain: Int32, type: Int32, on core: RingCore, for address: SocketAddress?
    ) async throws -> Int32 {
        let kind = type | Int32(SOCK_CLOEXEC.rawValue)
        if core.isSupported(.socket) {
            let fd = try await core.perform(.socket, about: .address(address)) {
                io_uring_prep_socket(&$0, domain, kind, 0, 0)
            }
            return fd
        }
        let fd = Glibc.socket(domain, kind, 0)
        if fd < 0 { throw UringError.system(.socket, Glibc.errno).about(address) }
        return fd
    }

    /// Binds to `address`: through the ring on kernels with `IORING_OP_BIND`
    /// (6.11+), otherwise with the system call.
    nonisolated(nonsending) func bind(to address: SocketAddress) async throws {
        let box = SocketAddressBox(address)
        if core.isSupported(.bind) {
            _ = try await core.perform(.bind, about: .address(address), keepAlive: box) {
                cu_prep_bind(&$0, fd, box.sockaddr, box.length.pointee)
            }
            return
        }
        if Glibc.bind(fd, box.sockaddr, box.length.pointee) != 0 {
            throw UringError.system(.bind, Glibc.errno).about(address)
        }
    }

    /// Starts listening: through the ring on kernels with
    /// `IORING_OP_LISTEN` (6.11+), otherwise with the system call.
    nonisolated(nonsending) func listen(backlog: Int32) async throws {
        if core.isSupported(.listen) {
            _ = try await core.perform(.listen, about: .address(address)) { cu_prep_listen(&$0, fd, backlog) }
            return
        }
        if Glibc.listen(fd, backlog) != 0 { throw UringError.system(.listen, Glibc.errno).about(address) }
    }

    /// Sets an integer socket option: as a ring command on kernels that have
    /// socket commands (6.7+), otherwise with the system call.
    nonisolated(nonsending) func setOption(level: Int32, name: Int32, value: Int32) async throws {
        let box = KernelMemory<Int32>(value)
        if core.isSupported(.socketOption) {
            do {
                _ = try await core.perform(.socketOption, about: .address(address), keepAlive: box) {
                    cu_prep_setsockopt(&$0, fd, level, name, box.pointer, Int32(MemoryLayout<Int32>.size))
                }
                return
            } catch let error as UringError where error.errno == .notSupported || error.errno == .invalidArgument {
                // Kernels before 6.7 have the command opcode but no socket commands.
            }
        }
        if setsockopt(fd, level, name, box.pointer, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw UringError.system(.socketOption, Glibc.errno).about(address)
        }
    }

    /// The socket's own address (`getsockname`).
    func localAddress() -> SocketAddress? {
        let box = SocketAddressBox()
        guard getsockname(fd, box.sockaddr, box.length) == 0 else { return nil }
        return box.address
    }

    /// The connected peer's address (`getpeername`).
    func remoteAddress() -> SocketAddress? {
        let box = SocketAddressBox()
        guard getpeername(fd, box.sockaddr, box.length) == 0 else { return nil }
        return box.address
    }

    // MARK: Connecting

    nonisolated(nonsending) func connect(to address: SocketAddress) async throws {
        let box = SocketAddressBox(address)
        _ = try await core.perform(.connect, about: .address(address), keepAlive: box) {
            io_uring_prep_connect(&$0, fd, box.sockaddr, box.length.pointee)
        }
    }

    /// Accepts one connection; returns its descriptor (close-on-exec).
    nonisolated(nonsending) func accept() async throws -> Int32 {
        try await core.perform(.accept, about: .address(address)) {
            io_uring_prep_accept(&$0, fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        }
    }

    // MARK: Transfer

    // Sends and receives are inlined into their public callers, made of
    // synchronous steps around `RingCore.awaitStarted`, so one that
    // completes during its submission (a send into a socket with room, a
    // receive of bytes already queued) costs no async call.

    @inlinable @inline(__always)
    nonisolated(nonsending) func send(_ address: UnsafeRawPointer, count: Int) async throws -> Int {
        guard let slot = try startSend(address, count: count) else {
            return try await sendWithDeadline(address, count: count)
        }
        await core.awaitStarted(slot)
        return try finish(slot, .send)
    }

    /// Starts a send, unless a deadline is in force (nil).
    @usableFromInline
    func startSend(_ address: UnsafeRawPointer, count: Int) throws -> OperationSlot? {
        try validate(.send, count: count)
        let length = min(count, DescriptorIO.maximumTransfer)
        return try core.start(.send, about: .address(self.address)) {
            io_uring_prep_send(&$0, fd, address, length, Int32(MSG_NOSIGNAL))
        }
    }

    /// The request's result, or its error naming the peer.
    @usableFromInline
    func finish(_ slot: OperationSlot, _ operation: UringOperation) throws -> Int {
        Int(try core.finish(slot, operation, about: .address(address)))
    }

    /// A send bounded by the task's deadline.
    @usableFromInline
    nonisolated(nonsending) func sendWithDeadline(_ address: UnsafeRawPointer, count: Int) async throws -> Int {
        try validate(.send, count: count)
        return try await sendPiece(address, length: min(count, DescriptorIO.maximumTransfer), by: TaskDeadline.inForce)
    }

    /// One send of at most `length` bytes (the timed `sendAll` repeats its
    /// steps inlined: change both together). Under a deadline it first tries
    /// without waiting: a send into a socket with room completes at once and
    /// needs no linked timer (two more kernel requests), and one that cannot
    /// wait cannot outlast the deadline. Only a full socket takes the timed
    /// path.
    private nonisolated(nonsending) func sendPiece(
        _ address: UnsafeRawPointer, length: Int, by deadline: RingClock.Instant?
    ) async throws -> Int {
        guard let deadline else {
            return Int(try await core.perform(.send, about: .address(self.address)) {
                io_uring_prep_send(&$0, fd, address, length, Int32(MSG_NOSIGNAL))
            })
        }
        let slot = try startSendNow(address, length: length, by: deadline)
        await core.awaitStarted(slot)
        if let sent = try finishSendNow(slot) { return sent }
        return try await sendWaiting(address, length: length, by: deadline)
    }

    /// Starts a send that does not wait for room (`MSG_DONTWAIT`): the
    /// first try of a send under `deadline`, which it cannot outlast, so no
    /// timeout is linked to it. Throws `timedOut` if the deadline has passed.
    @usableFromInline
    func startSendNow(_ address: UnsafeRawPointer, length: Int, by deadline: RingClock.Instant) throws -> OperationSlot {
        guard deadline > .now else { throw UringError.timedOut(.send).about(self.address) }
        return try core.startIgnoringDeadline(.send, about: .address(self.address)) {
            io_uring_prep_send(&$0, fd, address, length, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        }
    }

    /// The bytes a send from ``startSendNow(_:length:by:)`` took, or nil
    /// if the socket had no room (`EAGAIN`).
    @usableFromInline
    func finishSendNow(_ slot: OperationSlot) throws -> Int? {
        do {
            return try finish(slot, .send)
        } catch let error as UringError where error.errno == .resourceTemporarilyUnavailable {
            return nil
        }
    }

    /// A send that waits for room in the socket, with a timeout at
    /// `deadline` linked to it.
    @usableFromInline
    nonisolated(nonsending) func sendWaiting(_ address: UnsafeRawPointer, length: Int, by deadline: RingClock.Instant) async throws -> Int {
        Int(try await core.perform(.send, about: .address(self.address), keepAlive: nil, deadline: deadline) {
            io_uring_prep_send(&$0, fd, address, length, Int32(MSG_NOSIGNAL))
        })
    }

    /// A zero-copy send: the kernel reads the caller's memory while the data
    /// is on its way, and posts a second completion (`F_NOTIF`) once it no
    /// longer needs it. This returns only after that second completion.
    nonisolated(nonsending) func sendZeroCopy(_ bytes: UnsafeRawPointer, count: Int) async throws -> Int {
        try validate(.sendZeroCopy, count: count)
        let length = min(count, DescriptorIO.maximumTransfer)
        return try await zeroCopy(.sendZeroCopy, about: address, keepAlive: nil) {
            io_uring_prep_send_zc(&$0, fd, bytes, length, Int32(MSG_NOSIGNAL), 0)
        }
    }

    /// Runs a zero-copy send (`SEND_ZC` or `SENDMSG_ZC`) to its end: the
    /// send's own completion carries the count and `F_MORE`; the
    /// notification that follows (`F_NOTIF`) says the memory is free.
    nonisolated(nonsending) func zeroCopy(
        _ operation: UringOperation, about errorAddress: SocketAddress?, keepAlive: AnyObject?,
        _ prepare: (inout io_uring_sqe) -> Void
    ) async throws -> Int {
        try core.admit(operation, about: .address(errorAddress))
        let deadline = TaskDeadline.inForce
        if let deadline, deadline <= .now { throw UringError(.timedOut, operation, address: errorAddress) }
        let state = ZeroCopyState(keeping: keepAlive)
        let sent = state.sent
        let slot = core.submit(keepAlive: state, onIntermediateCompletion: { result, _ in
            sent.pointer.pointee = result  // the send's own completion (F_MORE)
        }, prepare)
        let completion: Completion
        if let deadline {
            // A linked timeout cannot follow a request with two completions,
            // and no cancellation ends the wait for the notification while
            // the kernel still holds the bytes (a peer that stopped reading
            // leaves them queued). So a watchdog timer keeps the deadline:
            // it resets a stream connection, which frees whatever bytes the
            // kernel took (even ones taken while the cancel below is on its
            // way), and cancels the send; the call throws `timedOut`, and
            // the connection must be closed.
            let socket = fd
            let watchdog = SendWatchdog { Self.reset(streamSocket: socket) }
            let core = self.core
            let target = slot.userData
            let time = KernelTimespec(absolute: deadline)
            let timer = core.submitStream(keepAlive: time, handler: { result, _ in
                guard result == -ETIME else { return }
                watchdog.fire()
                core.requestCancellation(target)
            }) {
                io_uring_prep_timeout(&$0, time.pointer, 0, CU_IORING_TIMEOUT_ABS)
            }
            completion = await core.completion(of: slot)
            core.requestCancellation(timer)
            let (fired, reset) = watchdog.finish()
            // Cancelled too late to stop the send: the bytes went, and the
            // count is returned as usual.
            let sentAnyway = completion.flags & IORING_CQE_F_NOTIF != 0 && sent.pointer.pointee >= 0
            if reset || (fired && !sentAnyway) { throw UringError(.timedOut, operation, address: errorAddress) }
        } else {
            completion = await core.completion(of: slot)
        }
        if completion.flags & IORING_CQE_F_NOTIF == 0 {
            // No notification follows: this was the send's only completion.
            return Int(try core.check(completion, operation, about: .address(errorAddress)))
        }
        let result = sent.pointer.pointee
        if result < 0 { throw core.error(for: result, operation, about: .address(errorAddress)) }
        return Int(result)
    }

    /// Disconnects a stream socket (not a datagram one): `connect` to
    /// `AF_UNSPEC` drops what the socket still queues and sends a reset.
    /// Returns whether it did.
    static func reset(streamSocket socket: Int32) -> Bool {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(socket, SOL_SOCKET, SO_TYPE, &type, &length) == 0, type == Int32(SOCK_STREAM.rawValue)
        else { return false }
        var none = sockaddr()
        none.sa_family = sa_family_t(AF_UNSPEC)
        return Glibc.connect(socket, &none, socklen_t(MemoryLayout<sockaddr>.size)) == 0
    }

    /// Sends all `count` bytes, continuing after short sends.
    @inlinable @inline(__always)
    nonisolated(nonsending) func sendAll(_ address: UnsafeRawPointer, count: Int) async throws {
        try validate(.send, count: count)
        var done = 0
        while done < count {
            done += try await send(address + done, count: count - done)
        }
    }

    /// Sends all `count` bytes by `deadline`, or throws `timedOut`. Each
    /// piece is first sent without waiting (see `sendPiece`), so the usual
    /// case costs one request, and no task-local scope is opened.
    @inlinable @inline(__always)
    nonisolated(nonsending) func sendAll(
        _ address: UnsafeRawPointer, count: Int, deadline: RingClock.Instant
    ) async throws {
        try validate(.send, count: count)
        var done = 0
        while done < count {
            let length = min(count - done, DescriptorIO.maximumTransfer)
            // As `sendPiece` does (change both together), inlined: first
            // without waiting.
            let slot = try startSendNow(address + done, length: length, by: deadline)
            await core.awaitStarted(slot)
            if let sent = try finishSendNow(slot) {
                done += sent
            } else {
                done += try await sendWaiting(address + done, length: length, by: deadline)
            }
        }
    }

    /// Receives at most `count` bytes; 0 means the peer closed its side.
    @inlinable @inline(__always)
    nonisolated(nonsending) func receive(_ address: UnsafeMutableRawPointer, count: Int) async throws -> Int {
        guard let slot = try startReceive(address, count: count) else {
            return try await receiveWithDeadline(address, count: count)
        }
        await core.awaitStarted(slot)
        return try finish(slot, .receive)
    }

    /// Starts a receive, unless a deadline is in force (nil).
    @usableFromInline
    func startReceive(_ address: UnsafeMutableRawPointer, count: Int) throws -> OperationSlot? {
        try validate(.receive, count: count)
        let length = min(count, DescriptorIO.maximumTransfer)
        return try core.start(.receive, about: .address(self.address)) {
            io_uring_prep_recv(&$0, fd, address, length, 0)
        }
    }

    /// A receive bounded by the task's deadline.
    @usableFromInline
    nonisolated(nonsending) func receiveWithDeadline(_ address: UnsafeMutableRawPointer, count: Int) async throws -> Int {
        try validate(.receive, count: count)
        let length = min(count, DescriptorIO.maximumTransfer)
        return Int(try await core.perform(.receive, about: .address(self.address)) {
            io_uring_prep_recv(&$0, fd, address, length, 0)
        })
    }

    @usableFromInline
    func validate(_ operation: UringOperation, count: Int) throws {
        if count <= 0 {
            throw UringError.invalid(operation, "the buffer is empty; pass at least one byte").about(address)
        }
    }

    /// Shuts down one or both directions.
    nonisolated(nonsending) func shutdown(_ how: Int32) async throws {
        _ = try await core.perform(.shutdown, about: .address(address)) { io_uring_prep_shutdown(&$0, fd, how) }
    }

    /// Closes the descriptor; it is closed whatever happens (see
    /// ``DescriptorIO/close(_:core:about:)``).
    nonisolated(nonsending) func close() async throws {
        try await DescriptorIO.close(fd, core: core, about: .address(address))
    }
}

/// What a zero-copy send keeps until its notification: the count its first
/// completion reported, and the message it sends.
private final class ZeroCopyState {
    /// Written on the ring thread by the first completion and read after
    /// the last, which the slot's hand-off orders.
    let sent = KernelMemory<Int32>(-1)
    let kept: AnyObject?
    init(keeping kept: AnyObject?) { self.kept = kept }
}
