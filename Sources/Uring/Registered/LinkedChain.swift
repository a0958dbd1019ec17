import CUring
import Glibc
import SystemPackage

/// Requests the kernel runs one after another, submitted together as one
/// linked chain (`IOSQE_IO_LINK`): write then fsync, or open, read and
/// close a file in a single trip to the kernel.
///
/// Build the chain in the closure given to ``RingActor/linked(hard:_:)``;
/// steps run in the order they were added. With soft links (the default) a
/// step that fails, or reads or writes fewer bytes than asked, cancels the
/// steps after it, and each of those reports ``LinkedResult/Outcome/cancelled``.
/// With hard links every step runs whatever the previous one did.
///
/// Steps that name a registered-file slot (``open(_:_:options:permissions:into:)``,
/// ``read(from:count:at:)-(RegisteredIndex,_,_)``, ``close(_:)``) let a chain use a file it
/// opens itself. Choose slots below the `reserved` count given to
/// ``RingActor/registerFiles(capacity:reserved:)`` so the kernel never
/// hands them out on its own.
///
/// ```swift
/// let results = try await ring.linked { chain in
///     chain.write(header, to: file, at: 0)
///     chain.sync(file)
/// }
/// try results[1].outcome.get()
/// ```
public struct LinkedChain {
    struct Step {
        let operation: UringOperation
        let path: FilePath?
        let keepAlive: AnyObject?
        let output: ReadOutput?
        let prepare: (inout io_uring_sqe) -> Void
    }

    var steps: [Step] = []

    /// Adds a write of `bytes` to `file` at `offset`.
    public mutating func write(_ bytes: [UInt8], to file: borrowing File, at offset: Int64) {
        let fd = file.descriptor.rawValue
        let storage = ByteStorage(bytes)
        steps.append(Step(operation: .write, path: file.path, keepAlive: storage, output: nil) {
            io_uring_prep_write(&$0, fd, storage.pointer, UInt32(storage.count), UInt64(offset))
        })
    }

    /// Adds a read of up to `count` bytes of `file` at `offset`; the bytes
    /// come back in the step's ``LinkedResult/bytes``.
    public mutating func read(from file: borrowing File, count: Int, at offset: Int64) {
        let fd = file.descriptor.rawValue
        let output = ReadOutput(count: count)
        steps.append(Step(operation: .read, path: file.path, keepAlive: output, output: output) {
            io_uring_prep_read(&$0, fd, output.pointer, UInt32(output.count), UInt64(offset))
        })
    }

    /// Adds an `fsync` of `file` (or `fdatasync` with `dataOnly`).
    public mutating func sync(_ file: borrowing File, dataOnly: Bool = false) {
        let fd = file.descriptor.rawValue
        steps.append(Step(operation: dataOnly ? .syncData : .sync, path: file.path, keepAlive: nil, output: nil) {
            io_uring_prep_fsync(&$0, fd, dataOnly ? UInt32(IORING_FSYNC_DATASYNC) : 0)
        })
    }

    /// Adds an open of `path` into registered-file slot `index` (replacing
    /// what the slot held); later steps name the file by that index.
    public mutating func open(
        _ path: FilePath, _ access: FileDescriptor.AccessMode = .readOnly, options: OpenOptions = [],
        permissions: FilePermissions? = nil, into index: RegisteredIndex
    ) {
        let slot = index.position
        let name = PathStorage(path)
        let flags = options.flags(access)
        let mode = (permissions ?? FilePermissions(rawValue: 0o644)).rawValue
        steps.append(Step(operation: .open, path: path, keepAlive: name, output: nil) {
            cu_prep_open_direct(&$0, AT_FDCWD, name.pointer, flags, mode, UInt32(slot))
        })
    }

    /// Adds a read of up to `count` bytes at `offset` from the registered
    /// file at `index`; the bytes come back in the step's
    /// ``LinkedResult/bytes``.
    public mutating func read(from index: RegisteredIndex, count: Int, at offset: Int64) {
        let slot = index.position
        let output = ReadOutput(count: count)
        steps.append(Step(operation: .read, path: nil, keepAlive: output, output: output) {
            io_uring_prep_read(&$0, Int32(slot), output.pointer, UInt32(output.count), UInt64(offset))
            cu_sqe_use_fixed_file(&$0)
        })
    }

    /// Adds a write of `bytes` at `offset` to the registered file at `index`.
    public mutating func write(_ bytes: [UInt8], to index: RegisteredIndex, at offset: Int64) {
        let slot = index.position
        let storage = ByteStorage(bytes)
        steps.append(Step(operation: .write, path: nil, keepAlive: storage, output: nil) {
            io_uring_prep_write(&$0, Int32(slot), storage.pointer, UInt32(storage.count), UInt64(offset))
            cu_sqe_use_fixed_file(&$0)
        })
    }

