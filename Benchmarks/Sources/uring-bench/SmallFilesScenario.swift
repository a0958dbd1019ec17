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

        // Every implementation once per round, in turns, so that all meet
        // the same moments of the machine (its speed moves within seconds),
        // over 11 rounds (a round takes about half a second);
        // the table keeps each one's best round, and the goals take each
        // round's own ratio and the median over the rounds. The ring per
        // core: each ring reads its share of the files (every n-th), 16 at
        // once between them. The C readers run on the one ring's thread,
        // with the group's rings idle.
        struct Rounds {
            var swift: [Double] = [], group: [Double] = [], c: [Double] = []
            var blocking: [Double] = [], everyCore: [Double] = []
            var rings = 1
        }
        let measured = try await RingGroup.run { group in
            try await RingActor.run { ring in
                let cPaths = paths.map { strdup($0) }
                defer { cPaths.forEach { free($0) } }
                /// One run of a C reader over the whole tree, as bytes per second.
                func cRate(
                    _ name: String,
                    _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafeMutablePointer<UInt64>) -> Int64
                ) -> Double {
                    cPaths.withUnsafeBufferPointer { pointers in
                        pointers.withMemoryRebound(to: UnsafePointer<CChar>?.self) { rebound in
                            bestC(1, units: total, name) {
                                var sum: UInt64 = 0
                                let ns = body(rebound.baseAddress, &sum)
                                precondition(ns < 0 || sum == expected, "\(name) read the wrong bytes")
                                return ns
                            }
                        }
                    }
                }

                var measured = Rounds()
                let rings = group.rings.count
                measured.rings = rings
                // A reference for the 1.5× goal: every core reading and
                // summing files of its own, with no hand-off between threads
                // at all: as many threads as the group has rings (the C side
                // takes at most 64).
                let cores = UInt32(min(rings, 64))
                for round in 0..<(quick ? rounds : max(rounds, 11)) {
                    // The order reversed every other round, so that a
                    // machine speeding up or slowing down favours none.
                    for turn in round % 2 == 0 ? [0, 1, 2, 3, 4] : [4, 3, 2, 1, 0] {
                        switch turn {
                        case 0:
                            measured.swift.append(try await timed(units: total) {
                                let sum = try await readTree(paths, parallel: parallel) { path in
                                    try await sumThroughChunks(path, on: ring, chunk: chunk)
                                }
                                precondition(sum == expected, "swift-uring read the wrong bytes")
                            })
                        case 1:
                            measured.group.append(try await timed(units: total) {
                                let sums = Sums()
                                try await group.forEachRing { ring, index in
                                    let share = stride(from: index, to: paths.count, by: rings).map { paths[$0] }
                                    let sum = try await readTree(share, parallel: max(1, parallel / rings)) { path in
                                        try await sumThroughChunks(path, on: ring, chunk: chunk)
                                    }
                                    sums.add(sum)
                                }
                                precondition(sums.total == expected, "swift-uring's ring group read the wrong bytes")
                            })
                        case 2:
                            measured.c.append(cRate("C smallfiles") {
                                cbaseline_smallfiles_uring($0, UInt32(count), UInt32(parallel), UInt32(chunk), $1)
                            })
                        case 3:
                            measured.blocking.append(cRate("read(2) smallfiles") {
                                cbaseline_smallfiles_read($0, UInt32(count), UInt32(chunk), $1)
                            })
                        default:
                            measured.everyCore.append(cRate("read(2) smallfiles threads") {
                                cbaseline_smallfiles_read_threads($0, UInt32(count), UInt32(chunk), cores, $1)
                            })
                        }
                    }
                }
                return measured
            }
        }
        let rings = measured.rings
        report.add(scenario, ours, "bytes_per_second", measured.swift.max() ?? 0, "B/s")
        let oursGroup = "swift-uring chunks(), a ring per core, \(max(1, parallel / rings) * rings) files at once in all"
        report.add(scenario, oursGroup, "bytes_per_second", measured.group.max() ?? 0, "B/s")
        report.add(scenario, "C liburing, \(parallel) files at once", "bytes_per_second", measured.c.max() ?? 0, "B/s")
        report.add(scenario, "read(2), one thread", "bytes_per_second", measured.blocking.max() ?? 0, "B/s")
        report.add(scenario, "read(2), \(min(rings, 64)) threads (reference)", "bytes_per_second", measured.everyCore.max() ?? 0, "B/s")
        func ratios(_ ours: [Double], _ peer: [Double]) -> [Double] { zip(ours, peer).map { $0 / $1 } }
        let oursToBlocking = ratios(measured.swift, measured.blocking)
        let oursToC = ratios(measured.swift, measured.c)
        let groupToBlocking = ratios(measured.group, measured.blocking)
        let everyCoreToBlocking = ratios(measured.everyCore, measured.blocking)
        print(
            "\(scenario) round by round: ours ÷ read(2) \(rounded(oursToBlocking)); ours ÷ C \(rounded(oursToC)); ring per core ÷ read(2) \(rounded(groupToBlocking)); read(2) on \(min(rings, 64)) threads ÷ one \(rounded(everyCoreToBlocking))"
        )

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
        report.goal(scenario, "≥ 1.5× read(2) on one thread, median of paired rounds", ratio: median(oursToBlocking))
        report.goal(scenario, "≥ 0.8 of C liburing, median of paired rounds", ratio: median(oursToC))
        report.goal(scenario, "a ring per core: ≥ 1.5× read(2) on one thread, median of paired rounds", ratio: median(groupToBlocking))
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
