#if NIO
import NIOCore
import Uring

/// A `ByteBuffer` is a buffer for every operation of `Uring`: its readable
/// bytes are what a write or a send hands to the kernel, with no copy.
///
/// ```swift
/// var buffer = ByteBufferAllocator().buffer(capacity: 64)
/// buffer.writeString("hello\n")
/// try await connection.sendAll(buffer)
/// try await file.writeAll(buffer, at: 0)
/// ```
///
/// Reading *into* a `ByteBuffer` through the generic forms overwrites its
/// readable bytes, as it does for an array; a new buffer has none, so such a
/// read gets nothing and returns 0, which looks like the end of the stream.
/// To append after the writer index, use the forms with `maximumCount:` of
/// this module, such as ``Uring/StreamConnection/receive(into:maximumCount:)``.
///
/// Why the kernel may keep a `ByteBuffer`'s address while the operation
/// waits: its bytes live in heap storage that the buffer references, which
/// no move of the `ByteBuffer` value relocates. A copy of the buffer held
/// elsewhere shares that storage, but writing through the copy first moves
/// the copy to storage of its own (copy-on-write), so the bytes lent to the
/// kernel stay where they are until the operation returns.
extension ByteBuffer: IOBuffer {
    /// This package's conformance (see `IOBuffer`).
    public static var _ioBufferConformance: IOBufferConformance { IOBufferConformance() }

    /// The readable bytes' count.
    public var count: Int { readableBytes }

    /// Calls `body` with the readable bytes, for the kernel to read.
    public func withUnsafeIOBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withUnsafeReadableBytes(body)
    }

    /// Calls `body` with the readable bytes, for the kernel to write over;
    /// the buffer first gets storage of its own if it shares any.
    public mutating func withUnsafeMutableIOBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withUnsafeMutableReadableBytes(body)
    }
}

/// The first `count` writable bytes of a `ByteBuffer` (after its writer
/// index), for an operation that appends: the kernel writes there, then
/// the writer index moves past what it wrote.
struct WritableBytes: IOBuffer {
    static var _ioBufferConformance: IOBufferConformance { IOBufferConformance() }

    /// The buffer, moved in for the operation and moved back after it.
    var buffer: ByteBuffer
    let count: Int

    /// Takes `buffer`, with room made for `count` more bytes.
    init(appendingTo buffer: inout ByteBuffer, count: Int) {
        buffer.reserveCapacity(minimumWritableBytes: count)
        self.buffer = buffer
        self.count = count
        // Only this value references the storage now, so writing through
        // it does not copy.
        buffer = ByteBuffer()
    }

    func withUnsafeIOBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        // Only the kernel reads after the writer index; nothing here does.
        try body(UnsafeRawBufferPointer(start: nil, count: 0))
    }

    mutating func withUnsafeMutableIOBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let count = count
        return try buffer.withUnsafeMutableWritableBytes { (bytes) throws(Failure) -> Result in
            try body(UnsafeMutableRawBufferPointer(rebasing: bytes.prefix(count)))
        }
    }

    /// Gives the buffer back with its writer index moved past `written` bytes.
    consuming func finish(written: Int, into original: inout ByteBuffer) {
        buffer.moveWriterIndex(forwardBy: written)
        original = buffer
    }

    /// Runs `operation` on room for `count` more bytes of `buffer`; the
    /// writer index then moves past the bytes `written(result)` says it
    /// wrote. On an error, `buffer` comes back unchanged.
    static func appending<Result>(
        to buffer: inout ByteBuffer, count: Int,
        written: (Result) -> Int,
        _ operation: (inout WritableBytes) async throws -> Result
    ) async throws -> Result {
        var tail = WritableBytes(appendingTo: &buffer, count: count)
        let result: Result
        do {
            result = try await operation(&tail)
        } catch {
            tail.finish(written: 0, into: &buffer)
            throw error
        }
        tail.finish(written: written(result), into: &buffer)
        return result
    }
}
#endif
