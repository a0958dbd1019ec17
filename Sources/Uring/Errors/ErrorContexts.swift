import SystemPackage

extension UringError {
    /// The error for a request that failed in the engine, about `path` or
    /// `address` when there is one.
    init(_ failure: RequestFailure, _ operation: UringOperation, path: FilePath? = nil, address: SocketAddress? = nil) {
        switch failure {
        case .shutDown: self = .shutDown(operation, path: path)
        case .unsupported: self = .unsupported(operation, path: path)
        case .timedOut: self = .timedOut(operation, path: path)
        case .completionLost: self = .completionLost(operation, path: path)
        case .invalid(let detail): self = .invalid(operation, path: path, detail)
        case .system(let code): self = .system(operation, code, path: path)
        }
        self.address = address
    }
}

/// What a descriptor layer's requests are about: the file's path or the
/// socket's address, which their errors name.
struct DescriptorContext: ErrorContext {
    var path: FilePath?
    var address: SocketAddress?

    func error(_ failure: RequestFailure, _ operation: UringOperation) -> any Error {
        UringError(failure, operation, path: path, address: address)
    }
}

extension ErrorContext where Self == DescriptorContext {
    /// Errors name `path` (nothing, when it is nil).
    static func path(_ path: FilePath?) -> DescriptorContext { DescriptorContext(path: path) }

    /// Errors name `address` (nothing, when it is nil).
    static func address(_ address: SocketAddress?) -> DescriptorContext { DescriptorContext(address: address) }

    /// Errors name `path` and `address`, whichever are not nil.
    static func descriptor(path: FilePath?, address: SocketAddress?) -> DescriptorContext {
        DescriptorContext(path: path, address: address)
    }
}
