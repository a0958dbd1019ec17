import CUring
import Glibc
import SystemPackage

extension File {
    /// Writes a file's whole contents and then publishes them at `path` in
    /// one step: a reader of `path` sees the old file or the new one, never
    /// a part, and if `body` throws (or the task is cancelled) `path` is
    /// untouched. This is how editors and package managers replace a file.
    ///
    /// ```swift
    /// try await File.writeAtomically(to: "config.json", on: ring) { file in
    ///     try await file.writeAll(Array(json.utf8), at: 0)
    /// }
    /// ```
    ///
    /// The new file is made unnamed in `path`'s directory (`O_TMPFILE`),
    /// written by `body`, flushed to disk (`fsync`, unless `durable` is
    /// false), given a temporary name with `linkat` and renamed over `path`,
    /// each step through the ring. On file systems without `O_TMPFILE`, or
    /// without `/proc` to name the unnamed file, it is created under a
    /// temporary name instead, which is removed if anything fails.
    ///
    /// - Parameters:
    ///   - path: Where the contents go; the file there, if any, is replaced.
    ///   - permissions: The new file's permissions (before the umask).
    ///   - durable: Flushes the contents before publishing them, so a crash
    ///     cannot leave `path` naming an empty or partial file.
    ///   - ring: The ring for every step; `nil` means ``RingActor/shared``.
    ///   - body: Writes the contents, given the new file opened for writing.
    /// - Throws: What `body` throws, or ``UringError`` naming the path that
    ///   could not be created or replaced.
    public static func writeAtomically(
        to path: FilePath,
        permissions: FilePermissions = FilePermissions(rawValue: 0o644),
        durable: Bool = true,
        on ring: RingActor? = nil,
        _ body: (borrowing File) async throws -> Void
    ) async throws {
        try await writeAtomically(
            to: path, permissions: permissions, durable: durable, on: ring, allowingUnnamed: true, body)
    }

    /// ``writeAtomically(to:permissions:durable:on:_:)``, with the unnamed
    /// file allowed or not (tests check the named fallback this way).
    static func writeAtomically(
        to path: FilePath, permissions: FilePermissions, durable: Bool, on ring: RingActor?,
        allowingUnnamed: Bool, _ body: (borrowing File) async throws -> Void
    ) async throws {
        let ring = try ring ?? RingActor.shared
        guard let name = path.lastComponent, !path.isEmpty else {
            throw UringError.invalid(.open, path: path, "the path names no file")
        }
        let directory = path.removingLastComponent()
        let folder = directory.isEmpty ? FilePath(".") : directory
        // A name of our own beside the target, for the last step (or for
        // the whole file where O_TMPFILE cannot be used).
        let temporary = folder.appending(".\(name).tmp-\(UInt32.random(in: 0...UInt32.max))")

        if allowingUnnamed, let unnamed = try await openUnnamed(in: folder, permissions: permissions, ring: ring) {
            try await body(unnamed)
            if durable { try await unnamed.sync() }
            // linkat through /proc gives the unnamed file a name without
            // CAP_DAC_READ_SEARCH (which AT_EMPTY_PATH would need).
            let procPath = FilePath("/proc/self/fd/\(unnamed.descriptor.rawValue)")
            let names = PathPair(PathStorage(procPath), PathStorage(temporary))
            do {
                _ = try await ring.core.perform(.createLink, about: .path(temporary), keepAlive: names) {
                    io_uring_prep_linkat(&$0, AT_FDCWD, names.first.pointer, AT_FDCWD, names.second.pointer, AT_SYMLINK_FOLLOW)
                }
            } catch {
                try? await unnamed.close()
                throw error
            }
            try await unnamed.close()
        } else {
            let file = try await File.open(
                temporary, .writeOnly, options: [.create, .exclusive], permissions: permissions, on: ring)
            do {
                try await body(file)
                if durable { try await file.sync() }
                try await file.close()
            } catch {
                try? await ring.removeFile(at: temporary)
                throw error
            }
        }
        do {
            try await ring.rename(temporary, to: path)
        } catch {
            try? await ring.removeFile(at: temporary)
            throw error
        }
    }

    /// An unnamed file in `directory` (`O_TMPFILE`), or nil where the file
    /// system has none or `/proc` is missing (so it could not be named).
    private static func openUnnamed(
        in directory: FilePath, permissions: FilePermissions, ring: RingActor
    ) async throws -> File? {
        guard access("/proc/self/fd", X_OK) == 0 else { return nil }
        do {
            let options = OpenOptions(rawValue: CU_O_TMPFILE)
            let fd = try await openAt(AT_FDCWD, directory, .writeOnly, options, permissions, ring)
            return File(adopting: FileDescriptor(rawValue: fd), path: directory, on: ring)
        } catch let error as UringError
            where error.errno == .notSupported || error.errno == .isDirectory || error.errno == .invalidArgument
        {
            return nil  // no O_TMPFILE on this file system (or kernel)
        }
    }
}
