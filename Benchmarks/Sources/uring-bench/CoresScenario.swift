// cores: the servers on two cores (uring-echo and uring-http with two
// rings, SwiftNIO with two event loops, nginx with two workers; the load
// client unpinned beside them), and the server CPU each echoed message
// costs at 1 and 64 connections.

import Foundation
import Glibc

extension UringBench {
    static func cores(_ report: Report, quick: Bool) async throws {
        guard ProcessInfo.processInfo.activeProcessorCount >= 2 else {
            report.skipped("cores", "2 rings", "this machine has one CPU")
            return
        }
        try await echoOnTwoCores(report, quick: quick)
        try await httpOnTwoCores(report, quick: quick)
        try await cpuPerMessage(report, quick: quick)
    }

    /// Server CPU time (user + system) so far, in seconds.
    static func cpuSeconds(_ pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after the command: state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func echoOnTwoCores(_ report: Report, quick: Bool) async throws {
        let seconds = quick ? 0.3 : 3
        let load = productsDirectory + "/echo-load"
        let ours = "swift-uring (uring-echo --rings 2)"
        let nio = "SwiftNIO (NIOPosix, 2 event loops)"
        let servers: [(String, (UInt16) throws -> [String])] = [
            (ours, { [try example("uring-echo"), "--rings", "2", "--port", String($0)] }),
            ("swift-uring (uring-echo --rings 2 --hand-off)", {
                [try example("uring-echo"), "--rings", "2", "--hand-off", "--port", String($0)]
            }),
            (nio, { [productsDirectory + "/nio-echo-server", String($0), "2"] }),
        ]
        let running = try startServers(
            servers, pinned: false, skippingIn: "echo on 2 cores (64 connections, 64-byte messages)", report)
        defer { for server in running { stopServer(server.process) } }
        for (connections, size) in [(64, 64), (64, 16384)] {
            let scenario = "echo on 2 cores (\(connections) connections, \(size)-byte messages)"
            // Every server once per round, in turns; the table keeps each
            // one's best round, and the goal takes each round's ratio and
            // the median over the rounds (the machine's speed moves within
            // seconds).
            var best: [String: Double] = [:]
            var pairs: [Double] = []
            var failures: [String: String] = [:]
            for _ in 0..<(quick ? 1 : 3) {
                var round: [String: Double] = [:]
                for server in running {
                    let result = try run([load, String(server.port), String(connections), String(size), String(seconds)])
                    let fields = loadFields(result.output)
                    guard result.status == 0, let messages = fields["messages"], let elapsed = fields["seconds"] else {
                        failures[server.name] = "the load client failed: \(result.output)"
                        continue
                    }
                    round[server.name] = messages / elapsed
                    best[server.name] = max(best[server.name] ?? 0, messages / elapsed)
                }
                if let mine = round[ours], let theirs = round[nio] { pairs.append(mine / theirs) }
            }
            reportFailures(failures, without: best, in: scenario, report)
            for server in running {
                if let rate = best[server.name] { report.add(scenario, server.name, "messages_per_second", rate, "messages/s") }
            }
            report.table(scenario, "messages_per_second", ours: ours)
            print("\(scenario): ours ÷ SwiftNIO round by round: \(rounded(pairs))")
            report.goal(
                scenario, "≥ 1.3× SwiftNIO with 2 event loops, median of paired rounds",
                ratio: pairs.isEmpty ? nil : median(pairs))
        }
    }

    static func httpOnTwoCores(_ report: Report, quick: Bool) async throws {
        guard let wrk = which("wrk") else {
            report.skipped("http on 2 cores", "every server", "wrk is not installed (bash Scripts/install-peers.sh)")
            return
        }
        guard let nginx = which("nginx") ?? (access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : nil) else {
            report.skipped("http on 2 cores", "nginx", "not installed (bash Scripts/install-peers.sh)")
            return
        }
        let seconds = quick ? 1 : 3
        let root = NSTemporaryDirectory() + "uring-bench-http2-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bytes = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        _ = FileManager.default.createFile(atPath: root + "/small.bin", contents: Data(bytes))
        let ours = "swift-uring (uring-http --rings 2)"
        let peer = "nginx (2 workers, reuseport, sendfile)"
        let servers: [(String, (UInt16) throws -> [String])] = [
            (ours, { [try example("uring-http"), "--rings", "2", "--port", String($0), "--root", root] }),
            (peer, { port in
                [nginx, "-c", try nginxConfig(root: root, port: port, workers: 2), "-e", root + "/nginx-error.log"]
            }),
        ]
        let scenario = "http on 2 cores (1 KiB file, 64 connections)"
        // Both servers run at once (the idle one sleeps) and wrk loads each
        // in turn, round after round; the goal takes each round's ratio and
        // the median over the rounds.
        let running = try startServers(servers, pinned: false, skippingIn: scenario, report)
        defer { for server in running { stopServer(server.process) } }
        var best: [String: Double] = [:]
        var pairs: [Double] = []
        var failures: [String: String] = [:]
        for _ in 0..<(quick ? 1 : 3) {
            var round: [String: Double] = [:]
            for server in running {
                let result = try run([wrk, "-t2", "-c64", "-d\(seconds)s", "http://127.0.0.1:\(server.port)/small.bin"])
                guard result.status == 0, let rate = wrkField(result.output, "Requests/sec:"), !result.output.contains("Non-2xx") else {
                    failures[server.name] = "wrk failed or saw errors: \(result.output.suffix(300))"
                    continue
                }
                round[server.name] = rate
                best[server.name] = max(best[server.name] ?? 0, rate)
            }
            if let mine = round[ours], let theirs = round[peer] { pairs.append(mine / theirs) }
        }
        reportFailures(failures, without: best, in: scenario, report)
        for server in running {
            if let rate = best[server.name] { report.add(scenario, server.name, "requests_per_second", rate, "requests/s") }
        }
        report.table(scenario, "requests_per_second", ours: ours)
        print("\(scenario): ours ÷ nginx round by round: \(rounded(pairs))")
        report.goal(
            scenario, "≥ 0.8 of nginx with 2 workers, median of paired rounds", ratio: pairs.isEmpty ? nil : median(pairs))
    }

    /// Server CPU seconds per million echoed 64-byte messages, each server
    /// pinned to CPU 0 with one thread or ring, the client on CPU 1.
    static func cpuPerMessage(_ report: Report, quick: Bool) async throws {
        let seconds = quick ? 0.3 : 3
        let load = productsDirectory + "/echo-load"
        let ours = "swift-uring (uring-echo)"
        let c = "C liburing (multishot, buffer ring)"
        let servers: [(String, (UInt16) throws -> [String])] = [
            (ours, { [try example("uring-echo"), "--port", String($0)] }),
            (c, { [productsDirectory + "/c-echo-server", String($0)] }),
            ("SwiftNIO (NIOPosix, 1 event loop)", { [productsDirectory + "/nio-echo-server", String($0)] }),
        ]
        // The servers run at once (the idle ones sleep) and the client loads
        // each in turn, round after round; the table keeps each one's lowest
        // figure, and the goal takes each round's ratio and the median over
        // the rounds.
        let running = try startServers(
            servers, skippingIn: "server CPU per million messages (1 connection, 64 bytes)", report)
        defer { for server in running { stopServer(server.process) } }
        for connections in [1, 64] {
            let scenario = "server CPU per million messages (\(connections) connection\(connections > 1 ? "s" : ""), 64 bytes)"
            var lowest: [String: Double] = [:]
            var pairs: [Double] = []
            var failures: [String: String] = [:]
            for _ in 0..<(quick ? 1 : 3) {
                var round: [String: Double] = [:]
                for server in running {
                    let before = cpuSeconds(server.process.processIdentifier)
                    let result = try run(pinned([load, String(server.port), String(connections), "64", String(seconds)]))
                    let after = cpuSeconds(server.process.processIdentifier)
                    let fields = loadFields(result.output)
                    guard result.status == 0, let messages = fields["messages"], messages > 0, let before, let after else {
                        failures[server.name] = "the load client failed: \(result.output)"
                        continue
                    }
                    let perMillion = (after - before) / messages * 1_000_000
                    round[server.name] = perMillion
                    lowest[server.name] = min(lowest[server.name] ?? .infinity, perMillion)
                }
                if let mine = round[ours], let theirs = round[c] { pairs.append(mine / theirs) }
            }
            reportFailures(failures, without: lowest, in: scenario, report)
            for server in running {
                if let figure = lowest[server.name] {
                    report.add(scenario, server.name, "cpu_seconds_per_million", figure, "CPU s")
                }
            }
            report.table(scenario, "cpu_seconds_per_million", ours: ours, lowerIsBetter: true)
            print("\(scenario): ours ÷ C round by round: \(rounded(pairs))")
            report.goal(
                scenario, "ours ÷ C ≤ 1.5 (lower is better), median of paired rounds",
                ratio: pairs.isEmpty ? nil : median(pairs))
        }
    }

    /// Reports a server as skipped, once, when none of its rounds gave a
    /// figure (a round that failed is left out of the pairs either way).
    static func reportFailures(
        _ failures: [String: String], without figures: [String: Double], in scenario: String, _ report: Report
    ) {
        for (name, why) in failures.sorted(by: { $0.key < $1.key }) where figures[name] == nil {
            report.skipped(scenario, name, why)
        }
    }
}
