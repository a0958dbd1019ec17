#if NIO
import NIOCore
import Uring

extension File {
    /// Reads up to `maximumCount` bytes at `offset` into `buffer` after its
    /// writer index, which moves past them; the kernel writes straight into
    /// the buffer's storage.
    ///
    /// - Returns: The bytes read; 0 at the end of the file.
    public func read(into buffer: inout ByteBuffer, maximumCount: Int, at offset: Int64) async throws -> Int {
        try await WritableBytes.appending(to: &buffer, count: maximumCount, written: { $0 }) {
            try await self.read(into: &$0, at: offset)
        }
    }

    /// Reads the file from `offset` to its end into one `ByteBuffer`.
    ///
    /// - Parameters:
    ///   - offset: Where to start reading.
    ///   - maximumSize: Fail with `EFBIG` rather than read more.
    ///   - allocator: Where the buffer comes from.
    public func readToEnd(
        from offset: Int64 = 0, maximumSize: Int = 1 << 30, allocator: ByteBufferAllocator
    ) async throws -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64 * 1024)
        var position = offset
        while true {
            // Never more than one byte past the limit, which shows it.
            let room = min(64 * 1024, maximumSize - buffer.readableBytes + 1)
            let n = try await read(into: &buffer, maximumCount: room, at: position)
            if n == 0 { return buffer }
            if buffer.readableBytes > maximumSize {
                throw UringError(
                    .system, operation: .read, errno: .fileTooLarge, path: path,
                    detail: "the file is larger than maximumSize (\(maximumSize) bytes)")
            }
            position += Int64(n)
        }
    }
}
#endif
