import Glibc
import SystemPackage
import Testing

@testable import Uring

/// One step of a randomized sequence on three files and one pipe.
enum ModelStep: Sendable, CustomStringConvertible {
    case open(file: Int, truncate: Bool)
    case write(file: Int, offset: Int, length: Int, seed: UInt8)
    case read(file: Int, offset: Int, length: Int)
    case sync(file: Int)
    case close(file: Int)
    case pipeWrite(length: Int, seed: UInt8)
    /// Reads the pipe; when the model says it is empty, the read must stay
    /// pending until it is cancelled.
    case pipeRead(length: Int)

    var description: String {
        switch self {
        case .open(let file, let truncate): "open(\(file), truncate: \(truncate))"
        case .write(let file, let offset, let length, let seed): "write(\(file), at: \(offset), \(length) bytes, seed \(seed))"
        case .read(let file, let offset, let length): "read(\(file), at: \(offset), \(length) bytes)"
        case .sync(let file): "sync(\(file))"
        case .close(let file): "close(\(file))"
        case .pipeWrite(let length, let seed): "pipeWrite(\(length) bytes, seed \(seed))"
        case .pipeRead(let length): "pipeRead(\(length) bytes)"
        }
    }

    static func random(using random: inout SeededGenerator) -> ModelStep {
        let file = Int(random.next() % 3)
        let offset = Int(random.next() % 9000)
        let length = 1 + Int(random.next() % 5000)
        let seed = UInt8(truncatingIfNeeded: random.next())
        switch random.next() % 10 {
        case 0, 1: return .open(file: file, truncate: random.next() % 4 == 0)
        case 2, 3: return .write(file: file, offset: offset, length: length, seed: seed)
        case 4, 5: return .read(file: file, offset: offset, length: length)
        case 6: return .sync(file: file)
        case 7: return .close(file: file)
        case 8: return .pipeWrite(length: 1 + length % 2000, seed: seed)
        default: return .pipeRead(length: length)
        }
    }
}

/// The plain model: what each step must observe.
struct FileModel {
    var contents: [[UInt8]?] = [nil, nil, nil]  // nil: the file does not exist yet
    var isOpen = [false, false, false]
    var pipe: [UInt8] = []

