import CUring
import Glibc
import Synchronization
import SystemPackage

extension File {
    /// The file's contents as a sequence of chunks, read through the ring with
    /// several reads in flight ahead of the consumer.
    ///
    /// ```swift
    /// for try await chunk in file.chunks(size: 64 * 1024) {
    ///     hasher.update(chunk)
    /// }
    /// ```
    ///
    /// Each chunk is an array holding `size` bytes, except the last, which
    /// holds what remains. A regular file is read no further than its size,
    /// so a small file costs one read of about its own size. Arrays the
    /// consumer has let go of are read into again, by this sequence or a
    /// later one on the same ring (which keeps up to 8 MiB of them); one
    /// the consumer still holds is never written. Reads start at `offset` and go to the end of the
    /// file. On a pipe, socket or terminal the chunks are read one at a time
    /// from the current position instead.
    ///
    /// The sequence shares the file's descriptor (it does not duplicate it),
    /// so it may outlive the `File`: the descriptor then closes when the
    /// sequence ends. When iteration stops early, or the task is cancelled,
    /// the reads still in flight are cancelled; their memory, and the
    /// descriptor, are released once the kernel is done with them.
    ///
    /// Reads of 16 KiB or more from a regular file are done by the kernel's
    /// worker threads, so copying from the page cache overlaps with the
    /// consumer's work on another core and never holds up the ring's
    /// thread; shorter reads are copied inline, which costs less.
    ///
    /// The chunks are ordinary arrays, not aligned, so a file opened with
    /// ``OpenOptions/direct`` fails here with `EINVAL`; read such files with
    /// ``AlignedBuffer`` and `read(into: &buffer, at:)`.
    ///
    /// Inside ``withDeadline(_:_:)`` (or ``withTimeout(_:_:)``), a chunk
    /// that has not arrived by the deadline ends the sequence with
    /// ``UringError/Kind/timedOut``; its read is cancelled in the kernel.
    ///
    /// - Parameters:
    ///   - size: Bytes per chunk.
    ///   - readAhead: Reads kept in flight (at least 1).
    ///   - offset: Where to start.
    public func chunks(size: Int = 64 * 1024, readAhead: Int = 4, from offset: Int64 = 0) -> FileChunks {
        FileChunks(
            ring: ring, sharing: sharedDescriptor, path: path, size: size, readAhead: readAhead, offset: offset)
    }
}

/// Chunks of a file, read ahead through the ring. See ``File/chunks(size:readAhead:from:)``.
public struct FileChunks: AsyncSequence, Sendable {
    /// Each chunk is a new array of the bytes read.
    public typealias Element = [UInt8]
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    /// Keeps the ring (and its thread) alive while the sequence exists.
    let ring: RingActor
    var core: RingCore { ring.core }
    let source: Result<OwnedDescriptor, UringError>
    let path: FilePath?
    let size: Int
    let readAhead: Int
    let offset: Int64

    init(ring: RingActor, sharing descriptor: OwnedDescriptor, path: FilePath?, size: Int, readAhead: Int, offset: Int64) {
        self.ring = ring
        self.path = path
        self.size = size
        self.readAhead = Swift.max(1, readAhead)
        self.offset = offset
        if size <= 0 {
            source = .failure(.invalid(.read, path: path, "chunk size \(size) must be positive"))
        } else if offset < 0 {
            source = .failure(.invalid(.read, path: path, "offset \(offset) is negative"))
        } else {
            source = .success(descriptor)
        }
    }

    /// Starts reading.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(reader: ChunkReader(self))
    }

    /// Produces the chunks in order.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let reader: ChunkReader

        /// The next chunk, or nil at the end of the file.
        public nonisolated(nonsending) mutating func next() async throws -> [UInt8]? {
            try await reader.next()
        }

        /// The next chunk, or nil at the end of the file, without leaving the
        /// caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> [UInt8]? {
            try await reader.next()
        }
    }
}


/// The memory one chunk read goes into, and the descriptor it reads from. The
/// ring holds it (as the slot's `keepAlive`) until the kernel's completion, so
/// an abandoned read never writes into freed memory, and the descriptor is not
/// closed (and its number reused) while a read of it may still be submitted.
final class ChunkBox: @unchecked Sendable {
    // `@unchecked Sendable`: the kernel writes `bytes` while the read is in
    // flight; the reader takes them only after observing the completion
    // (an acquire on the slot's phase), and the ring only releases the box.
    var bytes: [UInt8]
    let address: UnsafeMutableRawPointer
    let descriptor: OwnedDescriptor

    /// A box for one read of `length` bytes. `reusing` is an array of that
    /// length handed out earlier: if its consumer has dropped it, its
    /// storage is read into again, saving an allocation and the page faults
    /// of fresh memory; if the consumer still holds it, the mutable access
    /// below copies it first (copy-on-write), so the kernel never writes
    /// memory a caller can see.
    ///
    /// A fresh array is not zero-filled: the kernel overwrites what it
    /// reads, and the reader trims the array to the bytes read before
    /// anyone sees it, so no byte the kernel did not write is ever exposed.
    init(length: Int, descriptor: OwnedDescriptor, reusing spare: consuming [UInt8]?) {
        self.descriptor = descriptor
        // Moved, not copied: a second reference would force the copy below.
        if let spare = consume spare {
            bytes = spare
        } else {
            bytes = [UInt8](unsafeUninitializedCapacity: length) { _, count in count = length }
        }
        address = bytes.withUnsafeMutableBytes { $0.baseAddress! }
    }
}

/// The iterator's state: the reads in flight, in file order.
final class ChunkReader {
    private struct Read {
        let slot: OperationSlot
        let box: ChunkBox
        let offset: Int64
        let length: Int
    }

