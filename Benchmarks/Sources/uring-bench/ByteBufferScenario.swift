// bytebuffer: the echo server written with SwiftNIO ByteBuffers (UringNIO's
// `received().byteBuffers()` and `sendAll(ByteBuffer)`) against the same
// server echoing the received chunks as they are, one load client, in one
// run. Goal (issue 14): at least 0.9 of the plain server.

import Foundation

extension UringBench {
    static func byteBuffer(_ report: Report, quick: Bool) async throws {
        let seconds = quick ? 0.3 : 3
        let server = productsDirectory + "/uring-echo-buffers"
        let load = productsDirectory + "/echo-load"
        let plain = "swift-uring, received chunks"
        let buffers = "swift-uring, ByteBuffers (UringNIO)"
        let reused = "swift-uring, receive(into: ByteBuffer)"
        var running: [(name: String, port: UInt16, process: Process)] = []
        defer { for server in running { stopServer(server.process) } }
        for (name, mode) in [(plain, "plain"), (buffers, "bytebuffer"), (reused, "receive-into")] {
            let port = freePort()
            guard let process = try startServer([server, String(port), mode], port: port) else {
                report.skipped("bytebuffer", name, "the server did not start")
                continue
            }
            running.append((name, port, process))
        }
        // Alternating rounds, best of each, as in the echo scenario.
        let rounds = quick ? 1 : 3
        for (connections, size) in [(1, 64), (64, 64), (64, 16384)] {
            let scenario = "bytebuffer echo (\(connections) connections, \(size)-byte messages)"
            var best: [String: Double] = [:]
            for _ in 0..<rounds {
                for server in running {
                    let result = try run(
                        pinned([load, String(server.port), String(connections), String(size), String(seconds)]))
                    let fields = loadFields(result.output)
                    guard result.status == 0, let messages = fields["messages"], let elapsed = fields["seconds"] else {
                        report.skipped(scenario, server.name, "the load client failed: \(result.output)")
                        continue
                    }
                    best[server.name] = max(best[server.name] ?? 0, messages / elapsed)
                }
            }
            for (name, rate) in best {
                report.add(scenario, name, "messages_per_second", rate, "messages/s")
            }
            report.table(scenario, "messages_per_second", ours: buffers)
            let ratio = best[buffers].flatMap { mine in best[plain].map { mine / $0 } }
            report.goal(scenario, "ByteBuffer echo (byteBuffers()) ≥ 0.9 of the plain echo", ratio: ratio)
            let inPlace = best[reused].flatMap { mine in best[plain].map { mine / $0 } }
            report.goal(scenario, "ByteBuffer echo (receive(into:)) ≥ 0.9 of the plain echo", ratio: inPlace)
        }
    }
}
