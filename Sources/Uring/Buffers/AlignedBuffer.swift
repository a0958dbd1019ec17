import Glibc

/// A fixed-size, zero-initialised byte buffer whose start is aligned to the
/// memory page size, as `O_DIRECT` reads and writes require.
///
/// It is noncopyable: exactly one owner at a time, and its memory is freed
/// when that owner is done with it.
///
/// ```swift
/// var buffer = AlignedBuffer(count: 64 * 1024)
/// let n = try await file.read(into: &buffer, at: 0)
/// let header = buffer.bytes.extracting(0..<min(n, 16))   // no copy
/// ```
public struct AlignedBuffer: ~Copyable, @unchecked Sendable {
    // `@unchecked Sendable`: the buffer uniquely owns its allocation (it is
    // noncopyable), so moving it to another task moves the only access path.
    private let base: UnsafeMutableRawPointer
    /// The buffer's size in bytes.
    public let count: Int
    /// The alignment of the first byte.
    public let alignment: Int

    /// The system's memory page size.
    public static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// Allocates `count` zeroed bytes aligned to `alignment` (a power of two;
    /// the page size by default).
    public init(count: Int, alignment: Int = AlignedBuffer.pageSize) {
        precondition(count >= 0, "AlignedBuffer: count must not be negative")
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "AlignedBuffer: alignment must be a power of two")
        self.count = count
        self.alignment = alignment
        self.base = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: alignment)
        self.base.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1))
    }

    /// Allocates an aligned buffer holding a copy of `bytes`.
    public init(copying bytes: some Collection<UInt8>, alignment: Int = AlignedBuffer.pageSize) {
        self.init(count: bytes.count, alignment: alignment)
        let target = UnsafeMutableRawBufferPointer(start: base, count: count)
        target.copyBytes(from: bytes)
    }

    deinit {
        base.deallocate()
    }

    /// The bytes, without copying.
    public var bytes: RawSpan {
        @_lifetime(borrow self)
        get {
            let span = RawSpan(_unsafeStart: UnsafeRawPointer(base), byteCount: count)
            return _overrideLifetime(span, borrowing: self)
        }
    }

    /// The bytes as a typed span, without copying.
    public var span: Span<UInt8> {
        @_lifetime(borrow self)
        get {
            let span = Span<UInt8>(_unsafeStart: base.assumingMemoryBound(to: UInt8.self), count: count)
            return _overrideLifetime(span, borrowing: self)
        }
    }

    /// The byte at `index`.
    public subscript(index: Int) -> UInt8 {
        get {
            precondition(index >= 0 && index < count, "AlignedBuffer: index out of range")
            return base.load(fromByteOffset: index, as: UInt8.self)
        }
        set {
            precondition(index >= 0 && index < count, "AlignedBuffer: index out of range")
            base.storeBytes(of: newValue, toByteOffset: index, as: UInt8.self)
        }
    }

    /// A copy of the first `count` bytes (all by default) as an array.
    public func copyBytes(count: Int? = nil) -> [UInt8] {
        let n = min(max(count ?? self.count, 0), self.count)
        return [UInt8](UnsafeRawBufferPointer(start: base, count: n))
    }
}

extension AlignedBuffer: IOBuffer {
    /// This library's conformance.
    public static var _ioBufferConformance: IOBufferConformance { IOBufferConformance() }

    /// Calls `body` with the buffer's bytes.
    public func withUnsafeIOBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Calls `body` with the buffer's bytes, writable.
    public mutating func withUnsafeMutableIOBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(UnsafeMutableRawBufferPointer(start: base, count: count))
    }

    /// Calls `body` with the buffer's bytes, writable.
    public mutating func withUnsafeMutableBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try body(UnsafeMutableRawBufferPointer(start: base, count: count))
    }
}

/// A buffer together with the outcome of the operation it was lent to, for
/// code that moves buffers by ownership (into task groups, across tasks).
///
/// The buffer is present whatever the outcome, so an error never loses it.
@frozen
public struct IOResult<Buffer: IOBuffer & ~Copyable>: ~Copyable {
    /// The buffer, returned to its owner.
    public var buffer: Buffer
    /// The number of bytes transferred, or the error.
    public var outcome: Result<Int, any Error>

    /// Creates a result.
    public init(buffer: consuming Buffer, outcome: Result<Int, any Error>) {
        self.buffer = buffer
        self.outcome = outcome
    }

    /// The number of bytes transferred; throws the operation's error.
    public var count: Int {
        get throws { try outcome.get() }
    }
}

extension IOResult: Sendable where Buffer: Sendable & ~Copyable {}