    static func bytes(_ length: Int, seed: UInt8) -> [UInt8] {
        (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    /// Applies a step and returns the observation the library must report.
    mutating func apply(_ step: ModelStep) -> String {
        switch step {
        case .open(let file, let truncate):
            if isOpen[file] { return "skip" }
            isOpen[file] = true
            if contents[file] == nil || truncate { contents[file] = [] }
            return "opened"
        case .write(let file, let offset, let length, let seed):
            guard isOpen[file], var data = contents[file] else { return "skip" }
            if data.count < offset + length {
                data += [UInt8](repeating: 0, count: offset + length - data.count)
            }
            data.replaceSubrange(offset..<offset + length, with: Self.bytes(length, seed: seed))
            contents[file] = data
            return "wrote \(length)"
        case .read(let file, let offset, let length):
            guard isOpen[file], let data = contents[file] else { return "skip" }
            let end = min(data.count, offset + length)
            let slice = offset < end ? Array(data[offset..<end]) : []
            return "read \(slice.count) \(Checksum.of(slice))"
        case .sync(let file):
            return isOpen[file] ? "synced" : "skip"
        case .close(let file):
            guard isOpen[file] else { return "skip" }
            isOpen[file] = false
            return "closed"
        case .pipeWrite(let length, let seed):
            if pipe.count + length > 60_000 { return "skip" }  // stay under the pipe's capacity
            pipe += Self.bytes(length, seed: seed)
            return "piped \(length)"
        case .pipeRead(let length):
            if pipe.isEmpty { return "pending, cancelled" }
            let n = min(length, pipe.count)
            let slice = Array(pipe[..<n])
            pipe.removeFirst(n)
            return "read \(n) \(Checksum.of(slice))"
        }
    }
}

/// Runs steps against the library on a fresh ring and scratch directory.
struct LibraryRunner {
    let ring: RingActor
    let scratch: Scratch
    var descriptors: [Int32?] = [nil, nil, nil]
    let pipe: (read: Int32, write: Int32)

    init(ring: RingActor, scratch: Scratch) {
        self.ring = ring
        self.scratch = scratch
        self.pipe = makePipe()
    }

    func path(_ file: Int) -> FilePath { scratch.file("model-\(file)") }

    /// Borrows a descriptor as a `File` for one operation.
    func withFile<R>(_ fd: Int32, _ body: (borrowing File) async throws -> R) async throws -> R {
        let file = File(adopting: FileDescriptor(rawValue: fd), on: ring)
        let result = await Result(catching: { try await body(file) })
        _ = try file.takeDescriptor()
        return try result.get()
    }

    mutating func apply(_ step: ModelStep) async -> String {
        do {
            switch step {
            case .open(let file, let truncate):
                if descriptors[file] != nil { return "skip" }
                let opened = try await File.open(
                    path(file), .readWrite, options: truncate ? [.create, .truncate] : [.create], on: ring)
                descriptors[file] = try opened.takeDescriptor().rawValue
                return "opened"
            case .write(let file, let offset, let length, let seed):
                guard let fd = descriptors[file] else { return "skip" }
                try await withFile(fd) { try await $0.writeAll(FileModel.bytes(length, seed: seed), at: Int64(offset)) }
                return "wrote \(length)"
            case .read(let file, let offset, let length):
                guard let fd = descriptors[file] else { return "skip" }
                var buffer = [UInt8](repeating: 0, count: length)
                let n = try await withFile(fd) { try await $0.readAll(into: &buffer, at: Int64(offset)) }
                return "read \(n) \(Checksum.of(buffer[..<n]))"
            case .sync(let file):
                guard let fd = descriptors[file] else { return "skip" }
                try await withFile(fd) { try await $0.sync() }
                return "synced"
            case .close(let file):
                guard let fd = descriptors[file] else { return "skip" }
                descriptors[file] = nil
                try await File(adopting: FileDescriptor(rawValue: fd), on: ring).close()
                return "closed"
            case .pipeWrite(let length, let seed):
                let used = pipeBytes()
                if used + length > 60_000 { return "skip" }
                try await withFile(pipe.write) { try await $0.writeAll(FileModel.bytes(length, seed: seed)) }
                return "piped \(length)"
            case .pipeRead(let length):
                let ring = self.ring
                let fd = pipe.read
                let before = ring.statistics.inFlight
                let empty = pipeBytes() == 0
                return await withTaskGroup(of: String.self) { group in
                    group.addTask {
                        let file = File(adopting: FileDescriptor(rawValue: fd), on: ring)
                        var buffer = [UInt8](repeating: 0, count: length)
                        let outcome = await Result(catching: { try await file.read(into: &buffer) })
                        _ = try? file.takeDescriptor()
                        switch outcome {
                        case .success(let n): return "read \(n) \(Checksum.of(buffer[..<n]))"
                        case .failure(is CancellationError): return "pending, cancelled"
                        case .failure(let error): return "error \(error)"
                        }
                    }
                    // An empty pipe leaves the read in the kernel: cancel it
                    // once it is there. A full one completes on its own.
                    if empty {
                        while ring.statistics.inFlight <= before && !Task.isCancelled { await Task.yield() }
                        group.cancelAll()
                    }
                    return await group.next()!
                }
            }
        } catch {
            return "error \(error)"
        }
    }

    /// Bytes waiting in the pipe (FIONREAD).
    func pipeBytes() -> Int {
        var count: Int32 = 0
        _ = ioctl(pipe.read, UInt(FIONREAD), &count)
        return Int(count)
    }

    mutating func finish() async {
        for (index, fd) in descriptors.enumerated() {
            if let fd { try? await File(adopting: FileDescriptor(rawValue: fd), on: ring).close() }
            descriptors[index] = nil
        }
        close(pipe.read)
        close(pipe.write)
    }
}

extension AllTests {
    @Suite("Randomized sequences against a model", .checksDescriptorLeaks)
    struct ModelTests {
        /// Runs `steps`; returns the first step whose observation differs from
        /// the model's, with both observations.
        static func firstMismatch(_ steps: [ModelStep]) async throws -> (index: Int, expected: String, actual: String)? {
            let scratch = Scratch()
            let ring = try RingActor(options: RingOptions(entries: 8))
            var model = FileModel()
            var runner = LibraryRunner(ring: ring, scratch: scratch)
            var mismatch: (Int, String, String)? = nil
            for (index, step) in steps.enumerated() {
                let expected = model.apply(step)
                let actual = await runner.apply(step)
                if expected != actual {
                    mismatch = (index, expected, actual)
                    break
                }
            }
            await runner.finish()
            await ring.shutdown()
            if scratch.openDescriptors != 0 { return (steps.count, "no open descriptors", "leaked descriptors") }
            return mismatch
        }

        /// Removes steps one at a time while the failure persists.
        static func shrink(_ steps: [ModelStep]) async throws -> [ModelStep] {
            var current = steps
            var index = current.count - 1
            while index >= 0 {
                var candidate = current
                candidate.remove(at: index)
                if try await firstMismatch(candidate) != nil { current = candidate }
                index -= 1
            }
            return current
        }

        @Test("200 random sequences of open, read, write, sync, close and pipe reads with cancellation match the model")
        func randomSequences() async throws {
            let seed = testSeed()
            print("model: seed \(seed) (URING_TEST_SEED replays it)")
            var random = SeededGenerator(seed: seed)
            var steps = 0
            for sequence in 0..<200 {
                let length = 10 + Int(random.next() % 40)
                let plan = (0..<length).map { _ in ModelStep.random(using: &random) }
                steps += plan.count
                if let failure = try await Self.firstMismatch(plan) {
                    let minimal = try await Self.shrink(plan)
                    Issue.record(
                        """
                        seed \(seed), sequence \(sequence): step \(failure.index) expected \
                        "\(failure.expected)", got "\(failure.actual)".
                        Minimal failing sequence (\(minimal.count) steps):
                        \(minimal.map(\.description).joined(separator: "\n"))
                        """)
                    return
                }
            }
            print("model: seed \(seed), 200 sequences, \(steps) steps, all matched")
        }
    }
}
