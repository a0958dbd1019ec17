// scaling: awaited NOPs and 4 KiB page-cache reads (awaited one by one from
// 32 tasks, and in batches of 32 blocks from one task) on one ring and on a
// RingGroup of two, against C liburing with one and two threads (a ring
// each), ring threads and C threads pinned to the same CPUs.

import CBaseline
import Foundation
import SystemPackage
import Uring

extension UringBench {
    static func scaling(_ report: Report, quick: Bool, rounds: Int) async throws {
        // The first two CPUs this process may run on: where RingGroup pins
        // rings 0 and 1, and where C's threads go.
        var usable = [Int32](repeating: 0, count: 2)
        let found = cbaseline_usable_cpus(&usable, 2)
        guard found >= 2 else {
            report.skipped("scaling", "2 rings", "this process may run on one CPU only")
            return
        }
        let cpus = usable
        // Ring N on the Nth usable CPU, as C's thread N is on cpus[N]: a
        // group smaller than the machine is not pinned by default, and one
        // unpinned ring against one pinned C thread is not a fair pair.
        var pinned = RingGroupOptions()
        pinned.pinsThreads = true

        let ops = quick ? 20_000 : 1_000_000
        let size = quick ? 64 << 20 : 256 << 20
        let reads = quick ? 20_000 : 400_000
        let depth = 32
        let path = try scratchFile("scaling", size: size)
        defer { unlink(path) }
        let blocks = UInt64(size / 4096)

        /// Awaited NOPs: one task per ring, each awaiting one NOP at a time.
        nonisolated(nonsending) func nops(_ group: RingGroup, _ rings: Int) async throws -> Double {
            try await timed(units: ops) {
                try await group.forEachRing { ring, _ in
                    for _ in 0..<(ops / rings) { try await ring.nop() }
                }
            }
        }
        /// Random 4 KiB reads from the page cache: 32 tasks per ring.
        nonisolated(nonsending) func taskReads(_ group: RingGroup, _ rings: Int) async throws -> Double {
            try await timed(units: reads) {
                try await group.forEachRing { ring, index in
                    let file = Shared(try await File.open(FilePath(path), on: ring))
                    try await withThrowingTaskGroup(of: Void.self) { tasks in
                        for task in 0..<depth {
                            tasks.addTask {
                                var buffer = AlignedBuffer(count: 4096)
                                var state = UInt64(index * depth + task) &+ 1
                                for _ in 0..<(reads / rings / depth) {
                                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                                    let offset = Int64((state >> 33) % blocks) * 4096
                                    _ = try await file.value.read(into: &buffer, at: offset)
                                }
                            }
                        }
                        try await tasks.waitForAll()
                    }
                }
            }
        }
        /// The same reads through the batch API: one task per ring, 32
        /// blocks of one aligned buffer per await (as `randread`'s batch row
        /// does on one ring).
        nonisolated(nonsending) func batchReads(_ group: RingGroup, _ rings: Int) async throws -> Double {
            try await timed(units: reads) {
                try await group.forEachRing { ring, index in
                    let file = try await File.open(FilePath(path), on: ring)
                    var buffer = AlignedBuffer(count: depth * 4096)
                    var offsets = [Int64](repeating: 0, count: depth)
                    var state = UInt64(index) &+ 1
                    for _ in 0..<(reads / rings / depth) {
                        for i in 0..<depth {
                            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                            offsets[i] = Int64((state >> 33) % blocks) * 4096
                        }
                        _ = try await file.read(into: &buffer, blockSize: 4096, atOffsets: offsets)
                    }
                    try await file.close()
                }
            }
        }

        // Every measurement once per round, in turns, for nine rounds (about
        // four seconds each), with both groups alive
        // (idle rings sleep), so each ratio compares figures taken seconds
        // apart at most; the table keeps each one's best round, and the
        // goals take each round's ratio and the median over the rounds (the
        // machine's speed moves within seconds).
        var series: [String: [Double]] = [:]
        try await RingGroup.run(rings: 1, options: pinned) { one in
            try await RingGroup.run(rings: 2, options: pinned) { two in
                for round in 0..<(quick ? rounds : max(rounds, 9)) {
                    // One ring first in even rounds, two in odd ones.
                    for rings in round % 2 == 0 ? [1, 2] : [2, 1] {
                        let group = rings == 1 ? one : two
                        series["nop\(rings)", default: []].append(try await nops(group, rings))
                        series["cnop\(rings)", default: []].append(bestC(1, units: ops, "C nop threads") {
                            cpus.withUnsafeBufferPointer {
                                cbaseline_ring_threads(0, "", UInt32(rings), 1, UInt32(ops), 0, $0.baseAddress)
                            }
                        })
                        series["read\(rings)", default: []].append(try await taskReads(group, rings))
                        series["batch\(rings)", default: []].append(try await batchReads(group, rings))
                        series["cread\(rings)", default: []].append(bestC(1, units: reads, "C randread threads") {
                            cpus.withUnsafeBufferPointer {
                                cbaseline_ring_threads(
                                    1, path, UInt32(rings), UInt32(depth), UInt32(reads), Int64(size), $0.baseAddress)
                            }
                        })
                    }
                }
            }
        }
        func best(_ key: String) -> Double { series[key]?.max() ?? 0 }
        for rings in [1, 2] {
            let plural = rings > 1 ? "s" : ""
            report.add("scaling", "swift-uring nop, \(rings) ring\(plural)", "ops_per_second", best("nop\(rings)"), "ops/s")
            report.add("scaling", "C liburing nop, \(rings) thread\(plural)", "ops_per_second", best("cnop\(rings)"), "ops/s")
            report.add(
                "scaling", "swift-uring randread, \(rings) ring\(plural)", "reads_per_second", best("read\(rings)"), "reads/s")
            report.add(
                "scaling", "swift-uring randread in batches of \(depth) blocks (one aligned buffer), \(rings) ring\(plural)", "reads_per_second",
                best("batch\(rings)"), "reads/s")
            report.add(
                "scaling", "C liburing randread, \(rings) thread\(plural)", "reads_per_second", best("cread\(rings)"),
                "reads/s")
        }
        report.table("scaling", "ops_per_second", ours: "swift-uring nop, 2 rings")
        report.table("scaling", "reads_per_second", ours: "swift-uring randread, 2 rings")
        /// The median over rounds of each round's `a ÷ b`.
        func ratio(_ a: String, _ b: String) -> Double? {
            guard let x = series[a], let y = series[b], !x.isEmpty, x.count == y.count else { return nil }
            let pairs = zip(x, y).map { $0 / $1 }
            print("scaling \(a) ÷ \(b) round by round: \(rounded(pairs))")
            return median(pairs)
        }
        report.goal("scaling", "nop: 2 rings ≥ 1.8× 1 ring, median of paired rounds", ratio: ratio("nop2", "nop1"))
        report.goal("scaling", "nop: 2 rings ≥ 0.8 of C with 2 threads, median of paired rounds", ratio: ratio("nop2", "cnop2"))
        report.goal("scaling", "randread: 2 rings ≥ 1.8× 1 ring, median of paired rounds", ratio: ratio("read2", "read1"))
        report.goal("scaling", "randread: 2 rings ≥ 0.8 of C with 2 threads, median of paired rounds", ratio: ratio("read2", "cread2"))
        report.goal("scaling", "randread in batches: 2 rings ≥ 1.8× 1 ring, median of paired rounds", ratio: ratio("batch2", "batch1"))
        report.goal("scaling", "randread in batches: 2 rings ≥ 0.8 of C with 2 threads, median of paired rounds", ratio: ratio("batch2", "cread2"))
        report.goal("scaling", "(C's own scaling, nop: 2 threads ÷ 1), median of paired rounds", ratio: ratio("cnop2", "cnop1"))
        report.goal("scaling", "(C's own scaling, randread: 2 threads ÷ 1), median of paired rounds", ratio: ratio("cread2", "cread1"))
    }
}
