// smallfiles: a tree of files of mixed sizes (most small), each read to its
// end and every byte summed, through chunks() with 16 files at once (on one
// ring, and on a ring per core), through C on liburing, through read(2) on
// one thread (and, for reference, on a thread per core), and through
// NIOFileSystem.

import CBaseline
import Foundation
import NIOCore
import Synchronization
import SystemPackage
import Uring
import _NIOFileSystem

extension UringBench {
    /// Sizes that repeat through the tree: 1.34 MB per ten files, so 2,000
    /// files hold 268 MB, and half the files are under 30 KB.
    static let smallFileSizes = [3, 700, 2_000, 9_000, 30_000, 70_000, 150_000, 300_000, 600_000, 180_000]

    static func smallFiles(_ report: Report, quick: Bool, rounds: Int) async throws {
        let count = quick ? 400 : 2_000
        let parallel = 16
        let chunk = 256 << 10
        let directory = ".uring-bench-smallfiles-\(getpid())"
        let (paths, total, expected) = try makeTree(directory, count: count)
        defer {
            for path in paths { unlink(path) }
            rmdir(directory)
        }
        let scenario = "smallfiles (\(count) files, page cache)"
        let ours = "swift-uring chunks(), \(parallel) files at once"

        let swift = try await RingActor.run { ring in
            try await best(rounds, units: total) {
                let sum = try await readTree(paths, parallel: parallel) { path in
                    try await sumThroughChunks(path, on: ring, chunk: chunk)
                }
                precondition(sum == expected, "swift-uring read the wrong bytes")
            }
        }
        report.add(scenario, ours, "bytes_per_second", swift, "B/s")

        // Every core: a ring per CPU, each reading its share of the files
        // (every n-th), 16 at once between them.
        let (group, rings) = try await RingGroup.run { group in
            let rings = group.rings.count
            let rate = try await best(rounds, units: total) {
                let sums = Sums()
                try await group.forEachRing { ring, index in
                    let share = stride(from: index, to: paths.count, by: rings).map { paths[$0] }
                    let sum = try await readTree(share, parallel: max(1, parallel / rings)) { path in
                        try await sumThroughChunks(path, on: ring, chunk: chunk)
                    }
                    sums.add(sum)
                }
                precondition(sums.total == expected, "swift-uring's ring group read the wrong bytes")
            }
            return (rate, rings)
        }
        let oursGroup = "swift-uring chunks(), a ring per core, \(max(1, parallel / rings) * rings) files at once in all"
        report.add(scenario, oursGroup, "bytes_per_second", group, "B/s")

        let cPaths = paths.map { strdup($0) }
        defer { cPaths.forEach { free($0) } }
        let c = cPaths.withUnsafeBufferPointer { pointers in
            pointers.withMemoryRebound(to: UnsafePointer<CChar>?.self) { rebound in
                bestC(rounds, units: total, "C smallfiles") {
                    var sum: UInt64 = 0
                    let ns = cbaseline_smallfiles_uring(rebound.baseAddress, UInt32(count), UInt32(parallel), UInt32(chunk), &sum)
                    precondition(ns < 0 || sum == expected, "C read the wrong bytes")
                    return ns
                }
            }
        }
        report.add(scenario, "C liburing, \(parallel) files at once", "bytes_per_second", c, "B/s")
        let blocking = cPaths.withUnsafeBufferPointer { pointers in
            pointers.withMemoryRebound(to: UnsafePointer<CChar>?.self) { rebound in
                bestC(rounds, units: total, "read(2) smallfiles") {
                    var sum: UInt64 = 0
                    let ns = cbaseline_smallfiles_read(rebound.baseAddress, UInt32(count), UInt32(chunk), &sum)
                    precondition(ns < 0 || sum == expected, "read(2) read the wrong bytes")
                    return ns
                }
            }
        }
        report.add(scenario, "read(2), one thread", "bytes_per_second", blocking, "B/s")
        // A reference for the 1.5× goal: every core reading and summing
        // files of its own, with no hand-off between threads at all: as
        // many threads as the group had rings (the C side takes at most 64).
        let cores = UInt32(min(rings, 64))
        let everyCore = cPaths.withUnsafeBufferPointer { pointers in
            pointers.withMemoryRebound(to: UnsafePointer<CChar>?.self) { rebound in
                bestC(rounds, units: total, "read(2) smallfiles threads") {
                    var sum: UInt64 = 0
                    let ns = cbaseline_smallfiles_read_threads(rebound.baseAddress, UInt32(count), UInt32(chunk), cores, &sum)
                    precondition(ns < 0 || sum == expected, "read(2) threads read the wrong bytes")
                    return ns
                }
            }
        }
        report.add(scenario, "read(2), \(cores) threads (reference)", "bytes_per_second", everyCore, "B/s")

        let nio = try await best(rounds, units: total) {
            let sum = try await readTree(paths, parallel: parallel) { path in
                try await FileSystem.shared.withFileHandle(forReadingAt: path) { handle in
                    var sum: UInt64 = 0
                    for try await buffer in handle.readChunks(chunkLength: .bytes(Int64(chunk))) {
                        sum &+= buffer.withUnsafeReadableBytes { byteSum($0) }
                    }
                    return sum
                }
            }
            precondition(sum == expected, "NIOFileSystem read the wrong bytes")
        }
        report.add(scenario, "NIOFileSystem readChunks, \(parallel) files at once", "bytes_per_second", nio, "B/s")

        report.table(scenario, "bytes_per_second", ours: ours)
        report.goal(scenario, "≥ 1.5× read(2) on one thread", ratio: swift / blocking)
        report.goal(scenario, "≥ 0.8 of C liburing", ratio: swift / c)
        report.goal(scenario, "a ring per core: ≥ 1.5× read(2) on one thread", ratio: group / blocking)
    }

