import CUring
import Glibc
import SystemPackage

/// A POSIX signal number, with names for the common ones.
public struct Signal: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The signal number, such as `SIGINT`.
    public let rawValue: Int32

    /// The signal with this number.
    public init(rawValue: Int32) {
        self.rawValue = rawValue
    }

    /// `SIGINT`: interrupt from the terminal (Control-C).
    public static let interrupt = Signal(rawValue: SIGINT)
    /// `SIGTERM`: a polite request to stop.
    public static let terminate = Signal(rawValue: SIGTERM)
    /// `SIGHUP`: the terminal went away; often "reload the configuration".
    public static let hangUp = Signal(rawValue: SIGHUP)
    /// `SIGQUIT`: quit from the terminal (Control-\).
    public static let quit = Signal(rawValue: SIGQUIT)
    /// `SIGUSR1`: for the application's own use.
    public static let user1 = Signal(rawValue: SIGUSR1)
    /// `SIGUSR2`: for the application's own use.
    public static let user2 = Signal(rawValue: SIGUSR2)
    /// `SIGCHLD`: a child process stopped or ended.
    public static let childStatusChanged = Signal(rawValue: SIGCHLD)
    /// `SIGWINCH`: the terminal's window size changed.
    public static let windowSizeChanged = Signal(rawValue: SIGWINCH)

    /// The conventional name, such as `SIGINT`.
    public var description: String {
        let names: [Int32: String] = [
            SIGINT: "SIGINT", SIGTERM: "SIGTERM", SIGHUP: "SIGHUP", SIGQUIT: "SIGQUIT", SIGUSR1: "SIGUSR1",
            SIGUSR2: "SIGUSR2", SIGCHLD: "SIGCHLD", SIGWINCH: "SIGWINCH", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM",
        ]
        return names[rawValue] ?? "signal \(rawValue)"
    }
}

extension RingActor {
    /// Starts catching `signals` and returns them as a sequence, read
    /// through this ring.
    ///
    /// From this call until the sequence (every copy of it) is gone, the
    /// signals no longer take their default action (ending the process, for
    /// `SIGINT` and `SIGTERM`): each arrival is recorded and yielded in order.
    /// Afterwards each signal's previous disposition is restored, unless
    /// another live sequence still watches it. Several sequences may watch
    /// the same signal; each sees every arrival.
    ///
    /// ```swift
    /// let signals = try ring.signals([.interrupt, .terminate])
    /// for try await signal in signals {
    ///     print("stopping on \(signal)")
    ///     break
    /// }
    /// ```
    ///
    /// How: a signal handler writes each number into a pipe, and the pipe is
    /// read with one multishot read (kernel 6.7+; single reads before that).
    /// A `signalfd` would need the signals blocked in every thread, and the
    /// Swift runtime starts threads before `main` can block them.
    ///
    /// - Throws: ``UringError`` of kind ``UringError/Kind/invalidArgument``
    ///   for an empty set or a signal that cannot be caught (`SIGKILL`,
    ///   `SIGSTOP`), or the system's error.
    public nonisolated func signals(_ signals: Set<Signal>) throws(UringError) -> Signals {
        let numbers = signals.map(\.rawValue).sorted()
        var slot: Int32 = -1
        let fd = numbers.withUnsafeBufferPointer { cu_signals_watch($0.baseAddress, Int32($0.count), &slot) }
        guard fd >= 0 else {
            let code = Glibc.errno
            if code == EINVAL {
                throw .invalid(.watchSignals, "cannot catch \(numbers.map { Signal(rawValue: $0) })")
            }
            throw UringError(.system, operation: .watchSignals, errno: Errno(rawValue: code), detail: "watching \(numbers)")
        }
        return Signals(ring: self, subscription: SignalSubscription(slot: slot, fd: fd))
    }
}

/// Signals as they arrive; see ``RingActor/signals(_:)``.
///
/// Iterate it once: two iterators of one sequence would share its arrivals.
public struct Signals: AsyncSequence, Sendable {
    /// A signal that arrived.
    public typealias Element = Signal
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    let ring: RingActor
    let subscription: SignalSubscription

    /// Starts reading arrivals (on the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        let multishot = ring.isSupported(.readMultishot)
        let path: FilePath = "<signals>"
        return AsyncIterator(
            subscription: subscription, ring: ring,
            chunks: multishot
                ? ReceivedChunks(
                    ring: ring, duplicating: subscription.fd, address: nil, path: path, pool: nil,
                    operation: .readMultishot
                ).makeAsyncIterator() : nil)
    }

    /// Produces the signals in arrival order.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: SignalSubscription
        let ring: RingActor
        var chunks: ReceivedChunks.AsyncIterator?
        var pending: [UInt8] = []

        /// The next signal; the sequence never ends on its own.
        public nonisolated(nonsending) mutating func next() async throws -> Signal? {
            try await advance()
        }

        nonisolated(nonsending) private mutating func advance() async throws -> Signal? {
            while pending.isEmpty {
                if chunks != nil {
                    guard let chunk = try await chunks!.next(isolation: #isolation) else { return nil }
                    pending = Array(chunk)
                } else {
                    var bytes = [UInt8](repeating: 0, count: 64)
                    let io = DescriptorIO(core: ring.core, fd: subscription.fd, path: "<signals>")
                    let n = try await io.read(into: address(of: &bytes), count: bytes.count, offset: nil)
                    if n == 0 { return nil }
                    pending = Array(bytes[..<n])
                }
                pending.reverse()
            }
            return Signal(rawValue: Int32(pending.removeLast()))
        }

        /// The next signal, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> Signal? {
            try await advance()
        }
    }
}

/// One watcher's pipe and handler slot; unwatched when the last copy of
/// the sequence (or an iterator) lets go.
final class SignalSubscription: Sendable {
    let slot: Int32
    let fd: Int32

    init(slot: Int32, fd: Int32) {
        self.slot = slot
        self.fd = fd
    }

    deinit {
        cu_signals_unwatch(slot)
        Glibc.close(fd)
    }
}
