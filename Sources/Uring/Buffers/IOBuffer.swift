/// Memory that an operation can read into or write from.
///
/// The ring hands the buffer's address to the kernel and waits for the
/// kernel's completion before the operation returns, so the buffer is only
/// ever lent: a read takes it `inout`, a write `borrowing`, and it is the
/// caller's again on every path, success, error or cancellation.
///
/// The protocol is closed: only this package's types conform (`[UInt8]`,
/// ``AlignedBuffer``, and SwiftNIO's `ByteBuffer` in `UringNIO`). The
/// kernel uses a buffer's address after the closures below have returned,
/// which is sound only for storage that stays at one address while the
/// value is neither mutated nor destroyed, even when the value itself is
/// moved. Heap storage owned by the value has that property;
/// a type that keeps small contents inline, as `Data` does, would not.
public protocol IOBuffer: ~Copyable, Sendable {
    /// Proof that the conformance comes from this library (its initializer
    /// is not public).
    static var _ioBufferConformance: IOBufferConformance { get }

    /// The number of bytes an operation may read into or write from.
    var count: Int { get }

    /// Calls `body` with the buffer's bytes, for the kernel to read.
    func withUnsafeIOBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result

    /// Calls `body` with the buffer's bytes, for the kernel to write.
    mutating func withUnsafeMutableIOBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result

    /// The address of the first byte, for the kernel to read (nil when
    /// empty). An implementation detail with a default; a conformance
    /// provides its own only to be faster.
    func _stableIOAddress() -> UnsafeRawPointer?

    /// The address of the first byte, for the kernel to write (nil when
    /// empty). An implementation detail with a default, like
    /// `_stableIOAddress()`.
    mutating func _stableMutableIOAddress() -> UnsafeMutableRawPointer?
}

extension IOBuffer where Self: ~Copyable {
    /// The default: the address `withUnsafeIOBytes` shows.
    public func _stableIOAddress() -> UnsafeRawPointer? {
        withUnsafeIOBytes { $0.baseAddress }
    }

    /// The default: the address `withUnsafeMutableIOBytes` shows.
    public mutating func _stableMutableIOAddress() -> UnsafeMutableRawPointer? {
        withUnsafeMutableIOBytes { $0.baseAddress }
    }
}

/// A token only this package can create, which closes ``IOBuffer``.
///
/// Its initializer is visible to the package's own modules, so the
/// integration modules (`UringNIO`) can conform the buffer types they
/// bridge after checking that their storage has a stable address.
public struct IOBufferConformance: Sendable {
    package init() {}
}

extension Array: IOBuffer where Element == UInt8 {
    /// This library's conformance.
    public static var _ioBufferConformance: IOBufferConformance { IOBufferConformance() }

    /// The array's first byte, without the generic closure of
    /// `withUnsafeIOBytes` (which cost a metadata lookup per operation).
    public func _stableIOAddress() -> UnsafeRawPointer? {
        withUnsafeBytes { $0.baseAddress }
    }

    /// The array's first byte, for writing (unique storage first).
    public mutating func _stableMutableIOAddress() -> UnsafeMutableRawPointer? {
        withUnsafeMutableBytes { $0.baseAddress }
    }

    /// Calls `body` with the array's bytes, for the kernel to read.
    public func withUnsafeIOBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let result: Swift.Result<Result, Failure> = withUnsafeBytes { bytes in
            do throws(Failure) { return .success(try body(bytes)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Calls `body` with the array's bytes, for the kernel to write.
    public mutating func withUnsafeMutableIOBytes<Result, Failure: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let result: Swift.Result<Result, Failure> = withUnsafeMutableBytes { bytes in
            do throws(Failure) { return .success(try body(bytes)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

extension IOBuffer where Self: ~Copyable {
    /// The buffer's base address, taken out of the closure.
    ///
    /// Sound only under the protocol's contract (a stable address while the
    /// value is unmutated and alive) and only while the caller keeps the
    /// buffer lent to the operation, which lasts until the completion.
    mutating func stableMutableAddress() -> UnsafeMutableRawPointer? {
        _stableMutableIOAddress()
    }

    /// Read-only counterpart of ``stableMutableAddress()``.
    func stableAddress() -> UnsafeRawPointer? {
        _stableIOAddress()
    }
}
