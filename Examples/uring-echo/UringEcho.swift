// uring-echo: a TCP echo server on io_uring, one child task per connection.
//
//     uring-echo [--host H] --port P [--rings N] [--hand-off] [--max-connections N]
//                [--idle-seconds S] [--send-seconds S] [--graceful-seconds S]
//
// It prints "listening on H:P" once it accepts connections. On SIGINT or
// SIGTERM it stops accepting, lets open connections finish for up to
// --graceful-seconds (default 10), then closes the rest and exits 0. Built
// with the package's ServiceLifecycle trait, it runs as a Service in a
// ServiceGroup, which handles the signals; without it, it watches for them
// itself and closes open connections at once.
//
// With --rings N (default 1) it runs N rings, each on a thread of its own
// (pinned to a CPU when there is one ring per CPU), and every ring listens
// on the port (SO_REUSEPORT): the kernel spreads the connections and each
// ring serves its own. With
// --hand-off, one ring accepts and hands each connection to the least busy
// ring instead, which evens out a few heavy connections at the cost of a
// wake-up per connection.
//
// It is built to be copied: `serve` bounds the connections handled at once
// over all rings (default 10,000; more wait in the listen backlog), keeps
// one client's failure to its own connection, and keeps accepting when the
// process runs out of descriptors. A connection silent for --idle-seconds
// (default 60) is closed, and so is one whose echo cannot be sent within
// --send-seconds (default 30): a client that never reads. Until then the
// receive pool's per-connection limit keeps such clients from starving the
// others.

import Glibc
import SystemPackage
import Uring

#if ServiceLifecycle
import Logging
import ServiceLifecycle
import UringServiceLifecycle
#endif

@main
struct UringEcho {
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        var host = "127.0.0.1"
        var port: UInt16?
        var maximumConnections = 10_000
        var idleSeconds = 60
        var sendSeconds = 30
        var rings = 1
        var handOff = false
        var gracefulSeconds = 10
        let usage = "usage: uring-echo [--host H] --port P [--rings N] [--hand-off] [--max-connections N] "
            + "[--idle-seconds S] [--send-seconds S] [--graceful-seconds S]"
        var arguments = CommandLine.arguments.dropFirst()
        while let argument = arguments.popFirst() {
            switch argument {
            case "--host": host = arguments.popFirst() ?? ""
            case "--port": port = arguments.popFirst().flatMap { UInt16($0) }
            case "--rings":
                guard let n = arguments.popFirst().flatMap({ Int($0) }), n > 0 else { fail(usage) }
                rings = n
            case "--hand-off": handOff = true
            case "--max-connections":
                guard let n = arguments.popFirst().flatMap({ Int($0) }), n > 0 else { fail(usage) }
                maximumConnections = n
            case "--idle-seconds":
                guard let n = arguments.popFirst().flatMap({ Int($0) }), n >= 0 else { fail(usage) }
                idleSeconds = n
            case "--send-seconds":
                guard let n = arguments.popFirst().flatMap({ Int($0) }), n >= 0 else { fail(usage) }
                sendSeconds = n
            case "--graceful-seconds":
                guard let n = arguments.popFirst().flatMap({ Int($0) }), n >= 0 else { fail(usage) }
                gracefulSeconds = n
            default: fail("unknown argument '\(argument)'\n\(usage)")
            }
        }
        guard let port else { fail(usage) }
        // 0 turns a timeout off.
        let limits = Limits(
            connections: maximumConnections, idle: idleSeconds > 0 ? .seconds(idleSeconds) : nil,
            send: sendSeconds > 0 ? .seconds(sendSeconds) : nil)
        do {
            let address = try SocketAddress(ip: host, port: port)
            // Threads are pinned when there is a ring per CPU (RingGroupOptions).
            try await RingGroup.run(rings: rings) { group in
                #if !ServiceLifecycle
                // SIGINT and SIGTERM now arrive in this sequence instead of
                // ending the process.
                let signals = try group.rings[0].signals([.interrupt, .terminate])
                #endif
                let listener = try await group.listen(
                    at: address, spreading: handOff ? .handOff(to: .leastBusy) : .byKernel)
                print("listening on \(listener.localAddress)")
                flushStandardOutput()
                #if ServiceLifecycle
                let server = StreamServer(
                    listener, maximumConnections: limits.connections, gracePeriod: .seconds(gracefulSeconds),
                    onError: reportConnectionError, handler: { try await echo($0, limits: limits) })
                var logger = Logger(label: "uring-echo")
                logger.logLevel = .notice
                let services = ServiceGroup(
                    services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
                try await services.run()
                #else
                _ = gracefulSeconds  // needs the ServiceLifecycle trait
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask {
                        for try await signal in signals {
                            report("stopping on \(signal)")
                            return
                        }
                    }
                    // Serving ends only by cancellation (or a failure of the
                    // listener itself); the signal task ending cancels it.
                    tasks.addTask {
                        try await listener.serve(maximumConnections: limits.connections, onError: reportConnectionError) {
                            try await echo($0, limits: limits)
                        }
                    }
                    try await tasks.next()
                    tasks.cancelAll()
                }
                #endif
                listener.close()
            }
        } catch is CancellationError {
        } catch {
            fail("\(error)")
        }
    }

    /// Echoes one connection until the peer closes its side, it is silent
    /// for too long, or its echo cannot be sent in time.
    static func echo(_ connection: borrowing StreamConnection, limits: Limits) async throws {
        for try await chunk in connection.received(idleTimeout: limits.idle) {
            if let send = limits.send {
                try await connection.sendAll(chunk, timeout: send)
            } else {
                try await connection.sendAll(chunk)
            }
        }
        try await connection.shutdown(.sending)
    }
}

/// Logs the error one connection ended with, unless the peer just went
/// away (a reset, or a close with data unread): under load that happens all
/// the time, and a line for each would cost more than the echo.
@Sendable func reportConnectionError(_ error: any Error, _ peer: SocketAddress?) {
    if let error = error as? UringError, error.isPeerGone { return }
    report("\(peer.map { "\($0)" } ?? "client"): \(error)")
}

/// What one connection may take.
struct Limits: Sendable {
    var connections: Int
    var idle: Duration?
    var send: Duration?
}

func report(_ message: String) {
    var line = "uring-echo: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    report(message)
    exit(1)
}

/// Pushes printed lines out now (the test harness reads them from a file).
func flushStandardOutput() {
    fflush(nil)
}