    /// Adds a close of the registered file at `index`, which empties its
    /// slot.
    public mutating func close(_ index: RegisteredIndex) {
        let slot = index.position
        steps.append(Step(operation: .close, path: nil, keepAlive: nil, output: nil) {
            io_uring_prep_close_direct(&$0, UInt32(slot))
        })
    }

    /// Adds a request that does nothing.
    public mutating func nop() {
        steps.append(Step(operation: .nop, path: nil, keepAlive: nil, output: nil) { io_uring_prep_nop(&$0) })
    }
}

/// What one step of a ``LinkedChain`` did.
public struct LinkedResult: Sendable {
    /// How a step ended.
    public enum Outcome: Sendable {
        /// It ran; the result is the kernel's (bytes moved, or 0).
        case completed(Int)
        /// It ran and failed.
        case failed(UringError)
        /// It never ran: an earlier step failed or fell short, or the chain
        /// was cancelled.
        case cancelled

        /// The result, or the failure as an error (`CancellationError` for
        /// a cancelled step).
        public func get() throws -> Int {
            switch self {
            case .completed(let value): return value
            case .failed(let error): throw error
            case .cancelled: throw CancellationError()
            }
        }
    }

    /// The step's operation.
    public let operation: UringOperation
    /// How the step ended.
    public let outcome: Outcome
    /// For reads: the bytes read.
    public let bytes: [UInt8]?
}

extension RingActor {
    /// Builds a chain of requests with `build` and submits it as one; see
    /// ``LinkedChain``. Returns one result per step, in order.
    ///
    /// - Parameter build: Adds the steps, in order, to the chain it is given.
    /// - Parameter hard: Link with `IOSQE_IO_HARDLINK`: a failing step does
    ///   not cancel the rest.
    /// - Throws: ``UringError`` of kind ``UringError/Kind/invalidArgument`` for
    ///   an empty chain or one longer than the submission queue, an error
    ///   `build` threw, or one that stops every request (the ring shut down,
    ///   the task was cancelled before submission). Steps that fail report
    ///   it in their results instead.
    public nonisolated(nonsending) func linked(
        hard: Bool = false, _ build: (inout LinkedChain) throws -> Void
    ) async throws -> [LinkedResult] {
        var chain = LinkedChain()
        try build(&chain)
        let steps = chain.steps
        guard !steps.isEmpty, steps.count <= Int(core.submissionEntries) else {
            throw UringError.invalid(
                .linked, "a chain needs 1 to \(core.submissionEntries) steps, not \(steps.count)")
        }
        try core.admit(steps[0].operation, about: .path(steps[0].path))
        for step in steps where !core.isSupported(step.operation) {
            throw UringError.unsupported(step.operation, path: step.path)
        }
        let slots = core.submitChain(steps.count, hard: hard) { index, request in
            steps[index].prepare(&request)
            return steps[index].keepAlive
        }
        var results: [LinkedResult] = []
        results.reserveCapacity(steps.count)
        for (step, slot) in zip(steps, slots) {
            let completion = await core.completion(of: slot)
            let outcome: LinkedResult.Outcome
            if completion.aborted || completion.result == -ECANCELED {
                outcome = .cancelled
            } else if completion.result < 0 {
                let error = core.error(for: completion.result, step.operation, about: .path(step.path))
                outcome = .failed(error as? UringError ?? .system(step.operation, -completion.result, path: step.path))
            } else {
                outcome = .completed(Int(completion.result))
            }
            let bytes: [UInt8]? = step.output.map { output in
                if case .completed(let n) = outcome { return output.bytes(n) }
                return []
            }
            results.append(LinkedResult(operation: step.operation, outcome: outcome, bytes: bytes))
        }
        return results
    }
}

/// Bytes a chained write sends, on the heap until the completion.
final class ByteStorage: @unchecked Sendable {
    // `@unchecked Sendable`: written once in init, then only read (by the kernel).
    let pointer: UnsafeMutableRawPointer
    let count: Int
    init(_ bytes: [UInt8]) {
        count = min(bytes.count, DescriptorIO.maximumTransfer)
        pointer = .allocate(byteCount: max(1, count), alignment: 16)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { pointer.copyMemory(from: base, byteCount: count) }
        }
    }
    deinit { pointer.deallocate() }
}

/// Memory a chained read fills, on the heap until the completion.
final class ReadOutput: @unchecked Sendable {
    // `@unchecked Sendable`: written by the kernel during the request, read
    // by the caller only after its completion.
    let pointer: UnsafeMutableRawPointer
    let count: Int
    init(count: Int) {
        self.count = max(0, min(count, DescriptorIO.maximumTransfer))
        pointer = .allocate(byteCount: max(1, self.count), alignment: 16)
    }
    func bytes(_ n: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: pointer, count: min(n, count)))
    }
    deinit { pointer.deallocate() }
}
