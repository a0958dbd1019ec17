import Glibc

/// Why a request produced no result, in the engine's own terms. The layer
/// that made the request turns it into the error its caller sees, through
/// the ``ErrorContext`` it passed along; the engine knows nothing of paths
/// or addresses.
enum RequestFailure: Sendable, Hashable {
    /// The ring is shutting down or has shut down.
    case shutDown
    /// The running kernel lacks the operation.
    case unsupported
    /// A deadline passed before the request completed.
    case timedOut
    /// The kernel dropped the request's completion (see
    /// `RingCore.probeForLostCompletions`).
    case completionLost
    /// The request was refused before it reached the kernel.
    case invalid(String)
    /// The kernel reported this error number.
    case system(Int32)
}

/// What a layer above the engine knows about its requests (a file's path, a
/// socket's address), used only to describe their failures. The engine
/// passes it along and calls it when a request fails.
protocol ErrorContext: Sendable {
    /// The error a caller sees for `failure` of `operation`.
    func error(_ failure: RequestFailure, _ operation: UringOperation) -> any Error
}

/// Requests about nothing in particular (a NOP, a timer).
struct NoContext: ErrorContext {
    func error(_ failure: RequestFailure, _ operation: UringOperation) -> any Error {
        UringError(failure, operation)
    }
}

extension ErrorContext where Self == NoContext {
    /// No path or address to name.
    static var none: NoContext { NoContext() }
}