    /// Reads the file at `path` through `chunks()` and sums its bytes.
    nonisolated(nonsending) static func sumThroughChunks(
        _ path: FilePath, on ring: RingActor, chunk: Int
    ) async throws -> UInt64 {
        let file = try await File.open(path, on: ring)
        var sum: UInt64 = 0
        for try await piece in file.chunks(size: chunk) { sum &+= byteSum(piece) }
        try await file.close()
        return sum
    }

    /// The rings' sums, added up as each ring finishes.
    final class Sums: Sendable {
        private let value = Mutex<UInt64>(0)
        func add(_ sum: UInt64) { value.withLock { $0 &+= sum } }
        var total: UInt64 { value.withLock { $0 } }
    }

    /// Runs `read` on every path, `parallel` at once in a task group, and
    /// adds up what it returns.
    nonisolated(nonsending) static func readTree(
        _ paths: [String], parallel: Int, _ read: @escaping @Sendable (FilePath) async throws -> UInt64
    ) async throws -> UInt64 {
        try await withThrowingTaskGroup(of: UInt64.self) { group in
            var next = 0
            var sum: UInt64 = 0
            func start() {
                guard next < paths.count else { return }
                let path = FilePath(paths[next])
                next += 1
                group.addTask { try await read(path) }
            }
            for _ in 0..<parallel { start() }
            while let one = try await group.next() {
                sum &+= one
                start()
            }
            return sum
        }
    }

    /// Writes the tree; returns its paths, its size and the sum of its bytes.
    static func makeTree(_ directory: String, count: Int) throws -> (paths: [String], total: Int, sum: UInt64) {
        mkdir(directory, 0o700)
        var paths: [String] = []
        var total = 0
        var sum: UInt64 = 0
        for index in 0..<count {
            let size = smallFileSizes[index % smallFileSizes.count]
            var bytes = [UInt8](repeating: 0, count: size)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ index &* 7) }
            let path = "\(directory)/\(index)"
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            precondition(fd >= 0, "cannot create \(path)")
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            precondition(written == size, "short write to \(path)")
            close(fd)
            paths.append(path)
            total += size
            sum &+= byteSum(bytes)
        }
        // Written back now, so the writeback does not compete with the readers.
        sync()
        return (paths, total, sum)
    }

    static func byteSum(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { byteSum($0) }
    }

    /// The same C function the C readers call, so only the reading differs.
    static func byteSum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        cbaseline_byte_sum(bytes.baseAddress, Int64(bytes.count))
    }
}
