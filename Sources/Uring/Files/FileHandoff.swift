extension File {
    /// Packs the file to move into another task: a `File` is noncopyable,
    /// and a child task's closure cannot capture one. The package is
    /// `Sendable`; the task that receives it takes the file out once.
    ///
    /// ```swift
    /// let handoff = file.handOff()
    /// group.addTask {
    ///     let file = try handoff.take()
    ///     defer { _ = consume file }
    ///     return try await file.metadata().size
    /// }
    /// ```
    ///
    /// A package dropped without ``FileHandoff/take()`` closes the file.
    public consuming func handOff() -> FileHandoff {
        FileHandoff(descriptor: sharedDescriptor, path: path, ring: ring)
    }
}

/// A ``File`` on its way to another task; see ``File/handOff()``. What
/// ``IncomingConnection`` is for accepted connections.
public final class FileHandoff: Sendable {
    private let descriptor: Locked<OwnedDescriptor?>
    /// The ring the file's operations go through.
    public let ring: RingActor
    /// The path the file was opened with.
    public let path: FilePath?

    init(descriptor: OwnedDescriptor, path: FilePath?, ring: RingActor) {
        self.descriptor = Locked(descriptor)
        self.path = path
        self.ring = ring
    }

    /// Moves the file out of the package.
    ///
    /// - Throws: ``UringError`` (``UringError/Kind/invalidArgument``) if it
    ///   was already taken.
    public func take() throws(UringError) -> File {
        guard let shared = descriptor.withLock({ $0.take() }) else {
            throw .invalid(.open, path: path, "this file was already taken from its handoff")
        }
        return File(sharing: shared, path: path, on: ring)
    }
}
