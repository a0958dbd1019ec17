// uring-echo: a TCP echo server on io_uring, one child task per connection.
//
//     uring-echo [--host H] --port P
//
// It prints "listening on H:P" once it accepts connections, and on SIGINT or
// SIGTERM stops accepting, closes every open connection and exits 0.

import Glibc
import SystemPackage
import Uring

@main
struct UringEcho {
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        var host = "127.0.0.1"
        var port: UInt16?
        var arguments = CommandLine.arguments.dropFirst()
        while let argument = arguments.popFirst() {
            switch argument {
            case "--host": host = arguments.popFirst() ?? ""
            case "--port": port = arguments.popFirst().flatMap { UInt16($0) }
            default: fail("unknown argument '\(argument)'\nusage: uring-echo [--host H] --port P")
            }
        }
        guard let port else { fail("usage: uring-echo [--host H] --port P") }
        do {
            let address = try SocketAddress(ip: host, port: port)
            try await RingActor.run { ring in
                // SIGINT and SIGTERM now arrive in this sequence instead of
                // ending the process.
                let signals = try ring.signals([.interrupt, .terminate])
                let listener = try await StreamListener.bind(to: address, on: ring)
                print("listening on \(listener.localAddress)")
                flushStandardOutput()
                let connections = listener.connections
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await serve(connections) }
                    group.addTask {
                        for try await signal in signals {
                            report("stopping on \(signal)")
                            return
                        }
                    }
                    // Whichever ends first (a signal, or an error) stops the other.
                    try await group.next()
                    group.cancelAll()
                }
                try await listener.close()
            }
        } catch is CancellationError {
        } catch {
            fail("\(error)")
        }
    }

    /// Echoes every connection in its own child task until cancelled; the
    /// cancellation reaches each child, whose connection then closes.
    static func serve(_ connections: IncomingConnections) async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for try await incoming in connections {
                group.addTask {
                    let connection = try incoming.take()
                    do {
                        for try await chunk in connection.received() {
                            try await connection.sendAll(chunk)
                        }
                        try await connection.shutdown(.sending)
                    } catch let error as UringError {
                        // One client's failure (a reset) ends only its connection.
                        report("\(connection.remoteAddress.map { "\($0)" } ?? "client"): \(error)")
                    }
                }
            }
        }
    }
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
