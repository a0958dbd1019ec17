// Scenarios for issue 5's resources: what registered files and buffers buy
// over the plain path, and how File.copy (splice through a pipe) compares
// with copy_file_range and a read/write loop.

import CBaseline
import Foundation
import SystemPackage
import Uring

extension UringBench {
    /// 4 KiB reads at random aligned offsets from `tasks` concurrent tasks.
    static func registered(_ report: Report, quick: Bool, rounds: Int) async throws {
        let size = quick ? 8 << 20 : 256 << 20
        let reads = quick ? 20_000 : 400_000
        let tasks = 32
        let path = try scratchFile("registered", size: size)
        defer { unlink(path) }
        let blocks = UInt64(size / 4096)
        @Sendable func offset(_ state: inout UInt64) -> Int64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int64((state >> 33) % blocks) * 4096
        }
        let ring = try RingActor()
        try await ring.registerFiles(capacity: 4)
        let buffers = try await ring.registerBuffers(count: tasks, size: 4096)
        let plain = Shared(try await File.open(FilePath(path), on: ring))
        let slot = Shared(try await RegisteredFile.open(FilePath(path), on: ring))

        func measure(_ body: @escaping @Sendable (Int, inout UInt64) async throws -> Void) async throws -> Double {
            try await best(rounds, units: reads) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for task in 0..<tasks {
                        group.addTask { [ring] in
                            try await withTaskExecutorPreference(ring.executor) {
                                var state = UInt64(task) &+ 1
                                try await body(task, &state)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
        }
        let perTask = reads / tasks
        let normal = try await measure { _, state in
            var buffer = [UInt8](repeating: 0, count: 4096)
            for _ in 0..<perTask { _ = try await plain.value.read(into: &buffer, at: offset(&state)) }
        }
        let fixedFile = try await measure { _, state in
            var buffer = [UInt8](repeating: 0, count: 4096)
            for _ in 0..<perTask { _ = try await slot.value.read(into: &buffer, at: offset(&state)) }
        }
        let fixedBoth = try await measure { _, state in
            guard var buffer = buffers.take() else { fatalError("one registered buffer per task") }
            for _ in 0..<perTask { _ = try await slot.value.read(into: &buffer, at: offset(&state)) }
        }
        let fixedBuffer = try await measure { _, state in
            guard var buffer = buffers.take() else { fatalError("one registered buffer per task") }
            for _ in 0..<perTask { _ = try await plain.value.read(into: &buffer, at: offset(&state)) }
        }
        await ring.shutdown()
        let scenario = "registered (4 KiB random reads, page cache)"
        for (name, value) in [
            ("plain descriptor, plain buffer", normal), ("registered file, plain buffer", fixedFile),
            ("plain descriptor, registered buffer", fixedBuffer), ("registered file and buffer", fixedBoth),
        ] {
            report.add(scenario, name, "reads_per_second", value, "reads/s")
        }
        report.table(scenario, "reads_per_second", ours: "registered file and buffer")
    }

    /// Copying one file: File.copy (splice through a pipe, in the ring)
    /// against copy_file_range(2) and a read/write loop through the ring.
    static func copy(_ report: Report, quick: Bool, rounds: Int) async throws {
        let size = quick ? 16 << 20 : 512 << 20
        let source = try scratchFile("copy-source", size: size)
        let target = source + ".copy"
        defer {
            unlink(source)
            unlink(target)
        }
        let ring = try RingActor()
        let splice = try await best(rounds, units: size) {
            try await File.copy(from: FilePath(source), to: FilePath(target), on: ring)
        }
        let loop = try await best(rounds, units: size) {
            let input = try await File.open(FilePath(source), on: ring)
            let output = try await File.open(FilePath(target), .writeOnly, options: [.create, .truncate], on: ring)
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            var offset: Int64 = 0
            while true {
                let n = try await input.read(into: &buffer, at: offset)
                if n == 0 { break }
                try await output.writeAll(buffer[..<n].withUnsafeBytes { Array($0) }, at: offset)
                offset += Int64(n)
            }
            try await output.close()
            try await input.close()
        }
        await ring.shutdown()
        let kernel = bestC(rounds, units: size, "copy_file_range") {
            let start = ContinuousClock.now
            let copied = cbaseline_copy_file_range(source, target)
            precondition(copied == size, "copy_file_range failed: \(copied)")
            return Int64(seconds(ContinuousClock.now - start) * 1e9)
        }
        let scenario = "copy (page cache)"
        report.add(scenario, "File.copy (splice, 2 pieces in flight)", "bytes_per_second", splice, "B/s")
        report.add(scenario, "read/write loop through the ring", "bytes_per_second", loop, "B/s")
        report.add(scenario, "copy_file_range(2), blocking", "bytes_per_second", kernel, "B/s")
        report.table(scenario, "bytes_per_second", ours: "File.copy (splice, 2 pieces in flight)")
    }
}
