import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    /// What a server built on the library must survive: clients that do not
    /// read, too many clients, clients that stay silent.
    @Suite("Hostile clients", .checksDescriptorLeaks)
    struct HostileClientTests {
        @Test("eight clients whose consumers stall do not starve a ninth: it is echoed while they stay connected")
        func stalledConsumersDoNotStarveOthers() async throws {
            try await RingActor.run { ring in
                let pool = try await ReceiveBufferPool(bufferCount: 64, bufferSize: 4096, on: ring)
                let limit = pool.perConsumerLimit
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let address = listener.localAddress
                try await withThrowingTaskGroup(of: Void.self) { group in
                    let connections = listener.connections
                    group.addTask {
                        // Echoes, except that a connection whose first bytes
                        // are "hog" is never read again (its consumer is stuck,
                        // as on a peer that does not read its replies).
                        try? await withThrowingDiscardingTaskGroup { handlers in
                            for try await incoming in connections {
                                handlers.addTask {
                                    let connection = try incoming.take()
                                    var chunks = connection.received(from: pool).makeAsyncIterator()
                                    guard let first = try await chunks.next() else { return }
                                    if Array(first.prefix(3)) == Array("hog".utf8) {
                                        try await Task.sleep(for: .seconds(3600))
                                    }
                                    try await connection.sendAll(first)
                                    while let chunk = try await chunks.next() { try await connection.sendAll(chunk) }
                                    try await connection.shutdown(.sending)
                                }
                            }
                        }
                    }
                    var hogs: [FileDescriptor] = []
                    defer { for hog in hogs { _ = Glibc.close(hog.rawValue) } }
                    for index in 0..<8 {
                        let hog = try await StreamConnection.connect(to: address, on: ring)
                        try await hog.sendAll(Array("hog".utf8) + pattern(count: 256 * 1024, seed: UInt64(index)))
                        hogs.append(try hog.takeDescriptor())
                    }
                    // The eight hold their whole share of the pool (without
                    // a limit they go on to hold all of it).
                    while pool.buffersInUse < 8 * limit { try await Task.sleep(for: .milliseconds(2)) }
                    let line = Array("still served\n".utf8)
                    // The bound turns a starved client into a failure rather
                    // than a hang; the exchange itself takes milliseconds.
                    let echoed = try await withTimeout(.seconds(30)) {
                        try await echoRoundTrip(line, to: address, on: ring)
                    }
                    #expect(echoed == line)
                    #expect(pool.buffersInUse <= 8 * limit, "stalled consumers hold more than their share")
                    // The hogs are still connected: nothing has been sent to them.
                    for hog in hogs {
                        var byte: UInt8 = 0
                        #expect(recv(hog.rawValue, &byte, 1, Int32(MSG_DONTWAIT)) == -1 && errno == EAGAIN)
                    }
                    group.cancelAll()
                }
                try await listener.close()
            }
        }

        @Test("1,000 connections, each with a multishot receive armed, hold one descriptor each")
        func oneDescriptorPerConnection() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let address = listener.localAddress
                let count = 1000
                let before = openDescriptorCount()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    let connections = listener.connections
                    group.addTask { try? await serveEcho(connections) }
                    var clients: [FileDescriptor] = []
                    defer { for client in clients { _ = Glibc.close(client.rawValue) } }
                    for index in 0..<count {
                        let client = try await StreamConnection.connect(to: address, on: ring)
                        // Echoed back means the server's receive is armed.
                        let byte = UInt8(truncatingIfNeeded: index)
                        try await client.sendAll([byte])
                        #expect(try await client.receive(maximumCount: 1) == [byte])
                        clients.append(try client.takeDescriptor())
                    }
                    // Each connection: the client's socket and the server's;
                    // plus the accept sequence's listener and slack.
                    let added = openDescriptorCount() - before
                    #expect(added <= 2 * count + 8, "\(count) connections added \(added) descriptors")
                    group.cancelAll()
                }
                try await listener.close()
            }
        }
    }
}
