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
    /// What a write or a send needs besides its request: the bytes the
    /// request points into, kept alive until it completes, and what its
    /// errors name.
    fileprivate struct Payload {
        let index: Int
        let bytes: [UInt8]
        let context: DescriptorContext
    }

    /// One request, in a few plain words (no reference to count): the
    /// kernel's request is made from it at submission.
    fileprivate struct Request {
        let operation: UringOperation
        var fd: Int32 = -1
        var length: UInt32 = 0
        /// Into an array that `payloads` keeps alive and unchanged.
        var address: UnsafeRawPointer? = nil
        var offset: UInt64 = 0

        func prepare(_ request: inout io_uring_sqe) {
            switch operation {
            case .write: io_uring_prep_write(&request, fd, address, length, offset)
            case .send: io_uring_prep_send(&request, fd, address, Int(length), Int32(MSG_NOSIGNAL))
            default: io_uring_prep_nop(&request)
            }
        }
    }

    fileprivate let core: RingCore
    /// The requests, in order.
    fileprivate var requests: [Request] = []
    /// Whether `requests` holds writes, and sends (NOPs need no check: every
    /// io_uring has them).
    fileprivate var hasWrites = false
    fileprivate var hasSends = false
    /// One per write and send (NOPs carry nothing).
    fileprivate var payloads: [Payload] = []
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
        requests.append(Request(operation: .nop))
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
        hasWrites = true
        addTransfer(.write, fd: io.fd, bytes: bytes, offset: UInt64(offset), context: .path(io.path))
    }

    /// Adds a send of `bytes` on `connection`; its result is the number of
    /// bytes sent (a short send is not continued).
    public mutating func send(_ bytes: [UInt8], on connection: borrowing StreamConnection) {
        let io = connection.io
        guard check(.send, count: bytes.count, core: io.core) else { return }
        hasSends = true
        addTransfer(.send, fd: io.fd, bytes: bytes, offset: 0, context: .address(io.address))
    }

    /// Adds a write or send of `bytes`, keeping the array in `payloads`.
    private mutating func addTransfer(
        _ operation: UringOperation, fd: Int32, bytes: [UInt8], offset: UInt64, context: DescriptorContext
    ) {
        // The address stays valid: `payloads` keeps this very array, never
        // mutated, alive until the request completes.
        let address = bytes.withUnsafeBytes { UnsafeRawPointer($0.baseAddress) }
        payloads.append(Payload(index: requests.count, bytes: bytes, context: context))
        requests.append(
            Request(
                operation: operation, fd: fd, length: UInt32(min(bytes.count, DescriptorIO.maximumTransfer)),
                address: address, offset: offset))
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

    /// Throws `unsupported`, naming the first request of this kind, when the
    /// kernel lacks `operation`.
    fileprivate static func checkSupported(
        _ operation: UringOperation, _ requests: [Request], _ payloads: [Payload], _ core: RingCore
    ) throws {
        guard !core.isSupported(operation), let index = requests.firstIndex(where: { $0.operation == operation })
        else { return }
        throw context(of: index, in: payloads).error(.unsupported, operation)
    }

    /// What the errors of request `index` name.
    fileprivate static func context(of index: Int, in payloads: [Payload]) -> DescriptorContext {
        payloads.first { $0.index == index }?.context ?? DescriptorContext()
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
        if batch.requests.isEmpty { return [] }
        let core = self.core
        let requests = batch.requests
        let payloads = batch.payloads
        try core.admit(requests[0].operation, about: RingBatch.context(of: 0, in: payloads))
        if batch.hasWrites { try RingBatch.checkSupported(.write, requests, payloads, core) }
        if batch.hasSends { try RingBatch.checkSupported(.send, requests, payloads, core) }
        // The requests point into the payloads' arrays, which the slots keep
        // alive until every request has completed, whatever this task does.
        let slots = requests.withUnsafeBufferPointer { requests in
            core.submitBatch(requests.count, keepAlive: payloads.isEmpty ? nil : KernelMemory(payloads)) { index, sqe in
                requests[index].prepare(&sqe)
            }
        }
        var results = [Int](repeating: 0, count: requests.count)
        var failure: (any Error)? = nil
        var start = 0
        for slot in slots {
            await core.completion(ofBatch: slot) { batch, aborted in
                results.withUnsafeMutableBufferPointer { results in
                    for (member, result) in batch.enumerated() {
                        let index = start + member
                        if result >= 0 && !aborted {
                            results[index] = Int(result)
                            continue
                        }
                        let completion = Completion(result: result, flags: 0, aborted: aborted)
                        do {
                            _ = try core.check(
                                completion, requests[index].operation, about: RingBatch.context(of: index, in: payloads))
                        } catch {
                            if failure == nil { failure = error }
                        }
                    }
                }
                start += batch.count
            }
        }
        if let failure { throw failure }
        return results
    }
}
