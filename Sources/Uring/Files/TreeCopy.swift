import Glibc
import SystemPackage

/// What ``RingActor/copyTree(from:to:concurrency:)`` copied.
public struct TreeCopySummary: Sendable, Hashable, CustomStringConvertible {
    /// Directories created, the top one included.
    public var directories = 0
    /// Regular files copied.
    public var files = 0
    /// Symbolic links made anew, pointing where the originals point.
    public var symbolicLinks = 0
    /// Bytes copied into the files.
    public var bytes: Int64 = 0
    /// FIFOs, sockets and devices, which are not copied.
    public var skipped: [FilePath] = []

    /// The counts on one line.
    public var description: String {
        "\(directories) directories, \(files) files (\(bytes) bytes), \(symbolicLinks) links, \(skipped.count) skipped"
    }
}

extension RingActor {
    /// Copies the directory tree at `source` to `destination`, which must
    /// not exist yet, like `cp -R`.
    ///
    /// Each regular file is copied with ``File/copy(from:to:on:pieceSize:progress:)``
    /// (spliced through the ring, holes kept, set-ID bits dropped), up to
    /// `concurrency` files at once. Symbolic links are copied as links
    /// (never followed, so a link out of the tree stays a link). Directories
    /// get the source's permission bits once their contents are in place (a
    /// read-only directory is filled first). FIFOs, sockets and devices are
    /// not copied; they are listed in ``TreeCopySummary/skipped``.
    ///
    /// ```swift
    /// let summary = try await ring.copyTree(from: "/srv/site", to: "/srv/site.new")
    /// print(summary)   // 12 directories, 340 files (18234112 bytes), 2 links, 0 skipped
    /// ```
    ///
    /// What is left after a failure or cancellation: the copies in flight
    /// are cancelled and awaited, what was copied stays (files possibly
    /// partly written, directories still at mode 0700). A file that another
    /// process replaces with a link while the tree is copied is copied
    /// through the link.
    ///
    /// - Throws: ``UringError`` naming the step and its path: `EEXIST` for an
    ///   existing destination, `ENOENT` for a missing source, `ENOTDIR` for a
    ///   source that is not a directory, `EINVAL` for a destination inside
    ///   the source.
    @discardableResult
    public nonisolated(nonsending) func copyTree(
        from source: FilePath, to destination: FilePath, concurrency: Int = 8
    ) async throws -> TreeCopySummary {
        guard concurrency > 0 else { throw UringError.invalid(.copy, path: source, "concurrency must be positive") }
        // A destination inside the source would be walked into as it grows.
        if absolute(destination).starts(with: absolute(source)) {
            throw UringError.invalid(.copy, path: destination, "the destination is inside the source '\(source)'")
        }
        let top = try await metadata(at: source)
        guard top.type == .directory else { throw UringError(.system, operation: .copy, errno: .notDirectory, path: source) }
        // Created writable for its owner; given the source's bits at the end.
        try await createDirectory(at: destination, permissions: FilePermissions(rawValue: 0o700))
        var summary = TreeCopySummary()
        summary.directories = 1
        var directories: [(path: FilePath, permissions: FilePermissions)] = [(destination, top.permissions)]
        let ring = self
        try await withThrowingTaskGroup(of: Int64.self) { copies in
            var inFlight = 0
            for try await entry in Directory.walk(source, withMetadata: true) {
                var relative = entry.path
                guard relative.removePrefix(source) else { continue }
                let target = destination.pushing(relative)
                switch entry.type {
                case .directory:
                    try await createDirectory(at: target, permissions: FilePermissions(rawValue: 0o700))
                    directories.append((target, entry.metadata?.permissions ?? FilePermissions(rawValue: 0o755)))
                    summary.directories += 1
                case .symbolicLink:
                    let pointee = try await destinationOfSymbolicLink(at: entry.path)
                    try await createSymbolicLink(at: target, pointingTo: pointee)
                    summary.symbolicLinks += 1
                case .regular:
                    if inFlight == concurrency, let copied = try await copies.next() {
                        summary.bytes += copied
                        inFlight -= 1
                    }
                    let from = entry.path
                    copies.addTask { try await File.copy(from: from, to: target, on: ring) }
                    inFlight += 1
                    summary.files += 1
                default:
                    summary.skipped.append(entry.path)
                }
            }
            while let copied = try await copies.next() { summary.bytes += copied }
        }
        // Deepest first, so a read-only parent does not stop its children;
        // set-ID bits are dropped, as for files.
        for (path, permissions) in directories.reversed() {
            try await setPermissions(FilePermissions(rawValue: permissions.rawValue & 0o1777), at: path)
        }
        return summary
    }

    /// `path` made absolute against the working directory, lexically
    /// normalized (symbolic links are not resolved).
    private nonisolated func absolute(_ path: FilePath) -> FilePath {
        var path = path
        if path.isRelative {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            if getcwd(&buffer, buffer.count) != nil {
                path = FilePath(platformString: buffer).pushing(path)
            }
        }
        return path.lexicallyNormalized()
    }
}
