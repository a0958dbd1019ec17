// uring-bench: swift-uring against its peers, side by side in one run.
//
//     swift run -c release uring-bench <scenario>|all [--quick]
//
// Scenarios: nop, randread, seqread, smallfiles, echo, http, registered, copy, allocations, scaling, cores, walk,
// bytebuffer. Each runs
// this library and its peers in turn on the same data, prints a table with
// ratios, and writes one JSON line per figure to stdout and to
// results/latest.jsonl. `all` without --quick also writes RESULTS.md.
// Peers that are not Swift come from Scripts/install-peers.sh.

import CBaseline
import Foundation
import Uring

@main
struct UringBench {
    static let scenarios = ["nop", "randread", "seqread", "smallfiles", "echo", "http", "registered", "copy", "allocations", "scaling", "cores", "walk", "bytebuffer"]

    static func main() async throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let quick = arguments.contains("--quick")
        arguments.removeAll { $0 == "--quick" }
        let scenario = arguments.first ?? "all"
        guard scenario == "all" || scenarios.contains(scenario) else {
            print("usage: uring-bench \(scenarios.joined(separator: "|"))|all [--quick]")
            exit(2)
        }
        let directory = packageDirectory
        try? FileManager.default.createDirectory(atPath: directory + "/results", withIntermediateDirectories: true)
        let report = Report(jsonlPath: directory + "/results/latest.jsonl", quick: quick)
        let rounds = quick ? 1 : 3
        let wanted = scenario == "all" ? scenarios : [scenario]
        var failed: [String] = []
        for name in wanted {
            let start = ContinuousClock.now
            print("=== \(name)\(quick ? " (quick)" : "")")
            // One scenario's failure (a peer's binary not built, say) is
            // reported and the rest still run; the exit status says so.
            do {
                try await run(name, report, quick: quick, rounds: rounds)
            } catch {
                report.skipped(name, "the scenario", "it failed: \(error)")
                failed.append(name)
            }
            print("=== \(name) took \(ContinuousClock.now - start)")
            // A scenario that pins ring threads leaves the pool threads they
            // started pinned too; the next scenario starts unpinned.
            let restored = unpinThreads()
            if restored > 0 { print("(\(restored) threads left pinned by \(name) were unpinned)") }
        }
        guard failed.isEmpty else {
            print("failed scenarios: \(failed.joined(separator: ", "))\(scenario == "all" && !quick ? " (RESULTS.md not written)" : "")")
            exit(1)
        }
        if scenario == "all" && !quick {
            try report.writeResults(to: directory + "/RESULTS.md", command: "swift run -c release uring-bench all")
            print("wrote \(directory)/RESULTS.md")
        }
    }

    /// The process's CPU mask (its first thread's, which nothing pins).
    static let processCPUs: [UInt8] = {
        var mask = [UInt8](repeating: 0, count: 128)
        let length = Int(cbaseline_process_cpus(&mask, Int32(mask.count)))
        return length > 0 ? Array(mask[..<length]) : []
    }()

    /// Gives every thread the process's CPU mask again; returns how many had
    /// another. A thread inherits its starter's mask, so pool threads that a
    /// pinned ring thread started stay on that ring's CPU.
    @discardableResult
    static func unpinThreads() -> Int {
        guard !processCPUs.isEmpty else { return 0 }
        return max(0, Int(cbaseline_restore_cpus(processCPUs, Int32(processCPUs.count))))
    }

    /// Runs one scenario by name.
    static func run(_ name: String, _ report: Report, quick: Bool, rounds: Int) async throws {
        switch name {
        case "nop": try await nop(report, quick: quick, rounds: rounds)
        case "randread": try await randomRead(report, quick: quick, rounds: rounds)
        case "seqread": try await sequentialRead(report, quick: quick, rounds: rounds)
        case "smallfiles": try await smallFiles(report, quick: quick, rounds: rounds)
        case "registered": try await registered(report, quick: quick, rounds: rounds)
        case "copy": try await copy(report, quick: quick, rounds: rounds)
        case "echo": try await echo(report, quick: quick)
        case "http": try await http(report, quick: quick)
        case "allocations": try await allocations(report, quick: quick)
        case "scaling": try await scaling(report, quick: quick, rounds: rounds)
        case "cores": try await cores(report, quick: quick)
        case "walk": try await walk(report, quick: quick, rounds: rounds)
        case "bytebuffer": try await byteBuffer(report, quick: quick)
        default: break
        }
    }

    /// The Benchmarks directory: results go there whatever the working directory.
    static var packageDirectory: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // uring-bench, Sources, then the package
        return url.path
    }

    /// Best of `rounds` timings, as `units` per second.
    nonisolated(nonsending) static func best(
        _ rounds: Int, units: Int, _ body: () async throws -> Void
    ) async rethrows -> Double {
        var best = 0.0
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            try await body()
            best = max(best, Double(units) / seconds(ContinuousClock.now - start))
        }
        return best
    }

    /// One timing of `body`, as `units` per second.
    nonisolated(nonsending) static func timed(units: Int, _ body: () async throws -> Void) async rethrows -> Double {
        let start = ContinuousClock.now
        try await body()
        return Double(units) / seconds(ContinuousClock.now - start)
    }

    /// The seconds `body` takes.
    nonisolated(nonsending) static func elapsed(_ body: () async throws -> Void) async rethrows -> Double {
        let start = ContinuousClock.now
        try await body()
        return seconds(ContinuousClock.now - start)
    }

    /// The middle value (the mean of the two middle ones for an even count).
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// Ratios to two decimals, for a line of output.
    static func rounded(_ values: [Double]) -> String {
        values.map { String(format: "%.2f", $0) }.joined(separator: " ")
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    /// Best of `rounds` runs of a C peer that returns elapsed nanoseconds
    /// (or a negative errno), as `units` per second.
    static func bestC(_ rounds: Int, units: Int, _ name: String, _ body: () -> Int64) -> Double {
        var best = 0.0
        for _ in 0..<rounds {
            let ns = body()
            precondition(ns > 0, "\(name) failed: errno \(-ns)")
            best = max(best, Double(units) / (Double(ns) / 1e9))
        }
        return best
    }

    /// A file of `size` bytes in the working directory, written once; warm
    /// in the page cache unless dropped.
    static func scratchFile(_ name: String, size: Int) throws -> String {
        let path = ".uring-bench-\(name)-\(getpid())"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot create \(path)")
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        for i in chunk.indices { chunk[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        var written = 0
        while written < size {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, size - written)) }
            precondition(n > 0)
            written += n
        }
        fsync(fd)
        close(fd)
        return path
    }

    /// The full path of `tool` on PATH, or nil.
    static func which(_ tool: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(tool)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Runs a command to completion; returns its status and standard output.
    static func run(_ arguments: [String], stdout: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        if let stdout {
            process.standardOutput = FileHandle(forWritingAtPath: stdout)
        } else {
            process.standardOutput = pipe
        }
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = stdout == nil ? pipe.fileHandleForReading.readDataToEndOfFile() : Data()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Lets a noncopyable value be used from several tasks by reference.
final class Shared<Value: ~Copyable & Sendable>: Sendable {
    let value: Value
    init(_ value: consuming Value) { self.value = value }
}
