import CUring
import Glibc
import SystemPackage

/// The two ends of a pipe, each a ``File``. Bytes written to ``writing``
/// come out of ``reading``. Pipes are what ``File/splice(to:count:from:to:)``
/// and ``File/tee(to:count:)`` move bytes through without copying them
/// into the process.
@frozen
public struct Pipe: ~Copyable, Sendable {
    /// The end to read from.
    public var reading: File
    /// The end to write to.
    public var writing: File

    /// Creates a pipe (`pipe2`, close-on-exec) whose ends use `ring`.
    ///
    /// - Parameter ring: The ring both ends' operations go through.
    /// - Parameter capacity: Ask the kernel for this many bytes of pipe
    ///   buffer (`F_SETPIPE_SZ`); the default keeps the system's 64 KiB.
    public init(on ring: RingActor, capacity: Int? = nil) throws(UringError) {
        var fds: [Int32] = [-1, -1]
        guard cu_pipe(&fds) == 0 else {
            throw UringError(.system, operation: .splice, errno: Errno(rawValue: Glibc.errno), detail: "pipe2 failed")
        }
        reading = File(adopting: FileDescriptor(rawValue: fds[0]), path: "<pipe>", on: ring)
        writing = File(adopting: FileDescriptor(rawValue: fds[1]), path: "<pipe>", on: ring)
        if let capacity {
            _ = fcntl(fds[1], 1031 /* F_SETPIPE_SZ */, Int32(clamping: capacity))  // best effort
        }
    }
}

extension File {
    /// Moves up to `count` bytes from this file to `destination` inside the
    /// kernel (`IORING_OP_SPLICE`); one of the two must be a pipe. Returns
    /// the bytes moved, 0 at end of input.
    ///
    /// - Parameters:
    ///   - destination: Where the bytes go.
    ///   - count: The most bytes to move.
    ///   - sourceOffset: Where to read this file (not for a pipe); nil uses
    ///     and advances its position.
    ///   - destinationOffset: Where to write `destination` (not for a pipe).
    public func splice(
        to destination: borrowing File, count: Int, from sourceOffset: Int64? = nil, to destinationOffset: Int64? = nil
    ) async throws -> Int {
        try io.validate(.splice, count: count, offset: sourceOffset)
        let input = descriptor.rawValue
        let output = destination.descriptor.rawValue
        let length = UInt32(min(count, DescriptorIO.maximumTransfer))
        return Int(try await ring.core.perform(.splice, path: path) {
            io_uring_prep_splice(
                &$0, input, sourceOffset ?? -1, output, destinationOffset ?? -1, length, 0)
        })
    }

    /// Copies up to `count` bytes from this pipe into the pipe `destination`
    /// without consuming them (`IORING_OP_TEE`). Returns the bytes copied.
    public func tee(to destination: borrowing File, count: Int) async throws -> Int {
        try io.validate(.tee, count: count, offset: nil)
        let input = descriptor.rawValue
        let output = destination.descriptor.rawValue
        let length = UInt32(min(count, DescriptorIO.maximumTransfer))
        return Int(try await ring.core.perform(.tee, path: path) {
            io_uring_prep_tee(&$0, input, output, length, 0)
        })
    }

