// echo and http: servers in their own processes on CPU 0, one load client
// on CPU 1, the same client for every server.

import Foundation
import Glibc

extension UringBench {
    /// The directory of this package's built products (next to uring-bench).
    static var productsDirectory: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    }

    /// One of swift-uring's examples, built in release by the parent package
    /// if it is not there yet.
    static func example(_ name: String) throws -> String {
        let path = packageDirectory + "/../.build/release/" + name
        if access(path, X_OK) != 0, let swift = which("swift") {
            print("building \(name) (release) in the parent package")
            _ = try run([swift, "build", "-c", "release", "--package-path", packageDirectory + "/..", "--product", name])
        }
        return path
    }

    /// A port nothing listens on right now.
    static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Whether something accepts connections on 127.0.0.1:`port`.
    static func accepting(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// Starts a server pinned to CPU 0 and waits until it accepts
    /// connections; nil (and the process ended) if it never does.
    static func startServer(_ command: [String], port: UInt16, pinned: Bool = true) throws -> Process? {
        let process = Process()
        let taskset = pinned ? which("taskset") : nil
        process.executableURL = URL(fileURLWithPath: taskset ?? command[0])
        process.arguments = taskset != nil ? ["-c", "0"] + command : Array(command.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<500 {
            if accepting(port) { return process }
            if !process.isRunning { return nil }
            usleep(20_000)
        }
        stopServer(process)
        return nil
    }

    /// Starts every server at once, each on a free port (pinned to CPU 0
    /// unless `pinned` is false); one that does not start is reported as
    /// skipped under `scenario`. If starting one throws, those already
    /// started are stopped first.
    static func startServers(
        _ servers: [(String, (UInt16) throws -> [String])], pinned: Bool = true, skippingIn scenario: String,
        _ report: Report
    ) throws -> [(name: String, port: UInt16, process: Process)] {
        var running: [(name: String, port: UInt16, process: Process)] = []
        do {
            for (name, command) in servers {
                let port = freePort()
                guard let server = try startServer(try command(port), port: port, pinned: pinned) else {
                    report.skipped(scenario, name, "the server did not start")
                    continue
                }
                running.append((name, port, server))
            }
        } catch {
            for server in running { stopServer(server.process) }
            throw error
        }
        return running
    }

    static func stopServer(_ process: Process) {
        kill(process.processIdentifier, SIGINT)
        for _ in 0..<100 where process.isRunning { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The `name=value` fields echo-load prints.
    static func loadFields(_ output: String) -> [String: Double] {
        Dictionary(
            uniqueKeysWithValues: output.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap {
                field -> (String, Double)? in
                let parts = field.split(separator: "=")
                guard parts.count == 2, let value = Double(parts[1]) else { return nil }
                return (String(parts[0]), value)
            })
    }

    /// The load command pinned to CPU 1.
    static func pinned(_ command: [String]) -> [String] {
        guard let taskset = which("taskset") else { return command }
        return [taskset, "-c", "1"] + command
    }

    static func echo(_ report: Report, quick: Bool) async throws {
        let seconds = quick ? 0.3 : 3
        let nio = productsDirectory + "/nio-echo-server"
        let c = productsDirectory + "/c-echo-server"
        let load = productsDirectory + "/echo-load"
        let ours = "swift-uring (uring-echo)"
        let servers: [(String, (UInt16) throws -> [String])] = [
            (ours, { [try example("uring-echo"), "--port", String($0)] }),
            ("SwiftNIO (NIOPosix, 1 event loop)", { [nio, String($0)] }),
            ("C liburing (multishot, buffer ring)", { [c, String($0)] }),
        ]
        let configurations = [(1, 64), (64, 64), (512, 64), (1, 16384), (64, 16384), (512, 16384)]
        // All servers run at once (idle ones sleep), and each configuration
        // loads them in turn, round after round, keeping each one's best
        // round: on this shared VM the machine drifts over a minute, and a
        // server measured only early or only late would gain or lose by it.
        let running = try startServers(servers, skippingIn: "echo", report)
        defer { for server in running { stopServer(server.process) } }
        let rounds = quick ? 1 : 2
        for (connections, size) in configurations {
            let scenario = "echo (\(connections) connections, \(size)-byte messages)"
            var best: [String: (rate: Double, p50: Double, p99: Double)] = [:]
            for _ in 0..<rounds {
                for server in running {
                    let result = try run(
                        pinned([load, String(server.port), String(connections), String(size), String(seconds)]))
                    let fields = loadFields(result.output)
                    guard result.status == 0, let messages = fields["messages"], let elapsed = fields["seconds"] else {
                        report.skipped(scenario, server.name, "the load client failed: \(result.output)")
                        continue
                    }
                    let rate = messages / elapsed
                    if rate > best[server.name]?.rate ?? -1 {
                        best[server.name] = (rate, fields["p50_us"] ?? .nan, fields["p99_us"] ?? .nan)
                    }
                }
            }
            for server in running {
                guard let figures = best[server.name] else { continue }
                report.add(scenario, server.name, "messages_per_second", figures.rate, "messages/s")
                report.add(scenario, server.name, "p50_latency", figures.p50, "µs")
                report.add(scenario, server.name, "p99_latency", figures.p99, "µs")
            }
        }
        // Hostile clients: 8 more connections that send without ever reading
        // their echoes. Each server's well-behaved rate is compared with its
        // own rate without them, measured in the same rounds.
        let slowScenario = "echo (64 connections, 64-byte messages, 8 slow readers)"
        let plainScenario = "echo (64 connections, 64-byte messages)"
        for server in running {
            var best: (rate: Double, p99: Double)? = nil
            for _ in 0..<rounds {
                let result = try run(pinned([load, String(server.port), "64", "64", String(seconds), "-", "8"]))
                let fields = loadFields(result.output)
                guard let messages = fields["messages"], let elapsed = fields["seconds"] else {
                    report.skipped(slowScenario, server.name, "the load client failed: \(result.output)")
                    continue
                }
                let rate = messages / elapsed
                if rate > best?.rate ?? -1 { best = (rate, fields["p99_us"] ?? .nan) }
            }
            guard let best else { continue }
            report.add(slowScenario, server.name, "messages_per_second", best.rate, "messages/s")
            report.add(slowScenario, server.name, "p99_latency", best.p99, "µs")
            if let plain = report.value(plainScenario, server.name, "messages_per_second"), plain > 0 {
                report.add(slowScenario, server.name, "of_rate_without_slow_readers", best.rate / plain, "×")
            }
        }
        for (connections, size) in configurations {
            let scenario = "echo (\(connections) connections, \(size)-byte messages)"
            report.table(scenario, "messages_per_second", ours: ours)
            report.table(scenario, "p99_latency", ours: ours, lowerIsBetter: true)
            if connections == 64 {
                let mine = report.value(scenario, ours, "messages_per_second")
                let nioRate = report.value(scenario, "SwiftNIO (NIOPosix, 1 event loop)", "messages_per_second")
                let cRate = report.value(scenario, "C liburing (multishot, buffer ring)", "messages_per_second")
                report.goal(scenario, "≥ 1.3× SwiftNIO", ratio: mine.flatMap { m in nioRate.map { m / $0 } })
                report.goal(scenario, "≥ 0.8 of C liburing", ratio: mine.flatMap { m in cRate.map { m / $0 } })
            }
        }
        report.table(slowScenario, "messages_per_second", ours: ours)
        report.goal(
            slowScenario, "≥ 0.8 of its rate without slow readers",
            ratio: report.value(slowScenario, ours, "of_rate_without_slow_readers"))
    }
}

extension UringBench {
    static func http(_ report: Report, quick: Bool) async throws {
        guard let wrk = which("wrk") else {
            report.skipped("http", "every server", "wrk is not installed (bash Scripts/install-peers.sh)")
            return
        }
        let seconds = quick ? 1 : 3
        let root = NSTemporaryDirectory() + "uring-bench-http-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let files = [("1 KiB", "small.bin", 1024), ("1 MiB", "large.bin", 1 << 20)]
        for (_, name, size) in files {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            _ = FileManager.default.createFile(atPath: root + "/" + name, contents: Data(bytes))
        }
        let ours = "swift-uring (uring-http)"
        var servers: [(String, (UInt16) throws -> [String])] = [
            (ours, { [try example("uring-http"), "--port", String($0), "--root", root] }),
            ("Hummingbird (FileMiddleware)", { [productsDirectory + "/hummingbird-static", String($0), root] }),
        ]
        if let nginx = which("nginx") ?? (access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : nil) {
            servers.append(("nginx (1 worker, sendfile)", { port in
                let config = try nginxConfig(root: root, port: port)
                return [nginx, "-c", config, "-e", root + "/nginx-error.log"]
            }))
        } else {
            report.skipped("http", "nginx", "not installed (bash Scripts/install-peers.sh)")
        }
        // As in echo: all servers run at once (idle ones sleep), and each
        // file loads them in turn, round after round, keeping each one's
        // best round, so that the machine's drift favours none of them.
        let running = try startServers(servers, skippingIn: "http", report)
        defer { for server in running { stopServer(server.process) } }
        let rounds = quick ? 1 : 3
        for (label, file, _) in files {
            let scenario = "http (\(label) file, 64 connections)"
            var best: [String: (rate: Double, p50: Double?, p99: Double?)] = [:]
            // Server CPU (user + system, its kernel workers included) per
            // request, the lowest of the rounds. With the client on the
            // other CPU busy receiving, requests per second can measure the
            // client more than the server; this measures the server alone.
            var cpu: [String: Double] = [:]
            var failures: [String: String] = [:]
            for round in 0..<rounds {
                // Each round starts with the next server, so none is always
                // measured first.
                for turn in 0..<running.count {
                    let server = running[(round + turn) % running.count]
                    let before = cpuSeconds(server.process.processIdentifier)
                    let result = try run(pinned([
                        wrk, "-t1", "-c64", "-d\(seconds)s", "--latency", "http://127.0.0.1:\(server.port)/\(file)",
                    ]))
                    let after = cpuSeconds(server.process.processIdentifier)
                    guard result.status == 0, let rate = wrkField(result.output, "Requests/sec:"),
                        !result.output.contains("Non-2xx")
                    else {
                        failures[server.name] = "wrk failed or saw errors: \(result.output.suffix(300))"
                        continue
                    }
                    if rate > best[server.name]?.rate ?? -1 {
                        best[server.name] = (rate, wrkLatency(result.output, "50%"), wrkLatency(result.output, "99%"))
                    }
                    if let before, let after, let requests = wrkRequests(result.output), requests > 0 {
                        let perRequest = (after - before) * 1e6 / requests
                        cpu[server.name] = min(cpu[server.name] ?? .infinity, perRequest)
                    }
                }
            }
            for server in running {
                // A server is skipped only if no round of it succeeded.
                guard let figures = best[server.name] else {
                    report.skipped(scenario, server.name, failures[server.name] ?? "no round ran")
                    continue
                }
                report.add(scenario, server.name, "requests_per_second", figures.rate, "requests/s")
                if let p50 = figures.p50 { report.add(scenario, server.name, "p50_latency", p50, "µs") }
                if let p99 = figures.p99 { report.add(scenario, server.name, "p99_latency", p99, "µs") }
                if let perRequest = cpu[server.name] {
                    report.add(scenario, server.name, "server_cpu_per_request", perRequest, "µs")
                }
            }
        }
        for (label, _, _) in files {
            let scenario = "http (\(label) file, 64 connections)"
            report.table(scenario, "requests_per_second", ours: ours)
            report.table(scenario, "server_cpu_per_request", ours: ours, lowerIsBetter: true)
            if label == "1 KiB" {
                let mine = report.value(scenario, ours, "requests_per_second")
                let hummingbird = report.value(scenario, "Hummingbird (FileMiddleware)", "requests_per_second")
                let nginx = report.value(scenario, "nginx (1 worker, sendfile)", "requests_per_second")
                report.goal(scenario, "≥ 1.5× Hummingbird", ratio: mine.flatMap { m in hummingbird.map { m / $0 } })
                report.goal(scenario, "≥ 0.7 of nginx", ratio: mine.flatMap { m in nginx.map { m / $0 } })
            } else {
                // The body goes by linked splices (file → pipe → socket).
                let mine = report.value(scenario, ours, "requests_per_second")
                let nginx = report.value(scenario, "nginx (1 worker, sendfile)", "requests_per_second")
                report.goal(scenario, "≥ 0.9 of nginx", ratio: mine.flatMap { m in nginx.map { m / $0 } })
            }
        }
    }

    /// A one-worker nginx configuration serving `root` on `port`, with every
    /// path it writes under `root`.
    static func nginxConfig(root: String, port: UInt16, workers: Int = 1) throws -> String {
        let path = root + "/nginx-\(workers).conf"
        // More than one worker needs the master process.
        let text = """
            worker_processes \(workers);
            daemon off;
            master_process \(workers > 1 ? "on" : "off");
            pid \(root)/nginx.pid;
            error_log \(root)/nginx-error.log error;
            events { worker_connections 4096; }
            http {
                access_log off;
                sendfile on;
                tcp_nopush on;
                keepalive_requests 1000000;
                client_body_temp_path \(root)/nginx-body;
                proxy_temp_path \(root)/nginx-proxy;
                fastcgi_temp_path \(root)/nginx-fastcgi;
                uwsgi_temp_path \(root)/nginx-uwsgi;
                scgi_temp_path \(root)/nginx-scgi;
                default_type application/octet-stream;
                server { listen 127.0.0.1:\(port)\(workers > 1 ? " reuseport" : ""); root \(root); }
            }

            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// How many requests wrk completed (`12345 requests in 3.00s`).
    static func wrkRequests(_ output: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains(" requests in ") }) else { return nil }
        return line.split(separator: " ").first.flatMap { Double($0) }
    }

    /// The number after `label` in wrk's output.
    static func wrkField(_ output: String, _ label: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains(label) }) else { return nil }
        return line.split(separator: " ").last.flatMap { Double($0) }
    }

    /// A latency percentile from wrk's distribution (`50%  1.23ms`), in µs.
    static func wrkLatency(_ output: String, _ label: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(label) }),
            let text = line.split(separator: " ").last
        else { return nil }
        let units: [(String, Double)] = [("us", 1), ("ms", 1000), ("s", 1_000_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            return Double(text.dropLast(suffix.count)).map { $0 * scale }
        }
        return nil
    }
}