    private let ring: RingActor
    private var core: RingCore { ring.core }
    private let descriptor: OwnedDescriptor?
    private var openError: UringError?
    private let path: FilePath?
    private let size: Int
    private let readAhead: Int
    /// Positional reads with read-ahead, or reads at the current position.
    private let positional: Bool
    /// A regular file's size when the reads began, or nil once it is not
    /// known (another kind of file, or one that changed size). While it is
    /// known, reads stop at it: the last one asks for a byte more than
    /// remains, and coming back short it proves the end without a further
    /// read. A 3-byte file thus costs one 4-byte read.
    private var knownSize: Int64?
    private var nextOffset: Int64
    private var inFlight = FIFO<Read>()
    /// Arrays returned by `next()`, kept to be read into again once their
    /// consumer lets go of them (see `ChunkBox.init`).
    private let spares: ChunkSpares
    private var finished = false

    init(_ chunks: FileChunks) {
        ring = chunks.ring
        spares = chunks.ring.chunkSpares
        path = chunks.path
        size = chunks.size
        nextOffset = chunks.offset
        switch chunks.source {
        case .success(let descriptor):
            self.descriptor = descriptor
            var info = stat()
            if fstat(descriptor.fd, &info) == 0 && info.st_mode & S_IFMT == S_IFREG {
                positional = true
                knownSize = Int64(info.st_size)
            } else {
                positional = lseek(descriptor.fd, 0, SEEK_CUR) >= 0
            }
        case .failure(let error):
            descriptor = nil
            openError = error
            positional = false
        }
        readAhead = positional ? chunks.readAhead : 1
    }

    deinit {
        abandonAll()
    }

    nonisolated(nonsending) func next() async throws -> [UInt8]? {
        if finished { return nil }
        if let openError {
            finished = true
            throw openError
        }
        // A deadline already past starts no read (one on a pipe would take
        // bytes only to drop them).
        if let deadline = TaskDeadline.inForce, deadline <= .now {
            finish()
            throw UringError.timedOut(.read, path: path)
        }
        do {
            try fill()
        } catch {
            finish()
            throw error
        }
        guard let head = inFlight.popFirst() else {
            finish()
            return nil
        }
        let n: Int
        do {
            let completion: Completion
            if let deadline = TaskDeadline.inForce {
                completion = try await self.completion(of: head.slot, until: deadline)
            } else {
                completion = await core.completion(of: head.slot)
            }
            n = Int(try core.check(completion, .read, about: .path(path)))
        } catch {
            finish()
            throw error
        }
        if n == 0 {
            finish()
            return nil
        }
        var bytes = head.box.bytes
        head.box.bytes = []
        if n == bytes.count {
            spares.keep(bytes)
        } else {
            bytes.removeLast(bytes.count - n)
        }
        let end = head.offset + Int64(n)
        if let size = knownSize, end > size {
            knownSize = nil  // the file grew: read on to a read of nothing
        }
        if positional && n < head.length {
            if let size = knownSize, end == size {
                // Short at the size it had: the end, proven by this read.
                finish()
                return bytes
            }
            // A short read before the end: the reads behind it started at the
            // wrong offsets. Drop them and continue right after this one.
            abandonAll()
            nextOffset = end
            knownSize = nil
        }
        return bytes
    }

    /// Waits for the read in `slot`, which a kernel timer cancels at
    /// `deadline`; throws ``UringError/Kind/timedOut`` if it did. The read
    /// is still awaited to its completion, so its buffer is never written
    /// after this returns.
    private nonisolated(nonsending) func completion(
        of slot: OperationSlot, until deadline: RingClock.Instant
    ) async throws -> Completion {
        let timedOut = UringError.timedOut(.read, path: path)
        guard deadline > .now else {
            core.abandon(slot)
            throw timedOut
        }
        let (completion, cancelledByDeadline) = await core.completion(of: slot, cancellingAt: deadline)
        if cancelledByDeadline { throw timedOut }
        return completion
    }

    /// Reads of a regular file this long or longer are done by a kernel
    /// worker (`IOSQE_ASYNC`) rather than inline in the ring thread's
    /// submission: a shorter copy costs less than the hand-off (see
    /// `uring-bench smallfiles` and `seqread`).
    static let workerReadThreshold = 16 * 1024

    private func fill() throws {
        guard let descriptor else { return }
        while inFlight.count < readAhead {
            var length = min(size, DescriptorIO.maximumTransfer)
            if let knownSize {
                // Up to one byte past the known end, and nothing beyond it.
                let remaining = knownSize - nextOffset + 1
                if remaining <= 0 { break }
                length = Int(min(Int64(length), remaining))
            }
            try core.admit(.read, about: .path(path))
            let box = ChunkBox(length: length, descriptor: descriptor, reusing: spares.take(length: length))
            let offset = nextOffset
            let position = positional ? UInt64(offset) : DescriptorIO.currentPosition
            let fd = descriptor.fd
            let regularFile = knownSize != nil
            let slot = core.submit(keepAlive: box) {
                io_uring_prep_read(&$0, fd, box.address, UInt32(length), position)
                // A large copy from the page cache goes to a kernel worker,
                // on another core, so it overlaps with what the consumer
                // does with the chunk before, and the ring thread stays free.
                if regularFile && length >= Self.workerReadThreshold { $0.flags |= CU_IOSQE_ASYNC }
            }
            inFlight.append(Read(slot: slot, box: box, offset: offset, length: length))
            if positional { nextOffset += Int64(length) }
        }
    }

    private func finish() {
        finished = true
        abandonAll()
    }

    private func abandonAll() {
        while let read = inFlight.popFirst() {
            core.abandon(read.slot)
        }
    }
}
