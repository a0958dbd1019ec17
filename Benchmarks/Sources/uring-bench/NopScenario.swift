// nop: awaited NOPs in four modes against C loops on liburing, plus the
// instructions each costs, counted by callgrind (stable on a noisy machine).

import CBaseline
import Foundation
import Uring

extension UringBench {
    static func nop(_ report: Report, quick: Bool, rounds: Int) async throws {
        let ops = quick ? 20_000 : 1_000_000
        let tasks = 32
        // Every mode but (b) and both C loops run on the ring's thread,
        // pinned to one CPU, round after round in turn (the C loops as plain
        // calls that hold the thread, with rings of their own), each keeping
        // its best round: on a shared machine the two CPUs and the minutes
        // differ, and a pair measured on different ones or at different
        // times moved C's batches from 20M to 38M NOPs/s between runs.
        var options = RingOptions()
        var usable: [Int32] = [0]
        if cbaseline_usable_cpus(&usable, 1) >= 1 { options.processor = Int(usable[0]) }
        var c1 = 0.0, c32 = 0.0, a = 0.0, c = 0.0, d = 0.0
        // The goals use each round's own ratios, and the median over the
        // rounds: the best of each side alone pairs moments that may be far
        // apart in the machine's speed, and one lucky round of either side
        // moves the ratio. A round is four slices; in each, every mode runs
        // a quarter of its NOPs, each next to its C peer ((a) beside C's
        // single NOPs, (d) and (c) beside C's batches), the order reversed
        // every other slice, so a pair meets the same moments of the
        // machine. Batches run four times the NOPs, to take as long as the
        // others.
        let slices = 4
        let single = ops / slices / tasks * tasks
        let batched = single * 4
        var aPairs: [Double] = [], cPairs: [Double] = [], dPairs: [Double] = []
        try await RingActor.run(options: options) { ring in
            for _ in 0..<(quick ? rounds : max(rounds, 7)) {
                var seconds = [Double](repeating: 0, count: 5)
                for slice in 0..<slices {
                    for turn in slice % 2 == 0 ? [0, 1, 2, 3, 4] : [4, 3, 2, 1, 0] {
                        switch turn {
                        case 0:
                            let ns = cbaseline_nops(UInt32(single), 1)
                            precondition(ns > 0, "C nop failed: errno \(-ns)")
                            seconds[0] += Double(ns) / 1e9
                        case 1:
                            // (a) Sequential, in a task preferring the ring's executor.
                            seconds[1] += try await elapsed { for _ in 0..<single { try await ring.nop() } }
                        case 2:
                            let ns = cbaseline_nops(UInt32(batched), UInt32(tasks))
                            precondition(ns > 0, "C nop failed: errno \(-ns)")
                            seconds[2] += Double(ns) / 1e9
                        case 3:
                            // (d) One task, 32 NOPs per ring.batch: one
                            // submission and one wait for each 32, like the
                            // C loop's batches.
                            seconds[3] += try await elapsed {
                                for _ in 0..<(batched / tasks) {
                                    _ = try await ring.batch { batch in
                                        for _ in 0..<tasks { batch.nop() }
                                    }
                                }
                            }
                        default:
                            // (c) 32 concurrent tasks on the ring executor.
                            seconds[4] += try await elapsed {
                                try await withThrowingTaskGroup(of: Void.self) { group in
                                    for _ in 0..<tasks {
                                        group.addTask { for _ in 0..<(single / tasks) { try await ring.nop() } }
                                    }
                                    try await group.waitForAll()
                                }
                            }
                        }
                    }
                }
                let c1Round = Double(single * slices) / seconds[0]
                let aRound = Double(single * slices) / seconds[1]
                let c32Round = Double(batched * slices) / seconds[2]
                let dRound = Double(batched * slices) / seconds[3]
                let cRound = Double(single * slices) / seconds[4]
                c1 = max(c1, c1Round)
                c32 = max(c32, c32Round)
                a = max(a, aRound)
                c = max(c, cRound)
                d = max(d, dRound)
                aPairs.append(aRound / c1Round)
                cPairs.append(cRound / c32Round)
                dPairs.append(dRound / c32Round)
            }
        }
        report.add("nop", "C liburing, 1 per submit", "ops_per_second", c1, "ops/s")
        report.add("nop", "C liburing, 32 per submit", "ops_per_second", c32, "ops/s")
        report.add("nop", "swift-uring (a) sequential, ring executor", "ops_per_second", a, "ops/s")
        // Pool threads the pinned ring started would run (b) on its CPU.
        let unpinned = unpinThreads()
        if unpinned > 0 { print("(\(unpinned) threads the pinned ring started were unpinned)") }

        // (b) Sequential, from an ordinary task on the global pool.
        let ring = try RingActor()
        let b = try await Task.detached {
            try await best(rounds, units: ops) { for _ in 0..<ops { try await ring.nop() } }
        }.value
        await ring.shutdown()
        report.add("nop", "swift-uring (b) sequential, global pool", "ops_per_second", b, "ops/s")
        report.add("nop", "swift-uring (c) 32 tasks, ring executor", "ops_per_second", c, "ops/s")
        report.add("nop", "swift-uring (d) batches of 32, ring executor", "ops_per_second", d, "ops/s")
        report.table("nop", "ops_per_second", ours: "swift-uring (a) sequential, ring executor")
        print(
            "nop: ours ÷ C round by round: (a) \(rounded(aPairs)), (c) \(rounded(cPairs)), (d) \(rounded(dPairs)); best ÷ best: (a) \(rounded([a / c1])), (c) \(rounded([c / c32])), (d) \(rounded([d / c32]))"
        )
        report.goal("nop", "(a) ≥ 0.8 of C (1 per submit), median of paired rounds", ratio: median(aPairs))
        report.goal("nop", "(c) ≥ 0.5 of C (32 per submit), median of paired rounds", ratio: median(cPairs))
        report.goal("nop", "(d) ≥ 0.5 of C (32 per submit), median of paired rounds", ratio: median(dPairs))
        report.goal("nop", "(b) ≥ 200k ops/s (ratio to 200k)", ratio: b / 200_000)

        // Instructions per awaited NOP, ours (mode a) against C, under callgrind.
        guard let valgrind = which("valgrind") else {
            report.skipped("nop", "instruction counts", "valgrind is not installed (bash Scripts/install-peers.sh)")
            return
        }
        let small = quick ? 2_000 : 20_000
        let large = small * 3
        var perNop: [String: Double] = [:]
        for impl in ["swift", "c"] {
            // The difference between two run lengths cancels start-up and ring creation.
            guard let few = instructions(valgrind, impl, small), let many = instructions(valgrind, impl, large) else {
                report.skipped(
                    "nop", "instructions per NOP (\(impl))",
                    "callgrind could not run uring-nop-count \(impl) (valgrind 3.19 crashes inside itself on the Swift ring, or deadlocks and is stopped after 120 s; perf has no instruction counter on this VM)")
                continue
            }
            perNop[impl] = Double(many - few) / Double(large - small)
        }
        if let swift = perNop["swift"] {
            report.add("nop", "swift-uring (a) sequential, ring executor", "instructions_per_op", swift, "instructions")
        }
        if let c = perNop["c"] {
            report.add("nop", "C liburing, 1 per submit", "instructions_per_op", c, "instructions")
        }
        report.table("nop", "instructions_per_op", ours: "swift-uring (a) sequential, ring executor", lowerIsBetter: true)
    }

