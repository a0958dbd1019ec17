// scaling: awaited NOPs and 4 KiB page-cache reads (awaited one by one from
// 32 tasks, and in batches of 32 from one task) on one ring and on a
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
        var figures: [String: Double] = [:]

        // Awaited NOPs: one task per ring, each awaiting one NOP at a time.
        let ops = quick ? 20_000 : 1_000_000
        for rings in [1, 2] {
            let ours = try await RingGroup.run(rings: rings, options: pinned) { group in
                try await best(rounds, units: ops) {
                    try await group.forEachRing { ring, _ in
                        for _ in 0..<(ops / rings) { try await ring.nop() }
                    }
                }
            }
            let c = bestC(rounds, units: ops, "C nop threads") {
                cpus.withUnsafeBufferPointer { cbaseline_ring_threads(0, "", UInt32(rings), 1, UInt32(ops), 0, $0.baseAddress) }
            }
            report.add("scaling", "swift-uring nop, \(rings) ring\(rings > 1 ? "s" : "")", "ops_per_second", ours, "ops/s")
            report.add("scaling", "C liburing nop, \(rings) thread\(rings > 1 ? "s" : "")", "ops_per_second", c, "ops/s")
            figures["nop\(rings)"] = ours
            figures["cnop\(rings)"] = c
        }

        // Random 4 KiB reads from the page cache: 32 tasks per ring.
        let size = quick ? 64 << 20 : 256 << 20
        let reads = quick ? 20_000 : 400_000
        let depth = 32
        let path = try scratchFile("scaling", size: size)
        defer { unlink(path) }
        let blocks = UInt64(size / 4096)
        for rings in [1, 2] {
            let ours = try await RingGroup.run(rings: rings, options: pinned) { group in
                try await best(rounds, units: reads) {
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
            let c = bestC(rounds, units: reads, "C randread threads") {
                cpus.withUnsafeBufferPointer {
                    cbaseline_ring_threads(1, path, UInt32(rings), UInt32(depth), UInt32(reads), Int64(size), $0.baseAddress)
                }
            }
            // The same reads through the batch API: one task per ring, 32
            // reads per await (as `randread`'s batch row does on one ring).
            let batched = try await RingGroup.run(rings: rings, options: pinned) { group in
                try await best(rounds, units: reads) {
                    try await group.forEachRing { ring, index in
                        let file = try await File.open(FilePath(path), on: ring)
                        var buffers = [[UInt8]](repeating: [UInt8](repeating: 0, count: 4096), count: depth)
                        var offsets = [Int64](repeating: 0, count: depth)
                        var state = UInt64(index) &+ 1
                        for _ in 0..<(reads / rings / depth) {
                            for i in 0..<depth {
                                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                                offsets[i] = Int64((state >> 33) % blocks) * 4096
                            }
                            _ = try await file.read(into: &buffers, atOffsets: offsets)
                        }
                        try await file.close()
                    }
                }
            }
            report.add("scaling", "swift-uring randread, \(rings) ring\(rings > 1 ? "s" : "")", "reads_per_second", ours, "reads/s")
            report.add(
                "scaling", "swift-uring randread in batches of \(depth), \(rings) ring\(rings > 1 ? "s" : "")",
                "reads_per_second", batched, "reads/s")
            report.add("scaling", "C liburing randread, \(rings) thread\(rings > 1 ? "s" : "")", "reads_per_second", c, "reads/s")
            figures["read\(rings)"] = ours
            figures["batch\(rings)"] = batched
            figures["cread\(rings)"] = c
        }
        report.table("scaling", "ops_per_second", ours: "swift-uring nop, 2 rings")
        report.table("scaling", "reads_per_second", ours: "swift-uring randread, 2 rings")
        func ratio(_ a: String, _ b: String) -> Double? {
            guard let x = figures[a], let y = figures[b], y > 0 else { return nil }
            return x / y
        }
        report.goal("scaling", "nop: 2 rings ≥ 1.8× 1 ring", ratio: ratio("nop2", "nop1"))
        report.goal("scaling", "nop: 2 rings ≥ 0.8 of C with 2 threads", ratio: ratio("nop2", "cnop2"))
        report.goal("scaling", "randread: 2 rings ≥ 1.8× 1 ring", ratio: ratio("read2", "read1"))
        report.goal("scaling", "randread: 2 rings ≥ 0.8 of C with 2 threads", ratio: ratio("read2", "cread2"))
        report.goal("scaling", "randread in batches: 2 rings ≥ 1.8× 1 ring", ratio: ratio("batch2", "batch1"))
        report.goal("scaling", "randread in batches: 2 rings ≥ 0.8 of C with 2 threads", ratio: ratio("batch2", "cread2"))
        report.goal("scaling", "(C's own scaling, nop: 2 threads ÷ 1)", ratio: ratio("cnop2", "cnop1"))
        report.goal("scaling", "(C's own scaling, randread: 2 threads ÷ 1)", ratio: ratio("cread2", "cread1"))
    }
}
