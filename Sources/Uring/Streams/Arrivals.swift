import CUring
import Glibc
import SystemPackage

extension File {
    /// What arrives on this pipe, tty, socket or eventfd, as chunks in order,
    /// from one multishot read (`IORING_OP_READ_MULTISHOT`, kernel 6.7+).
    ///
    /// The kernel fills a buffer of `pool` (the ring's shared pool if nil)
    /// whenever data arrives, with no request per chunk. Before 6.7 the
    /// sequence makes one read per chunk instead, each taking a buffer of
    /// the pool, with the same behaviour. The sequence ends
    /// at end of file (the writer closed its end), throws on an error, and
    /// throws `CancellationError` when the iterating task is cancelled. It
    /// shares the file's descriptor, so the file may be closed while the
    /// sequence lives; the descriptor then closes when the sequence ends.
    ///
    /// Regular files cannot be read this way (the kernel answers `EBADFD`);
    /// use ``File/chunks(size:readAhead:from:)`` for them.
    public func arrivals(using pool: ReceiveBufferPool? = nil) -> ReceivedChunks {
        ReceivedChunks(
            ring: ring, sharing: sharedDescriptor, address: nil, path: path, pool: pool,
            operation: .readMultishot)
    }

    /// The process's standard input, through `ring`: a duplicate of
    /// descriptor 0 that the returned file owns.
    ///
    /// ```swift
    /// for try await line in File.standardInput(on: ring).arrivals().lines {
    ///     print(line)
    /// }
    /// ```
    public static func standardInput(on ring: RingActor) throws(UringError) -> File {
        let fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw .system(.duplicate, Glibc.errno, path: "<stdin>") }
        return File(adopting: FileDescriptor(rawValue: fd), path: "<stdin>", on: ring)
    }
}

extension ReceivedChunks {
    /// The bytes as lines of UTF-8 text, without their `\n` (or `\r\n`)
    /// ending. A last line without an ending is yielded too.
    ///
    /// - Parameter maximumLength: A longer line throws ``UringError`` of kind
    ///   ``UringError/Kind/invalidArgument`` rather than grow without bound.
    public func lines(maximumLength: Int = 1 << 20) -> ReceivedLines {
        ReceivedLines(chunks: self, maximumLength: maximumLength)
    }

    /// The bytes as lines of UTF-8 text; see ``lines(maximumLength:)``.
    public var lines: ReceivedLines { lines() }
}

/// Lines of text split from received chunks; see ``ReceivedChunks/lines``.
public struct ReceivedLines: AsyncSequence, Sendable {
    /// One line, without its ending.
    public typealias Element = String
    /// A ``UringError`` or `CancellationError`.
    public typealias Failure = any Error

    let chunks: ReceivedChunks
    let maximumLength: Int

    /// Starts reading (on the first call to `next()`).
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(chunks: chunks.makeAsyncIterator(), maximumLength: maximumLength, operation: chunks.operation)
    }

    /// Produces the lines in order.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var chunks: ReceivedChunks.AsyncIterator
        let maximumLength: Int
        let operation: UringOperation
        var partial: [UInt8] = []
        var pending: [UInt8] = []
        var position = 0
        var ended = false
        /// The chunks threw: the sequence is over, without a last line.
        var failed = false

        init(chunks: ReceivedChunks.AsyncIterator, maximumLength: Int, operation: UringOperation) {
            self.chunks = chunks
            self.maximumLength = maximumLength
            self.operation = operation
        }

        /// The next line; nil after the last.
        public nonisolated(nonsending) mutating func next() async throws -> String? {
            try await advance()
        }

        nonisolated(nonsending) private mutating func advance() async throws -> String? {
            if failed { return nil }
            while true {
                if let newline = pending[position...].firstIndex(of: UInt8(ascii: "\n")) {
                    partial.append(contentsOf: pending[position..<newline])
                    position = newline + 1
                    return try takeLine()
                }
                partial.append(contentsOf: pending[position...])
                pending.removeAll(keepingCapacity: true)
                position = 0
                if partial.count > maximumLength {
                    throw UringError.invalid(operation, "a line is longer than \(maximumLength) bytes")
                }
                if ended { return partial.isEmpty ? nil : try takeLine() }
                let chunk: ReceivedBytes?
                do {
                    chunk = try await chunks.next(isolation: #isolation)
                } catch {
                    // An error ends the lines: what was buffered is not a
                    // finished line, and a later `next()` returns nil.
                    failed = true
                    partial.removeAll()
                    throw error
                }
                if let chunk {
                    chunk.withUnsafeBytes { pending.append(contentsOf: $0) }
                } else {
                    ended = true
                }
            }
        }

        /// The next line, without leaving the caller's actor.
        public nonisolated(nonsending) mutating func next(isolation actor: (any Actor)?) async throws -> String? {
            try await advance()
        }

        private mutating func takeLine() throws -> String {
            if partial.count > maximumLength {
                throw UringError.invalid(operation, "a line is longer than \(maximumLength) bytes")
            }
            if partial.last == UInt8(ascii: "\r") { partial.removeLast() }
            defer { partial.removeAll(keepingCapacity: true) }
            return String(decoding: partial, as: UTF8.self)
        }
    }
}
