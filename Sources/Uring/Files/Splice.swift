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
    /// linked pair of requests.
    ///
    /// The destination is created (with the source's permissions) or
    /// truncated. On an error it is left as far as the copy got.
    ///
    /// - Parameters:
    ///   - pieceSize: Bytes per splice pair (the pipe is sized to match).
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
        let input = try await File.open(source, on: ring)
        let metadata = try await input.metadata()
        if metadata.type == .directory {
            throw UringError(.system, operation: .copy, errno: .isDirectory, path: source)
        }
        let output = try await File.open(
            destination, .writeOnly, options: [.create, .truncate], permissions: metadata.permissions, on: ring)
        let pipe = try Pipe(on: ring, capacity: pieceSize)
        var copied: Int64 = 0
        while true {
            let moved = try await input.copyPiece(
                to: output, through: pipe, count: pieceSize, at: copied, destinationPath: destination)
            if moved == 0 { break }
            copied += Int64(moved)
            progress?(copied, metadata.size)
        }
        try await output.close()
        try await input.close()
        return copied
    }

    /// One piece of a copy: source → pipe → destination, linked. A short
    /// first splice breaks the link; the rest of the pipe is then drained.
    private func copyPiece(
        to output: borrowing File, through pipe: borrowing Pipe, count: Int, at offset: Int64,
        destinationPath: FilePath
    ) async throws -> Int {
        let core = ring.core
        try core.admit(.copy, path: path)
        let input = descriptor.rawValue
        let pipeIn = pipe.writing.descriptor.rawValue
        let pipeOut = pipe.reading.descriptor.rawValue
        let target = output.descriptor.rawValue
        let length = UInt32(min(count, DescriptorIO.maximumTransfer))
        let slots = core.submitChain(2) { step, request in
            if step == 0 {
                io_uring_prep_splice(&request, input, offset, pipeIn, -1, length, 0)
            } else {
                io_uring_prep_splice(&request, pipeOut, -1, target, offset, length, 0)
            }
            return nil
        }
        let first = await core.completion(of: slots[0])
        let second = await core.completion(of: slots[1])
        let read = Int(try core.check(first, .splice, path: path))
        var written = 0
        if second.result != -ECANCELED {
            written = Int(try core.check(second, .splice, path: destinationPath))
        }
        while written < read {
            let n = try await pipe.reading.splice(
                to: output, count: read - written, to: offset + Int64(written))
            if n == 0 { throw UringError.system(.splice, EPIPE, path: destinationPath) }
            written += n
        }
        return read
    }
}
