import CUring
import Glibc
import SystemPackage

/// POSIX signals, read through the ring instead of interrupting a thread.
///
/// The watcher installs a handler for the signals that records each one in
/// a pipe, and ``next(on:)`` reads that pipe through the ring; so a signal
/// no longer ends the process (SIGINT, SIGTERM) but wakes a task. The pipe
/// and handler are per process: create one watcher per set of signals.
///
/// ```swift
/// let signals = try SignalWatcher(watching: [SIGINT, SIGTERM])
/// try await RingActor.run { ring in
///     …
///     let signal = try await signals.next(on: ring)  // stop on SIGINT or SIGTERM
/// }
/// ```
public struct SignalWatcher: ~Copyable, Sendable {
    private var fd: Int32
    /// The signals watched.
    public let signals: [Int32]

    /// Starts recording `signals`.
    ///
    /// - Throws: ``UringError`` when a signal number is invalid or cannot be
    ///   caught (`SIGKILL`, `SIGSTOP`).
    public init(watching signals: [Int32]) throws(UringError) {
        let fd = signals.withUnsafeBufferPointer { cu_watch_signals($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else {
            throw UringError(.system, operation: .read, errno: Errno(rawValue: Glibc.errno), detail: "cannot watch signals \(signals)")
        }
        self.fd = fd
        self.signals = signals
    }

    deinit {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Waits for the next of the watched signals and returns its number.
    public func next(on ring: RingActor) async throws -> Int32 {
        var number = [UInt8](repeating: 0, count: 1)
        let io = DescriptorIO(core: ring.core, fd: fd, path: "<signals>")
        _ = try await io.read(into: address(of: &number), count: 1, offset: nil)
        return Int32(number[0])
    }
}
