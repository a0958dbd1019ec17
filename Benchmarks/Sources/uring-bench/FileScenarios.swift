// randread and seqread: reading files through this library, through C on
// liburing, fio, NIOFileSystem, blocking threads and cat, on the same file.

import CBaseline
import Foundation
import NIOCore
import SystemPackage
import Uring
import _NIOFileSystem

extension UringBench {
    static func randomRead(_ report: Report, quick: Bool, rounds: Int) async throws {
        let size = quick ? 64 << 20 : 1 << 30
        let reads = quick ? 20_000 : 200_000
        let depth = 32
        let path = try scratchFile("randread", size: size)
        defer { unlink(path) }
        let blocks = UInt64(size / 4096)

        for direct in [false, true] {
            let scenario = direct ? "randread (O_DIRECT)" : "randread (page cache)"
            let ours = "swift-uring, \(depth) tasks"
            // Ours (32 tasks on the ring executor, each awaiting one read at
            // a time; and one task reading 32 blocks of one aligned buffer
            // per await through the batch API) and C, in turns, each C loop
            // a plain call on the ring's thread. A round is `slices` turns of
            // each, a quarter of its reads at a time, the order reversed
            // every other slice, so all three meet the same moments of the
            // machine (whose speed moves within a second: whole-round turns
            // of 0.2 s each put single pairs between 0.66 and 1.14 for the
            // same code). Every slice of each starts its offsets from the
            // same seeds, as C's loop does on each call. The table keeps each
            // one's best round; the goals take each round's ratio and the
            // median over the rounds.
            let slices = 4
            let sliceReads = reads / slices / depth * depth
            let roundReads = Double(sliceReads * slices)
            var swift = 0.0, batched = 0.0, c = 0.0
            var taskPairs: [Double] = [], batchPairs: [Double] = []
            try await RingActor.run { ring in
                let file = Shared(try await File.open(FilePath(path), options: direct ? [.direct] : [], on: ring))
                // One page-aligned buffer of 32 blocks, as C reads into.
                var batchBuffer = AlignedBuffer(count: depth * 4096)
                var offsets = [Int64](repeating: 0, count: depth)
                // Nine rounds from the page cache (about a second each), five
                // with O_DIRECT (several seconds each).
                for _ in 0..<(quick ? rounds : max(rounds, direct ? 5 : 9)) {
                    var taskSeconds = 0.0, batchSeconds = 0.0, cSeconds = 0.0
                    for slice in 0..<slices {
                        for turn in slice % 2 == 0 ? [0, 1, 2] : [2, 1, 0] {
                            switch turn {
                            case 0:
                                taskSeconds += try await elapsed {
                                    try await withThrowingTaskGroup(of: Void.self) { group in
                                        for task in 0..<depth {
                                            group.addTask {
                                                var buffer = AlignedBuffer(count: 4096)
                                                var state = UInt64(task) &+ 1
                                                for _ in 0..<(sliceReads / depth) {
                                                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                                                    let offset = Int64((state >> 33) % blocks) * 4096
                                                    _ = try await file.value.read(into: &buffer, at: offset)
                                                }
                                            }
                                        }
                                        try await group.waitForAll()
                                    }
                                }
                            case 1:
                                batchSeconds += try await elapsed {
                                    var state: UInt64 = 1
                                    for _ in 0..<(sliceReads / depth) {
                                        for i in 0..<depth {
                                            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                                            offsets[i] = Int64((state >> 33) % blocks) * 4096
                                        }
                                        _ = try await file.value.read(into: &batchBuffer, blockSize: 4096, atOffsets: offsets)
                                    }
                                }
                            default:
                                let ns = cbaseline_randread(
                                    path, direct ? 1 : 0, UInt32(depth), UInt32(sliceReads), Int64(size))
                                precondition(ns > 0, "C randread failed: errno \(-ns)")
                                cSeconds += Double(ns) / 1e9
                            }
                        }
                    }
                    let tasksRound = roundReads / taskSeconds
                    let batchRound = roundReads / batchSeconds
                    let cRound = roundReads / cSeconds
                    swift = max(swift, tasksRound)
                    batched = max(batched, batchRound)
                    c = max(c, cRound)
                    taskPairs.append(tasksRound / cRound)
                    batchPairs.append(batchRound / cRound)
                }
            }
            report.add(scenario, ours, "reads_per_second", swift, "reads/s")
            report.add(
                scenario, "swift-uring, batches of \(depth) blocks (one task, one aligned buffer)", "reads_per_second",
                batched, "reads/s")
            print(
                "\(scenario): ours ÷ C round by round: 32 tasks \(rounded(taskPairs)), batches \(rounded(batchPairs)); best ÷ best: \(rounded([swift / c, batched / c]))"
            )
            report.add(scenario, "C liburing, depth \(depth)", "reads_per_second", c, "reads/s")
            let threads = bestC(rounds, units: reads, "pread threads") {
                cbaseline_pread_threads(path, direct ? 1 : 0, UInt32(depth), UInt32(reads), Int64(size))
            }
            report.add(scenario, "pread, \(depth) threads", "reads_per_second", threads, "reads/s")
            if let fio = which("fio") {
                let seconds = quick ? 1 : 5
                let result = try run([
                    fio, "--name=randread", "--filename=\(path)", "--rw=randread", "--bs=4k", "--iodepth=\(depth)",
                    "--ioengine=io_uring", "--size=\(size)", "--direct=\(direct ? 1 : 0)", "--time_based",
                    // Keep the page cache warm (fio drops the file's pages by default).
                    "--invalidate=0",
                    "--runtime=\(seconds)", "--output-format=json",
                ])
                if let iops = fioIOPS(result.output) {
                    report.add(scenario, "fio io_uring, depth \(depth)", "reads_per_second", iops, "reads/s")
                } else {
                    report.skipped(scenario, "fio", "no IOPS in its output (status \(result.status))")
                }
            } else {
                report.skipped(scenario, "fio", "not installed (bash Scripts/install-peers.sh)")
            }
            if !direct {
                // NIOFileSystem: concurrent readChunk calls on one handle
                // (it runs them on its blocking thread pool).
                let handle = try await FileSystem.shared.openFile(forReadingAt: FilePath(path))
                let nio = try await best(rounds, units: reads) {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for task in 0..<depth {
                            group.addTask {
                                var state = UInt64(task) &+ 1
                                for _ in 0..<(reads / depth) {
                                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                                    let offset = Int64((state >> 33) % blocks) * 4096
                                    _ = try await handle.readChunk(fromAbsoluteOffset: offset, length: .bytes(4096))
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                }
                try await handle.close()
                report.add(scenario, "NIOFileSystem readChunk, \(depth) tasks", "reads_per_second", nio, "reads/s")
            }
            report.table(scenario, "reads_per_second", ours: ours)
            if !direct {
                report.goal(scenario, "≥ 0.9 of C liburing (32 tasks), median of paired rounds", ratio: median(taskPairs))
                report.goal(scenario, "≥ 0.9 of C liburing (batches of 32), median of paired rounds", ratio: median(batchPairs))
                report.goal(scenario, "≥ 0.9 of fio", ratio: report.value(scenario, "fio io_uring, depth \(depth)", "reads_per_second").map { swift / $0 })
                report.goal(scenario, "≥ 3× NIOFileSystem", ratio: report.value(scenario, "NIOFileSystem readChunk, \(depth) tasks", "reads_per_second").map { swift / $0 })
            }
        }
    }

    /// fio's read IOPS from its JSON output.
    static func fioIOPS(_ output: String) -> Double? {
        guard let start = output.firstIndex(of: "{"),
            let json = try? JSONSerialization.jsonObject(with: Data(output[start...].utf8)) as? [String: Any],
            let jobs = json["jobs"] as? [[String: Any]], let read = jobs.first?["read"] as? [String: Any]
        else { return nil }
        return (read["iops"] as? NSNumber)?.doubleValue
    }

    static func sequentialRead(_ report: Report, quick: Bool, rounds: Int) async throws {
        let size = quick ? 64 << 20 : 1 << 30
        let chunk = 1 << 20
        let path = try scratchFile("seqread", size: size)
        defer { unlink(path) }
        let scenario = "seqread (page cache)"
        let ours = "swift-uring file.chunks"
        // Ours and C in turns, each round's order reversed from the last so
        // that a machine speeding up or slowing down favours neither; the
        // goal takes each round's ratio and the median over the rounds (the
        // machine's speed moves within seconds, and bests taken seconds apart
        // put the same code between 0.54 and 1.16 of C).
        var swift = 0.0, c = 0.0
        var pairs: [Double] = []
        try await RingActor.run { ring in
            for round in 0..<(quick ? rounds : max(rounds, 5)) {
                var oursRound = 0.0, cRound = 0.0
                for turn in 0..<2 {
                    if (turn == 0) == (round % 2 == 0) {
                        oursRound = try await timed(units: size) {
                            let file = try await File.open(FilePath(path), on: ring)
                            var total = 0
                            for try await piece in file.chunks(size: chunk) { total += piece.count }
                            precondition(total == size)
                            try await file.close()
                        }
                    } else {
                        cRound = bestC(1, units: size, "C seqread") { cbaseline_seqread(path, UInt32(chunk), 4) }
                    }
                }
                swift = max(swift, oursRound)
                c = max(c, cRound)
                pairs.append(oursRound / cRound)
            }
        }
        print("\(scenario): ours ÷ C round by round: \(rounded(pairs))")
        report.add(scenario, ours, "bytes_per_second", swift, "B/s")
        report.add(scenario, "C liburing, 4 in flight", "bytes_per_second", c, "B/s")
        let nio = try await best(rounds, units: size) {
            try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { handle in
                var total = 0
                for try await buffer in handle.readChunks(chunkLength: .bytes(Int64(chunk))) { total += buffer.readableBytes }
                precondition(total == size)
            }
        }
        report.add(scenario, "NIOFileSystem readChunks", "bytes_per_second", nio, "B/s")
        if let cat = which("cat") {
            let catRate = try await best(rounds, units: size) {
                let result = try run([cat, path], stdout: "/dev/null")
                precondition(result.status == 0)
            }
            report.add(scenario, "cat > /dev/null", "bytes_per_second", catRate, "B/s")
        }
        report.table(scenario, "bytes_per_second", ours: ours)
        report.goal(scenario, "≥ 0.9 of C, median of paired rounds", ratio: median(pairs))
    }
}
