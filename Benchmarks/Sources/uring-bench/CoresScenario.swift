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
        let c = "C liburing (c-echo-server, 2 threads)"
        let servers: [(String, (UInt16) throws -> [String])] = [
            (ours, { [try example("uring-echo"), "--rings", "2", "--port", String($0)] }),
            ("swift-uring (uring-echo --rings 2 --hand-off)", {
                [try example("uring-echo"), "--rings", "2", "--hand-off", "--port", String($0)]
            }),
            (nio, { [productsDirectory + "/nio-echo-server", String($0), "2"] }),
            // What hand-written C on liburing reaches here: the ceiling
            // the goal against SwiftNIO has to be read against.
            (c, { [productsDirectory + "/c-echo-server", String($0), "2"] }),
        ]
        let running = try startServers(
            servers, pinned: false, skippingIn: "echo on 2 cores (64 connections, 64-byte messages)", report)
        defer { for server in running { stopServer(server.process) } }
        for (connections, size) in [(64, 64), (64, 16384)] {
            let scenario = "echo on 2 cores (\(connections) connections, \(size)-byte messages)"
            // Five rounds: the client shares both cores with the server,
            // and single rounds swing by a third.
            let measured = try serverRounds(running, rounds: quick ? 1 : 5, in: scenario, report) {
                server in
                let result = try run([load, String(server.port), String(connections), String(size), String(seconds)])
                let fields = loadFields(result.output)
                guard result.status == 0, let messages = fields["messages"], let elapsed = fields["seconds"] else {
                    return .failure(LoadFailure(why: "the load client failed: \(result.output)"))
                }
                return .success(messages / elapsed)
            }
            for server in running {
                if let rate = measured.best[server.name] {
                    report.add(scenario, server.name, "messages_per_second", rate, "messages/s")
                }
            }
            report.table(scenario, "messages_per_second", ours: ours)
            measured.reportGoal(
                ours, nio, "ours ÷ SwiftNIO", "≥ 1.3× SwiftNIO with 2 event loops", in: scenario, report)
            measured.reportGoal(
                c, nio, "C ÷ SwiftNIO", "(C liburing with 2 threads ÷ SwiftNIO, for reference)", in: scenario, report)
            measured.reportGoal(
                ours, c, "ours ÷ C", "(ours ÷ C liburing with 2 threads, for reference)", in: scenario, report)
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
        // in turn (see `serverRounds`).
        let running = try startServers(servers, pinned: false, skippingIn: scenario, report)
        defer { for server in running { stopServer(server.process) } }
        let measured = try serverRounds(running, rounds: quick ? 1 : 3, in: scenario, report) {
            server in
            let result = try run([wrk, "-t2", "-c64", "-d\(seconds)s", "http://127.0.0.1:\(server.port)/small.bin"])
            guard result.status == 0, let rate = wrkField(result.output, "Requests/sec:"), !result.output.contains("Non-2xx") else {
                return .failure(LoadFailure(why: "wrk failed or saw errors: \(result.output.suffix(300))"))
            }
            return .success(rate)
        }
        for server in running {
            if let rate = measured.best[server.name] {
                report.add(scenario, server.name, "requests_per_second", rate, "requests/s")
            }
        }
        report.table(scenario, "requests_per_second", ours: ours)
        measured.reportGoal(ours, peer, "ours ÷ nginx", "≥ 0.8 of nginx with 2 workers", in: scenario, report)
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
        // each in turn (see `serverRounds`); the table keeps each one's
        // lowest figure.
        let running = try startServers(
            servers, skippingIn: "server CPU per million messages (1 connection, 64 bytes)", report)
        defer { for server in running { stopServer(server.process) } }
        for connections in [1, 64] {
            let scenario = "server CPU per million messages (\(connections) connection\(connections > 1 ? "s" : ""), 64 bytes)"
            let measured = try serverRounds(running, rounds: quick ? 1 : 3, lowerIsBetter: true, in: scenario, report) {
                server in
                let before = cpuSeconds(server.process.processIdentifier)
                let result = try run(pinned([load, String(server.port), String(connections), "64", String(seconds)]))
                let after = cpuSeconds(server.process.processIdentifier)
                let fields = loadFields(result.output)
                guard result.status == 0, let messages = fields["messages"], messages > 0, let before, let after else {
                    return .failure(LoadFailure(why: "the load client failed: \(result.output)"))
                }
                return .success((after - before) / messages * 1_000_000)
            }
            for server in running {
                if let figure = measured.best[server.name] {
                    report.add(scenario, server.name, "cpu_seconds_per_million", figure, "CPU s")
                }
            }
            report.table(scenario, "cpu_seconds_per_million", ours: ours, lowerIsBetter: true)
            measured.reportGoal(ours, c, "ours ÷ C", "ours ÷ C ≤ 1.5 (lower is better)", in: scenario, report)
        }
    }

    /// Why one load of a server gave no figure.
    struct LoadFailure: Error {
        let why: String
    }

    /// Loads every running server once per round, in turns (the machine's
    /// speed moves within seconds, so a ratio compares figures taken in the
    /// same round). Returns each server's best figure (the highest, or the
    /// lowest with `lowerIsBetter`) and every round's figures, for goals
    /// that take the median of paired rounds. A server no round measured is
    /// reported skipped, once; a round that failed is left out of the pairs.
    static func serverRounds(
        _ running: [(name: String, port: UInt16, process: Process)], rounds: Int,
        lowerIsBetter: Bool = false, in scenario: String, _ report: Report,
        _ measure: ((name: String, port: UInt16, process: Process)) throws -> Result<Double, LoadFailure>
    ) throws -> ServerRounds {
        var result = ServerRounds()
        var failures: [String: String] = [:]
        for _ in 0..<rounds {
            var round: [String: Double] = [:]
            for server in running {
                switch try measure(server) {
                case .success(let figure):
                    round[server.name] = figure
                    result.best[server.name] = result.best[server.name].map {
                        lowerIsBetter ? min($0, figure) : max($0, figure)
                    } ?? figure
                case .failure(let failure):
                    failures[server.name] = failure.why
                }
            }
            result.rounds.append(round)
        }
        for (name, why) in failures.sorted(by: { $0.key < $1.key }) where result.best[name] == nil {
            report.skipped(scenario, name, why)
        }
        return result
    }

    /// What ``serverRounds(_:rounds:lowerIsBetter:in:_:measure:)`` measured.
    struct ServerRounds {
        /// Each server's best figure over the rounds.
        var best: [String: Double] = [:]
        /// Each round's figures, by server.
        var rounds: [[String: Double]] = []

        /// `a ÷ b` in each round that measured both.
        func pairs(_ a: String, _ b: String) -> [Double] {
            rounds.compactMap { round in round[a].flatMap { mine in round[b].map { mine / $0 } } }
        }

        /// Prints `a ÷ b` round by round under `label`, and records the
        /// goal `text` with the median of those rounds.
        func reportGoal(
            _ a: String, _ b: String, _ label: String, _ text: String, in scenario: String, _ report: Report
        ) {
            let ratios = pairs(a, b)
            print("\(scenario): \(label) round by round: \(rounded(ratios))")
            report.goal(scenario, "\(text), median of paired rounds", ratio: ratios.isEmpty ? nil : median(ratios))
        }
    }
}
