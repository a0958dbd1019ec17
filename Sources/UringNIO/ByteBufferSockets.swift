#if NIO
import NIOCore
import Uring

extension StreamConnection {
    /// Receives up to `maximumCount` bytes into `buffer` after its writer
    /// index, which moves past them; the kernel writes straight into the
    /// buffer's storage (no copy).
    ///
    /// - Returns: The bytes received; 0 once the peer has closed its side.
    public func receive(into buffer: inout ByteBuffer, maximumCount: Int) async throws -> Int {
        try await WritableBytes.appending(to: &buffer, count: maximumCount, written: { $0 }) {
            try await receive(into: &$0)
        }
    }

    /// Receives what the peer sends next as a new `ByteBuffer` of at most
    /// `maximumCount` bytes, or `nil` once the peer has closed its side.
    public func receiveBuffer(
        maximumCount: Int = 16 * 1024, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) async throws -> ByteBuffer? {
        var buffer = allocator.buffer(capacity: maximumCount)
        let received = try await receive(into: &buffer, maximumCount: maximumCount)
        return received == 0 ? nil : buffer
    }
}

extension ReceivedChunks {
    /// The same bytes as `ByteBuffer`s, one per received chunk.
    ///
    /// Each chunk is copied once into a new buffer from `allocator`, and its
    /// pool buffer goes back to the kernel at once: a pool buffer belongs to the
    /// ring and is lent only until its chunk is released, which a
    /// `ByteBuffer` (whose storage lives until its last copy is gone)
    /// cannot promise. To receive with no copy, use
    /// ``Uring/StreamConnection/receive(into:maximumCount:)``, where the
    /// kernel writes into the `ByteBuffer` itself. The copy shows with
    /// large chunks: in six runs of `uring-bench bytebuffer`, an echo of
    /// 16 KiB messages over 64 connections through this sequence came to
    /// 0.70–0.90 of the same echo of the chunks themselves, and through
    /// `receive(into:maximumCount:)` with one reused buffer to 0.95–1.39.
    ///
    /// ```swift
    /// for try await buffer in connection.received().byteBuffers() {
    ///     try await connection.sendAll(buffer)
    /// }
    /// ```
    public func byteBuffers(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ReceivedByteBuffers {
        ReceivedByteBuffers(chunks: self, allocator: allocator)
    }
}

/// Received chunks as `ByteBuffer`s (see ``Uring/ReceivedChunks/byteBuffers(allocator:)``).
public struct ReceivedByteBuffers: AsyncSequence, Sendable {
    /// Each chunk's bytes.
    public typealias Element = ByteBuffer
    /// Any error of the underlying ``Uring/ReceivedChunks``.
    public typealias Failure = any Error

    let chunks: ReceivedChunks
    let allocator: ByteBufferAllocator

    /// Starts receiving.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(chunks: chunks.makeAsyncIterator(), allocator: allocator)
    }

    /// Produces the buffers.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var chunks: ReceivedChunks.AsyncIterator
        let allocator: ByteBufferAllocator

        /// The next chunk as a `ByteBuffer`, or `nil` once the peer closed.
        public nonisolated(nonsending) mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await chunks.next() else { return nil }
            var buffer = allocator.buffer(capacity: chunk.count)
            _ = chunk.withUnsafeBytes { buffer.writeBytes($0) }
            return buffer
        }

        /// The next chunk as a `ByteBuffer`; `isolation` is not needed.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> ByteBuffer? {
            try await next()
        }
    }
}

extension DatagramSocket {
    /// Receives one datagram of up to `maximumCount` bytes into `buffer`
    /// after its writer index, with no copy.
    ///
    /// - Returns: The bytes received (a longer datagram is cut; see
    ///   `truncated`) and the sender's address.
    public func receive(
        into buffer: inout ByteBuffer, maximumCount: Int
    ) async throws -> (count: Int, sender: Uring.SocketAddress?, truncated: Bool) {
        try await WritableBytes.appending(to: &buffer, count: maximumCount, written: { $0.count }) {
            try await receive(into: &$0)
        }
    }
}
#endif
