// uring-http: a small static-file HTTP/1.1 server on io_uring, safe to copy.
//
//     uring-http [--host H] --port P --root DIR [--rings N] [--max-connections N]
//                [--header-seconds S] [--keepalive-seconds S] [--send-seconds S]
//                [--graceful-seconds S]
//
// With --rings N (default 1), N rings (on threads pinned to CPUs when
// there is one ring per CPU) each listen on the port (SO_REUSEPORT) and
// serve the connections the kernel gives them, opening files through their
// own ring.
//
// GET and HEAD of regular files under DIR, keep-alive, Content-Length and
// Content-Type. Nothing outside DIR is ever served: files are opened with
// openat2's RESOLVE_BENEATH through the ring, so symbolic links cannot lead
// out, and a ".." segment is refused with 403. FIFOs, devices and
// directories are 404, checked before anything could wait. Exactly
// Content-Length bytes are sent (past 64 KiB, spliced from the file to
// the socket without passing through the process); if the file
// shrinks meanwhile the connection is closed. Request bodies are read and dropped (413 past
// 1 MiB, 501 for transfer codings). Malformed heads (bare LF included) are
// 400, oversized targets 414, oversized heads 431, a head not received
// within --header-seconds (default 10) 408; an idle kept-alive connection
// closes after --keepalive-seconds (default 15), and a response that takes
// longer than --send-seconds (default 30) to send is abandoned.
//
// It prints "listening on H:P" once ready. On SIGINT or SIGTERM it stops
// accepting, lets open connections finish for up to --graceful-seconds
// (default 10; an idle kept-alive connection holds on until its own
// timeout or this one), closes the rest and exits 0. Built with the
// package's ServiceLifecycle trait it runs as a Service in a ServiceGroup,
// which handles the signals; without it, it watches for them itself and
// closes every connection at once.

import Glibc
import SystemPackage
import Uring

#if ServiceLifecycle
import Logging
import ServiceLifecycle
import UringServiceLifecycle
#endif

@main
struct UringHTTP {
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        var host = "127.0.0.1"
        var port: UInt16?
        var root: String?
        var maximumConnections = 10_000
        var limits = RequestLimits()
        var rings = 1
        var gracefulSeconds = 10
        var arguments = CommandLine.arguments.dropFirst()
        let usage = "usage: uring-http [--host H] --port P --root DIR [--rings N] [--max-connections N] "
            + "[--header-seconds S] [--keepalive-seconds S] [--send-seconds S] [--graceful-seconds S]"
        func positive(_ text: String?) -> Int {
            guard let text, let value = Int(text), value > 0 else { fail(usage) }
            return value
        }
        while let argument = arguments.popFirst() {
            switch argument {
            case "--host": host = arguments.popFirst() ?? ""
            case "--port": port = arguments.popFirst().flatMap { UInt16($0) }
            case "--root": root = arguments.popFirst()
            case "--rings": rings = positive(arguments.popFirst())
            case "--max-connections": maximumConnections = positive(arguments.popFirst())
            case "--header-seconds": limits.headerTimeout = .seconds(positive(arguments.popFirst()))
            case "--keepalive-seconds": limits.keepAliveTimeout = .seconds(positive(arguments.popFirst()))
            case "--send-seconds": limits.sendTimeout = .seconds(positive(arguments.popFirst()))
            case "--graceful-seconds":
                guard let n = arguments.popFirst().flatMap({ Int($0) }), n >= 0 else { fail(usage) }
                gracefulSeconds = n
            default: fail("unknown argument '\(argument)'\n\(usage)")
            }
        }
        guard let port, let root else { fail(usage) }
        do {
            let address = try SocketAddress(ip: host, port: port)
            // Threads are pinned when there is a ring per CPU (RingGroupOptions).
            try await RingGroup.run(rings: rings) { group in
                #if !ServiceLifecycle
                // SIGINT and SIGTERM now arrive in this sequence instead of
                // ending the process.
                let signals = try group.rings[0].signals([.interrupt, .terminate])
                #endif
                let directory: Directory
                do {
                    directory = try await Directory.open(FilePath(root), on: group.rings[0])
                } catch {
                    fail("--root: \(error)")
                }
                let site = Site(root: Root(directory), limits: limits)
                let listener = try await group.listen(at: address)
                print("listening on \(listener.localAddress)")
                flushStandardOutput()
                let maximum = maximumConnections
                let onError: @Sendable (any Error, SocketAddress?) -> Void = { error, peer in
                    // A peer that reset or hung up mid-response is routine
                    // under load; a line for each would cost more than it tells.
                    if let error = error as? UringError, error.isPeerGone { return }
                    report("\(peer.map { "\($0)" } ?? "client"): \(error)")
                }
                #if ServiceLifecycle
                let server = StreamServer(
                    listener, maximumConnections: maximum, gracePeriod: .seconds(gracefulSeconds),
                    onError: onError, handler: { try await site.serve($0) })
                var logger = Logger(label: "uring-http")
                logger.logLevel = .notice
                let services = ServiceGroup(
                    services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
                try await services.run()
                #else
                _ = gracefulSeconds  // needs the ServiceLifecycle trait
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask {
                        try await listener.serve(maximumConnections: maximum, onError: onError) { connection in
                            try await site.serve(connection)
                        }
                    }
                    tasks.addTask {
                        for try await signal in signals {
                            report("stopping on \(signal)")
                            return
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
}

/// Writes one line to standard error, with control characters, C0 and C1
/// (which a client can put in a path), escaped so they cannot forge or garble log lines.
func report(_ message: String) {
    var line = "uring-http: "
    for scalar in message.unicodeScalars {
        if scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) {
            line += "\\x" + String(scalar.value, radix: 16).leftPadded(to: 2)
        } else {
            line.unicodeScalars.append(scalar)
        }
    }
    line += "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

extension String {
    func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}

func fail(_ message: String) -> Never {
    report(message)
    exit(1)
}

/// Pushes printed lines out now (the test harness reads them from a file).
func flushStandardOutput() {
    fflush(nil)
}