    /// Copies the file at `source` to `destination` through the ring,
    /// without the bytes entering the process: each piece is spliced from
    /// the source into a pipe and from the pipe into the destination, as one
    /// linked pair of requests, with two pieces (two pipes) in flight.
    ///
    /// The destination is created (with the source's permissions) or
    /// truncated. On an error it is left as far as the copy got.
    ///
    /// - Parameters:
    ///   - source: The file to copy.
    ///   - destination: The copy's path.
    ///   - ring: The ring that performs the copy.
    ///   - pieceSize: Bytes per splice pair (each pipe is sized to match).
    ///   - progress: Called after each piece with the bytes copied so far and
    ///     the source's size when the copy began.
    /// - Returns: The bytes copied.
    /// - Throws: ``UringError`` naming the failing step and its path.
    @discardableResult
    public static func copy(
        from source: FilePath, to destination: FilePath, on ring: RingActor, pieceSize: Int = 1 << 20,
        progress: ((_ copied: Int64, _ total: Int64) -> Void)? = nil
    ) async throws -> Int64 {
        guard pieceSize > 0 else { throw UringError.invalid(.copy, path: source, "pieceSize must be positive") }
        guard ring.core.submissionEntries >= 2 else {
            throw UringError.invalid(.copy, path: source, "a copy needs a ring of at least 2 entries (this one has 1)")
        }
        let input = try await File.open(source, on: ring)
        let metadata = try await input.metadata()
        if metadata.type == .directory {
            throw UringError(.system, operation: .copy, errno: .isDirectory, path: source)
        }
        // Truncating the destination would destroy a source that is the same file.
        if let existing = try? await ring.metadata(at: destination),
            existing.inode == metadata.inode && existing.device == metadata.device
        {
            throw UringError.invalid(.copy, path: destination, "the destination is the source file itself")
        }
        let output = try await File.open(
            destination, .writeOnly, options: [.create, .truncate], permissions: metadata.permissions, on: ring)
        let pipes = [try PipePair(capacity: pieceSize), try PipePair(capacity: pieceSize)]
        let core = ring.core
        // A piece never exceeds what a pipe holds, or every splice would come up short.
        let piece = Int64(min(pieceSize, DescriptorIO.maximumTransfer, pipes[0].capacity, pipes[1].capacity))
        let endpoints = SpliceEnds(input: input.descriptor.rawValue, output: output.descriptor.rawValue)
        // Pieces in flight, oldest first; piece i uses pipe i % 2.
        var inFlight: [(offset: Int64, pipe: PipePair, slots: [OperationSlot])] = []
        var next: Int64 = 0
        var copied: Int64 = 0
        var failure: (any Error)? = nil
        var reachedEnd = false
        func start(_ offset: Int64, _ pipe: PipePair) throws {
            try core.admit(.copy, path: source)
            let slots = core.submitChain(2) { step, request in
                if step == 0 {
                    io_uring_prep_splice(&request, endpoints.input, offset, pipe.writing, -1, UInt32(piece), 0)
                } else {
                    io_uring_prep_splice(&request, pipe.reading, -1, endpoints.output, offset, UInt32(piece), 0)
                }
                return nil
            }
            inFlight.append((offset, pipe, slots))
        }
        do {
            for pipe in pipes {
                try start(next, pipe)
                next += piece
            }
        } catch {
            failure = error
        }
        while !inFlight.isEmpty {
            let (offset, pipe, slots) = inFlight.removeFirst()
            let first = await core.completion(of: slots[0])
            let second = await core.completion(of: slots[1])
            guard failure == nil else { continue }  // drain what is in flight, then throw
            do {
                var filled = Int(try core.check(first, .splice, path: source))
                var written = 0
                if second.result != -ECANCELED {
                    written = Int(try core.check(second, .splice, path: destination))
                }
                while true {
                    // A short splice broke the link: drain the pipe here, then
                    // fill the rest of the piece; only 0 bytes means the end.
                    while written < filled {
                        let n = try await core.perform(.splice, path: destination) {
                            io_uring_prep_splice(
                                &$0, pipe.reading, -1, endpoints.output, offset + Int64(written),
                                UInt32(filled - written), 0)
                        }
                        if n == 0 { throw UringError.system(.splice, EPIPE, path: destination) }
                        written += Int(n)
                    }
                    if Int64(filled) == piece { break }
                    let n = try await core.perform(.splice, path: source) {
                        io_uring_prep_splice(
                            &$0, endpoints.input, offset + Int64(filled), pipe.writing, -1,
                            UInt32(piece - Int64(filled)), 0)
                    }
                    if n == 0 {
                        reachedEnd = true
                        break
                    }
                    filled += Int(n)
                }
                // Pieces finish in order, so the copy is contiguous up to here
                // (a piece past the end fills nothing and changes nothing).
                if filled > 0 {
                    copied = offset + Int64(filled)
                    progress?(copied, metadata.size)
                }
                if !reachedEnd {
                    try start(next, pipe)
                    next += piece
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        try await output.close()
        try await input.close()
        return copied
    }
}

/// The descriptors of one copy, captured by its request preparations.
private struct SpliceEnds {
    let input: Int32
    let output: Int32
}

/// A pipe used only inside ``File/copy(from:to:on:pieceSize:progress:)``,
/// closed when the copy is done.
private final class PipePair {
    let reading: Int32
    let writing: Int32

    init(capacity: Int) throws(UringError) {
        var fds: [Int32] = [-1, -1]
        guard cu_pipe(&fds) == 0 else {
            throw UringError(.system, operation: .copy, errno: Errno(rawValue: Glibc.errno), detail: "pipe2 failed")
        }
        reading = fds[0]
        writing = fds[1]
        _ = fcntl(writing, 1031 /* F_SETPIPE_SZ */, Int32(clamping: capacity))  // best effort
    }

    /// What the pipe holds, in bytes (`F_GETPIPE_SZ`).
    var capacity: Int { Int(max(4096, fcntl(writing, 1032 /* F_GETPIPE_SZ */))) }

    deinit {
        Glibc.close(reading)
        Glibc.close(writing)
    }
}
