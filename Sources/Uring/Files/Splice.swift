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
        return Int(try await ring.core.perform(.splice, about: .path(path)) {
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
        return Int(try await ring.core.perform(.tee, about: .path(path)) {
            io_uring_prep_tee(&$0, input, output, length, 0)
        })
    }
}
