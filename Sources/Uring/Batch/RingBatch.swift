import CUring
import Glibc
import SystemPackage

/// Requests gathered to reach the kernel together and be awaited once; see
/// ``RingActor/batch(_:)``.
///
/// Each request is added with the same words as its single form
/// (a file's `write(_:at:)`, a connection's `send(_:)`, ``RingActor/nop()``),
/// and its result comes back at the index it was added at.
public struct RingBatch: ~Copyable {
    fileprivate enum Request {
        case nop
        case write(fd: Int32, bytes: [UInt8], offset: Int64, path: FilePath?)
        case send(fd: Int32, bytes: [UInt8], address: SocketAddress?)
    }

    fileprivate let core: RingCore
    fileprivate var requests: [Request] = []
    /// The first argument found wrong while adding, thrown before anything
    /// is submitted.
    fileprivate var invalid: UringError?

    fileprivate init(core: RingCore) {
        self.core = core
        requests.reserveCapacity(32)
    }

    /// How many requests the batch holds.
    public var count: Int { requests.count }

    /// Adds a request that does nothing; its result is 0.
    public mutating func nop() {
        requests.append(.nop)
    }

    /// Adds a write of `bytes` to `file` at `offset`; its result is the
    /// number of bytes written (a short write is not continued). The batch
    /// keeps its own reference to `bytes` until the write completes.
    public mutating func write(_ bytes: [UInt8], to file: borrowing File, at offset: Int64) {
        let io = file.io
        guard check(.write, count: bytes.count, core: io.core) else { return }
        if offset < 0 {
            invalid = invalid ?? .invalid(.write, path: io.path, "offset \(offset) is negative")
            return
        }
        requests.append(.write(fd: io.fd, bytes: bytes, offset: offset, path: io.path))
    }

    /// Adds a send of `bytes` on `connection`; its result is the number of
    /// bytes sent (a short send is not continued).
    public mutating func send(_ bytes: [UInt8], on connection: borrowing StreamConnection) {
        let io = connection.io
        guard check(.send, count: bytes.count, core: io.core) else { return }
        requests.append(.send(fd: io.fd, bytes: bytes, address: io.address))
    }

    private mutating func check(_ operation: UringOperation, count: Int, core: RingCore) -> Bool {
        if core !== self.core {
            invalid = invalid ?? .invalid(operation, "the descriptor belongs to another ring than the batch")
            return false
        }
        if count == 0 {
            invalid = invalid ?? .invalid(operation, "the buffer is empty; pass at least one byte")
            return false
        }
        return true
    }
}

extension RingActor {
    /// Submits every request `build` adds, together: on the ring's thread in
    /// one system call, from elsewhere in one wake-up of the ring. Then
    /// waits for all of them with one suspension, and returns their results
    /// in the order they were added.
    ///
    /// This is the form for many small requests at once: each awaited
    /// request costs a task switch, while a batch costs one for all.
    ///
    /// ```swift
    /// let written = try await ring.batch { batch in
    ///     for (index, record) in records.enumerated() {
    ///         batch.write(record, to: log, at: Int64(index * 512))
    ///     }
    /// }
    /// ```
    ///
    /// - Throws: ``UringError/Kind/invalidArgument`` for a request found
    ///   wrong while adding (nothing is submitted then), or otherwise the
    ///   first failure, after every request has completed. A cancelled task
    ///   cancels the requests still in the kernel and throws
    ///   `CancellationError`.
    public nonisolated(nonsending) func batch(_ build: (inout RingBatch) throws -> Void) async throws -> [Int] {
        var batch = RingBatch(core: core)
        try build(&batch)
        if let invalid = batch.invalid { throw invalid }
        let requests = batch.requests
        if requests.isEmpty { return [] }
        let core = self.core
        try core.admit(requests[0].operation, about: requests[0].context)
        for request in requests where !core.isSupported(request.operation) {
            throw request.context.error(.unsupported, request.operation)
        }
        // `requests` is immutable and alive in this frame until every
        // completion has been awaited below, so the storage of each array in
        // it stays where the kernel was told it is.
        let slots = requests.withUnsafeBufferPointer { requests in
            core.submitBatch(requests.count) { index, sqe in
                // Matched without binding first: a NOP copies no payload.
                if case .nop = requests[index] {
                    io_uring_prep_nop(&sqe)
                    return
                }
                switch requests[index] {
                case .nop:
                    io_uring_prep_nop(&sqe)
                case .write(let fd, let bytes, let offset, _):
                    bytes.withUnsafeBytes {
                        io_uring_prep_write(&sqe, fd, $0.baseAddress, UInt32(min($0.count, DescriptorIO.maximumTransfer)), UInt64(offset))
                    }
                case .send(let fd, let bytes, _):
                    bytes.withUnsafeBytes {
                        io_uring_prep_send(&sqe, fd, $0.baseAddress, min($0.count, DescriptorIO.maximumTransfer), Int32(MSG_NOSIGNAL))
                    }
                }
            }
        }
        var results: [Int] = []
        results.reserveCapacity(requests.count)
        var failure: (any Error)? = nil
        for slot in slots {
            await core.completion(ofBatch: slot) { batch, aborted in
                for result in batch {
                    if result >= 0 && !aborted {
                        results.append(Int(result))
                        continue
                    }
                    let request = requests[results.count]
                    let completion = Completion(result: result, flags: 0, aborted: aborted)
                    do {
                        results.append(Int(try core.check(completion, request.operation, about: request.context)))
                    } catch {
                        if failure == nil { failure = error }
                        results.append(0)
                    }
                }
            }
        }
        if let failure { throw failure }
        return results
    }
}

extension RingBatch.Request {
    var operation: UringOperation {
        switch self {
        case .nop: .nop
        case .write: .write
        case .send: .send
        }
    }

    var context: DescriptorContext {
        switch self {
        case .nop: DescriptorContext()
        case .write(_, _, _, let path): .path(path)
        case .send(_, _, let address): .address(address)
        }
    }
}
