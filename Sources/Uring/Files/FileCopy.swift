import CUring
import Glibc
import SystemPackage

extension File {
    /// Copies the file at `source` to `destination` through the ring.
    ///
    /// A regular source is copied without its bytes entering the process:
    /// each piece is spliced from the source into a pipe and from the pipe
    /// into the destination, as one linked pair of requests, with two
    /// pieces (two pipes) in flight. Holes stay holes: only the source's
    /// data ranges (`SEEK_DATA`/`SEEK_HOLE`) are copied, and the copy is
    /// given the source's length. Sources that cannot be spliced, or that
    /// report no size (pipes, devices, `/proc` files), and destinations that
    /// are not regular files (`/dev/null`, say) are copied by reads and
    /// writes through the ring instead.
    ///
    /// The source is checked before the destination is touched: a source
    /// that cannot be opened or read leaves an existing destination as it
    /// was. The destination is then created (with the source's permission
    /// bits, never its set-user-ID, set-group-ID or sticky bits) or
    /// truncated; on a later error it is left as far as the copy got.
    ///
    /// - Parameters:
    ///   - source: The file to copy.
    ///   - destination: The copy's path.
    ///   - ring: The ring that performs the copy.
    ///   - pieceSize: Bytes per splice pair (each pipe is sized to match).
    ///   - progress: Called after each piece with the bytes copied so far and
    ///     the source's size when the copy began.
    /// - Returns: The length of the copy.
    /// - Throws: ``UringError`` naming the failing step and its path, such
    ///   as `write '/dev/full': No space left on device (ENOSPC)`.
    @discardableResult
    public static func copy(
        from source: FilePath, to destination: FilePath, on ring: RingActor, pieceSize: Int = 1 << 20,
        progress: ((_ copied: Int64, _ total: Int64) -> Void)? = nil
    ) async throws -> Int64 {
        guard pieceSize > 0 else { throw UringError.invalid(.copy, path: source, "pieceSize must be positive") }
        guard ring.core.submissionEntries >= 2 else {
            throw UringError.invalid(.copy, path: source, "a copy needs a ring of at least 2 entries (this one has 1)")
        }
        let input = try await File.open(source, on: ring)
        let metadata = try await input.metadata()
        if metadata.type == .directory {
            throw UringError(.system, operation: .copy, errno: .isDirectory, path: source)
        }
        // Truncating the destination would destroy a source that is the same file.
        if let existing = try? await ring.metadata(at: destination),
            existing.inode == metadata.inode && existing.device == metadata.device
        {
            throw UringError.invalid(.copy, path: destination, "the destination is the source file itself")
        }
        // The source must be readable before the destination is touched.
        let positional = metadata.type == .regular || metadata.type == .blockDevice
        var first = [UInt8](repeating: 0, count: min(pieceSize, 64 * 1024))
        let firstCount = positional ? try await input.read(into: &first, at: 0) : try await input.read(into: &first)
        let permissions = FilePermissions(rawValue: metadata.permissions.rawValue & 0o777)
        let output = try await File.open(
            destination, .writeOnly, options: [.create, .truncate], permissions: permissions, on: ring)
        let destinationType = try await output.metadata().type
        let copied: Int64
        if metadata.type == .regular && metadata.size > 0 && destinationType == .regular {
            copied = try await spliceData(from: input, to: output, total: metadata.size, pieceSize: pieceSize, progress: progress)
        } else {
            copied = try await readAndWrite(
                from: input, positional: positional, to: output, first: first[..<firstCount], total: metadata.size,
                progress: progress)
        }
        try await output.close()
        try await input.close()
        return copied
    }

    /// Copies by reads and writes through the ring, starting with `first`
    /// (already read); returns the bytes copied.
    private static func readAndWrite(
        from input: borrowing File, positional: Bool, to output: borrowing File, first: ArraySlice<UInt8>, total: Int64,
        progress: ((_ copied: Int64, _ total: Int64) -> Void)?
    ) async throws -> Int64 {
        var buffer = Array(first)
        var copied: Int64 = 0
        let size = max(first.count, 64 * 1024)
        while !buffer.isEmpty {
            try await output.writeAll(buffer)
            copied += Int64(buffer.count)
            progress?(copied, total)
            buffer = [UInt8](repeating: 0, count: size)
            let n = positional ? try await input.read(into: &buffer, at: copied) : try await input.read(into: &buffer)
            buffer.removeLast(buffer.count - n)
        }
        return copied
    }

