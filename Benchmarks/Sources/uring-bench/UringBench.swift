// uring-bench: the library against hand-written C on liburing, in one run.
//
//     uring-bench nop|registered|copy|all [--quick] [--ops N]
//
// Each scenario prints its figures for the Swift library and for its peer
// measured in the same process, and their ratio: nop against C on liburing,
// registered files and buffers against the plain path, File.copy against
// copy_file_range(2).

import CBaseline
import Glibc
import Uring

@main
struct UringBench {
    static func main() async throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let quick = arguments.contains("--quick")
        arguments.removeAll { $0 == "--quick" }
        var ops = quick ? 20_000 : 1_000_000
        if let index = arguments.firstIndex(of: "--ops"), index + 1 < arguments.count, let n = Int(arguments[index + 1]) {
            ops = n
            arguments.removeSubrange(index...index + 1)
        }
        var only: String? = nil
        if let index = arguments.firstIndex(of: "--only"), index + 1 < arguments.count {
            only = arguments[index + 1]
            arguments.removeSubrange(index...index + 1)
        }
        let scenario = arguments.first ?? "all"
        let rounds = quick ? 1 : 3
        switch scenario {
        case "nop": try await nop(ops: ops, rounds: rounds, only: only)
        case "registered": try await registered(quick: quick, rounds: rounds)
        case "copy": try await copy(quick: quick, rounds: rounds)
        case "all":
            try await nop(ops: ops, rounds: rounds, only: only)
            try await registered(quick: quick, rounds: rounds)
            try await copy(quick: quick, rounds: rounds)
        default:
            print("usage: uring-bench [nop|registered|copy|all] [--quick] [--ops N] [--only a|b|c|c2]")
            exit(2)
        }
    }

    /// Best of `rounds` timings, in operations per second.
    nonisolated(nonsending) static func best(_ rounds: Int, ops: Int, _ body: () async throws -> Void) async rethrows -> Double {
        var best = 0.0
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            try await body()
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            best = max(best, Double(ops) / seconds)
        }
        return best
    }

    static func c(ops: Int, batch: Int, rounds: Int) -> Double {
        var best = 0.0
        for _ in 0..<rounds {
            let ns = cbaseline_nops(UInt32(ops), UInt32(batch))
            precondition(ns > 0, "C baseline failed: \(ns)")
            best = max(best, Double(ops) / (Double(ns) / 1e9))
        }
        return best
    }

    static func line(_ name: String, _ swift: Double, _ peer: Double, _ peerName: String, goal: String) {
        let ratio = swift / peer
        print(
            "nop \(name.padded(to: 44)) swift \(format(swift)) ops/s   "
                + "\(peerName) \(format(peer)) ops/s   ratio \(String(format2: ratio))   goal \(goal)")
    }

    static func format(_ value: Double) -> String {
        let k = Int(value / 1000)
        return "\(k)k".padded(to: 7)
    }

    static func nop(ops: Int, rounds: Int, only: String?) async throws {
        func wanted(_ mode: String) -> Bool { only == nil || only == mode }
        let c1 = c(ops: ops, batch: 1, rounds: rounds)
        let c32 = c(ops: ops, batch: 32, rounds: rounds)

        // (a) Sequential, task preferring the ring's executor.
        if wanted("a") {
        let a = try await RingActor.run { ring in
            try await best(rounds, ops: ops) {
                for _ in 0..<ops { try await ring.nop() }
            }
        }
        line("(a) sequential, ring executor preferred", a, c1, "C(1/submit)", goal: ">= 0.8")
        }

        // (b) Sequential, from an ordinary task on the global pool.
        if wanted("b") {
        let ring = try RingActor()
        let b = try await withThrowingTaskGroup(of: Double.self) { group in
            group.addTask {
                try await best(rounds, ops: ops) {
                    for _ in 0..<ops { try await ring.nop() }
                }
            }
            return try await group.next()!
        }
        await ring.shutdown()
        line("(b) sequential, ordinary task (global pool)", b, c1, "C(1/submit)", goal: ">= 200k ops/s")
        }

        // (c) 32 concurrent tasks on the ring executor.
        let tasks = 32
        if wanted("c") {
        let c = try await RingActor.run { ring in
            let result = try await best(rounds, ops: ops) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<tasks {
                        group.addTask {
                            for _ in 0..<(ops / tasks) { try await ring.nop() }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            if CommandLine.arguments.contains("--verbose") { print(ring.statistics) }
            return result
        }
        line("(c) 32 tasks, ring executor preferred", c, c32, "C(32/submit)", goal: ">= 0.5")
        }

        // (c') 32 concurrent tasks from the global pool (no goal; for context).
        if wanted("c2") {
        let ring2 = try RingActor()
        let c2 = try await best(rounds, ops: ops) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<tasks {
                    group.addTask {
                        for _ in 0..<(ops / tasks) { try await ring2.nop() }
                    }
                }
                try await group.waitForAll()
            }
        }
        await ring2.shutdown()
        line("(c') 32 tasks, ordinary tasks (global pool)", c2, c32, "C(32/submit)", goal: "none")
        }
    }
}

extension String {
    func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }

    init(format2 value: Double) {
        let scaled = Int((value * 100).rounded())
        let fraction = scaled % 100
        self = "\(scaled / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