    /// Total instructions of `uring-nop-count IMPL N` under callgrind. It
    /// runs a copy without debug information: valgrind 3.19 cannot read the
    /// DWARF that Swift 6.3 writes.
    static func instructions(_ valgrind: String, _ impl: String, _ count: Int) -> Int? {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path + "/uring-nop-count"
        let stripped = NSTemporaryDirectory() + "uring-nop-count-\(getpid())"
        let out = NSTemporaryDirectory() + "uring-bench-callgrind-\(getpid())-\(impl)-\(count)"
        defer {
            unlink(out)
            unlink(stripped)
        }
        guard let objcopy = which("objcopy"), (try? run([objcopy, "--strip-debug", binary, stripped]))?.status == 0,
            // Bounded: valgrind 3.19 has also deadlocked on the Swift ring
            // (the ring thread blocked in io_uring_enter while holding
            // valgrind's lock), which would stall the whole run.
            let timeout = which("timeout"),
            let result = try? run([
                timeout, "--signal=KILL", "120", valgrind, "--tool=callgrind", "--callgrind-out-file=\(out)", stripped, impl,
                String(count),
            ]),
            result.status == 0, let text = try? String(contentsOfFile: out, encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("summary:") || $0.hasPrefix("totals:") })
        else { return nil }
        return Int(line.split(separator: " ").last ?? "")
    }
}