    /// Splices the source's data ranges into the destination and gives the
    /// destination the source's length; returns that length.
    private static func spliceData(
        from input: borrowing File, to output: borrowing File, total: Int64, pieceSize: Int,
        progress: ((_ copied: Int64, _ total: Int64) -> Void)?
    ) async throws -> Int64 {
        let core = input.ring.core
        let pipes = [try PipePair(capacity: pieceSize), try PipePair(capacity: pieceSize)]
        // A piece never exceeds what a pipe holds, or every splice would come up short.
        let piece = Int64(min(pieceSize, DescriptorIO.maximumTransfer, pipes[0].capacity, pipes[1].capacity))
        let ends = SpliceEnds(
            input: input.descriptor.rawValue, output: output.descriptor.rawValue,
            source: input.path, destination: output.path)
        var offset: Int64 = 0
        while true {
            // The next data range; a file system without SEEK_DATA has one,
            // to the end of the file.
            let dataStart = Int64(lseek(ends.input, off_t(offset), 3 /* SEEK_DATA */))
            if dataStart < 0 && Glibc.errno == ENXIO { break }  // only a hole (or nothing) is left
            let start = dataStart < 0 ? offset : dataStart
            let holeStart = dataStart < 0 ? -1 : Int64(lseek(ends.input, off_t(start), 4 /* SEEK_HOLE */))
            // No hole after the data (or the file changed under us): copy to the end.
            let end = holeStart <= start ? Int64.max : holeStart
            let reached = try await spliceRange(
                start..<end, ends: ends, pipes: pipes, piece: piece, core: core
            ) { copied in progress?(copied, total) }
            offset = reached
            if reached < end { break }  // the end of the file came first
        }
        // A hole at the end has no data range: the length makes it.
        var info = stat()
        let length = fstat(ends.input, &info) == 0 ? max(offset, Int64(info.st_size)) : offset
        // Off the ring's thread: truncation may wait for the file system.
        let destination = ends.output
        let failure = try await offRingThread { Glibc.ftruncate(destination, off_t(length)) == 0 ? 0 : Glibc.errno }
        if failure != 0 { throw UringError.system(.copy, failure, path: output.path) }
        return length
    }

    /// Splices `range` of the source to the same offsets of the destination
    /// with two pieces in flight; returns where it stopped (the range's end,
    /// or the end of the file if that came first).
    private static func spliceRange(
        _ range: Range<Int64>, ends: SpliceEnds, pipes: [PipePair], piece: Int64, core: RingCore,
        progress: (Int64) -> Void
    ) async throws -> Int64 {
        // Pieces in flight, oldest first, each with its pipe.
        var inFlight: [(offset: Int64, length: Int64, pipe: PipePair, slots: [OperationSlot])] = []
        var next = range.lowerBound
        var reached = range.lowerBound
        var failure: (any Error)? = nil
        var reachedEnd = false
        func start(_ pipe: PipePair) throws {
            guard next < range.upperBound else { return }
            try core.admit(.copy, about: .path(ends.source))
            let offset = next
            let length = min(piece, range.upperBound - offset)
            let slots = core.submitChain(2) { step, request in
                if step == 0 {
                    io_uring_prep_splice(&request, ends.input, offset, pipe.writing, -1, UInt32(length), 0)
                } else {
                    io_uring_prep_splice(&request, pipe.reading, -1, ends.output, offset, UInt32(length), 0)
                }
                return nil
            }
            inFlight.append((offset, length, pipe, slots))
            next += length
        }
        do {
            for pipe in pipes { try start(pipe) }
        } catch {
            failure = error
        }
        while !inFlight.isEmpty {
            let (offset, length, pipe, slots) = inFlight.removeFirst()
            let first = await core.completion(of: slots[0])
            let second = await core.completion(of: slots[1])
            guard failure == nil else { continue }  // drain what is in flight, then throw
            do {
                var filled = Int64(try core.check(first, .splice, about: .path(ends.source)))
                var written: Int64 = 0
                if second.result != -ECANCELED {
                    written = Int64(try core.check(second, .splice, about: .path(ends.destination)))
                }
                while true {
                    // A short splice broke the link: drain the pipe here, then
                    // fill the rest of the piece; only 0 bytes means the end.
                    while written < filled {
                        let n = try await core.perform(.splice, about: .path(ends.destination)) {
                            io_uring_prep_splice(
                                &$0, pipe.reading, -1, ends.output, offset + written, UInt32(filled - written), 0)
                        }
                        if n == 0 { throw UringError.system(.splice, EPIPE, path: ends.destination) }
                        written += Int64(n)
                    }
                    if filled == length { break }
                    let n = try await core.perform(.splice, about: .path(ends.source)) {
                        io_uring_prep_splice(
                            &$0, ends.input, offset + filled, pipe.writing, -1, UInt32(length - filled), 0)
                    }
                    if n == 0 {
                        reachedEnd = true
                        break
                    }
                    filled += Int64(n)
                }
                // Pieces finish in order, so the copy is contiguous up to here;
                // a piece started past the end of the file fills nothing.
                reached = max(reached, offset + filled)
                if filled > 0 { progress(reached) }
                if reachedEnd {
                    next = range.upperBound  // start nothing more
                } else {
                    try start(pipe)
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        // Without the end of the file, every piece of the range was copied.
        return reachedEnd ? reached : range.upperBound
    }
}

/// The descriptors of one copy, captured by its request preparations.
private struct SpliceEnds {
    let input: Int32
    let output: Int32
    /// The paths, for errors.
    let source: FilePath?
    let destination: FilePath?
}

/// A pipe used only inside ``File/copy(from:to:on:pieceSize:progress:)``,
/// closed when the copy is done.
private final class PipePair {
    let reading: Int32
    let writing: Int32

    init(capacity: Int) throws(UringError) {
        var fds: [Int32] = [-1, -1]
        guard cu_pipe(&fds) == 0 else {
            throw UringError(.system, operation: .copy, errno: Errno(rawValue: Glibc.errno), detail: "pipe2 failed")
        }
        reading = fds[0]
        writing = fds[1]
        _ = fcntl(writing, 1031 /* F_SETPIPE_SZ */, Int32(clamping: capacity))  // best effort
    }

    /// What the pipe holds, in bytes (`F_GETPIPE_SZ`).
    var capacity: Int { Int(max(4096, fcntl(writing, 1032 /* F_GETPIPE_SZ */))) }

    deinit {
        Glibc.close(reading)
        Glibc.close(writing)
    }
}
