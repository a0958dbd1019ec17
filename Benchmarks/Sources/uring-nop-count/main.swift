// uring-nop-count IMPL N: runs N awaited NOPs and exits. IMPL is "swift"
// (mode (a): one task in RingActor.run), "c32" (C, 32 per submit), "swift32" (mode (c): 32 tasks in
// RingActor.run), "iso" and "iso32" (the same from functions isolated to the
// ring, with no task executor preference), "batch32" (mode (d): ring.batch
// of 32 in RingActor.run; "batch8", "batch128" and so on for other sizes), or "c" (C on liburing). For profiling other
// scenarios: "tasks32 N FILE" (32 tasks each awaiting one random 4 KiB read
// at a time), "reads32 N FILE"/"blocks32 N FILE"/"creads32 N FILE" (32 reads
// per await into an array of arrays, or into blocks of one aligned buffer as
// randread's batch mode does; and C's loop) and "walk N ROOT [CONCURRENCY]"/"cwalk N ROOT" (walk's
// withMetadata mode and C's loop). The nop scenario runs it under
// callgrind to count instructions, and it is what to profile with
// `perf record`; it is a program of its own because valgrind cannot run
// uring-bench itself (its malloc interposer and Foundation).

import CBaseline
import Uring

let arguments = CommandLine.arguments
let count = arguments.count > 2 ? Int(arguments[2]) ?? 1000 : 1000
if arguments.count > 1 && arguments[1] == "c" {
    precondition(cbaseline_nops(UInt32(count), 1) > 0)
} else if arguments.count > 1 && arguments[1] == "c32" {
    precondition(cbaseline_nops(UInt32(count), 32) > 0)
} else {
    var options = RingOptions()
    // Spinning would add instructions that buy nothing under valgrind.
    options.idleSpin = .zero
    options.callerSpin = .zero
    if arguments.count > 1 && arguments[1] == "iso32" {
        let ring = try RingActor()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<32 {
                group.addTask { try await loop(ring, count / 32) }
            }
            try await group.waitForAll()
        }
        await ring.shutdown()
    } else if arguments.count > 1 && arguments[1] == "iso" {
        let ring = try RingActor(options: options)
        try await loop(ring, count)
        await ring.shutdown()
    } else if arguments.count > 1 && arguments[1].hasPrefix("batch"), let size = Int(arguments[1].dropFirst(5)), size > 0 {
        // "batch32", or another size ("batch8", "batch128").
        try await RingActor.run(options: options) { ring in
            for _ in 0..<(count / size) {
                _ = try await ring.batch { batch in
                    for _ in 0..<size { batch.nop() }
                }
            }
        }
    } else if arguments.count > 3 && (arguments[1] == "reads32" || arguments[1] == "blocks32") {
        // `reads32 N FILE`: N random 4 KiB reads of FILE (at least 1 MiB,
        // ideally in the page cache), 32 per `read(into:atOffsets:)` into an
        // array of arrays; `blocks32 N FILE`: the same into 32 blocks of one
        // aligned buffer (`read(into:blockSize:atOffsets:)`), as `uring-bench
        // randread`'s batch mode does. With "creads32", C's loop.
        let intoBlocks = arguments[1] == "blocks32"
        try await RingActor.run(options: options) { ring in
            let file = try await File.open(FilePath(arguments[3]), on: ring)
            let blocks = UInt64(try await file.metadata().size / 4096)
            var buffers = [[UInt8]](repeating: [UInt8](repeating: 0, count: 4096), count: 32)
            var buffer = AlignedBuffer(count: 32 * 4096)
            var offsets = [Int64](repeating: 0, count: 32)
            var state: UInt64 = 1
            for _ in 0..<(count / 32) {
                for i in 0..<32 {
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    offsets[i] = Int64((state >> 33) % blocks) * 4096
                }
                if intoBlocks {
                    _ = try await file.read(into: &buffer, blockSize: 4096, atOffsets: offsets)
                } else {
                    _ = try await file.read(into: &buffers, atOffsets: offsets)
                }
            }
            try await file.close()
        }
    } else if arguments.count > 3 && arguments[1] == "tasks32" {
        // `tasks32 N FILE`: N random 4 KiB reads of FILE by 32 tasks in
        // `RingActor.run`, each awaiting one read at a time, as the
        // scaling scenario's task reads do on each ring.
        try await RingActor.run(options: options) { ring in
            let file = Shared(try await File.open(FilePath(arguments[3]), on: ring))
            let blocks = UInt64(try await file.value.metadata().size / 4096)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for task in 0..<32 {
                    tasks.addTask {
                        var buffer = AlignedBuffer(count: 4096)
                        var state = UInt64(task) &+ 1
                        for _ in 0..<(count / 32) {
                            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                            _ = try await file.value.read(into: &buffer, at: Int64((state >> 33) % blocks) * 4096)
                        }
                    }
                }
                try await tasks.waitForAll()
            }
        }
    } else if arguments.count > 3 && arguments[1] == "walk" {
        // `walk N ROOT`: N walks of ROOT with metadata, as in `uring-bench
        // walk`; with "cwalk", C's loop.
        // With the default options (spinning on), as uring-bench walk runs.
        let concurrency = arguments.count > 4 ? Int(arguments[4]) : nil
        var walkOptions = RingOptions()
        if let spin = arguments.count > 5 ? Int(arguments[5]) : nil { walkOptions.idleSpin = .microseconds(spin) }
        try await RingActor.run(options: walkOptions) { ring in
            for _ in 0..<count {
                for try await _ in Directory.walk(FilePath(arguments[3]), withMetadata: true, concurrency: concurrency) {}
            }
        }
    } else if arguments.count > 3 && arguments[1] == "cwalk" {
        for _ in 0..<count {
            var entries: Int64 = 0
            precondition(cbaseline_walk(arguments[3], &entries) > 0)
        }
    } else if arguments.count > 3 && arguments[1] == "creads32" {
        let size = try await RingActor.run { ring in
            let file = try await File.open(FilePath(arguments[3]), on: ring)
            let size = try await file.metadata().size
            try await file.close()
            return size
        }
        precondition(cbaseline_randread(arguments[3], 0, 32, UInt32(count), Int64(size)) > 0)
    } else if arguments.count > 1 && arguments[1] == "swift32" {
        try await RingActor.run { ring in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<32 {
                    group.addTask { for _ in 0..<(count / 32) { try await ring.nop() } }
                }
                try await group.waitForAll()
            }
        }
    } else {
        try await RingActor.run(options: options) { ring in
            for _ in 0..<count { try await ring.nop() }
        }
    }
}

func loop(_ ring: isolated RingActor, _ count: Int) async throws {
    for _ in 0..<count { try await ring.nop() }
}

/// One value that several tasks read (a `File`, say), as uring-bench's own.
final class Shared<Value: ~Copyable & Sendable>: Sendable {
    let value: Value
    init(_ value: consuming Value) { self.value = value }
}
