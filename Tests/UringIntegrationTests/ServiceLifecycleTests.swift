#if ServiceLifecycle
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import Uring
import UringServiceLifecycle
import UringTesting

extension Integrations {
    @Suite("UringServiceLifecycle: a server as a Service that stops gracefully", .ring)
    struct ServiceLifecycleTests {
        /// An echo handler.
        static let echo: @Sendable (borrowing StreamConnection) async throws -> Void = { connection in
            for try await chunk in connection.received() { try await connection.sendAll(chunk) }
        }

        /// Sends `text` and reads its echo back.
        func roundTrip(_ text: String, on connection: borrowing StreamConnection) async throws -> String {
            try await connection.sendAll(Array(text.utf8))
            var echoed: [UInt8] = []
            while echoed.count < text.utf8.count {
                let chunk = try await connection.receive(maximumCount: 64)
                if chunk.isEmpty { break }
                echoed += chunk
            }
            return String(decoding: echoed, as: UTF8.self)
        }

        /// Connects until the listener refuses (or resets a connect that
        /// reached its queue as it closed), closing any connection made
        /// before the stop took effect.
        func waitUntilRefused(_ address: SocketAddress, ring: RingActor) async throws {
            while !Task.isCancelled {
                do {
                    let early = try await StreamConnection.connect(to: address, on: ring)
                    try await early.close()
                    try await ring.sleep(for: .milliseconds(1))
                } catch let error as UringError
                    where error.errno == .connectionRefused || error.errno == .connectionReset
                {
                    return
                }
            }
        }

        @Test("on graceful shutdown it refuses new clients, lets a live connection finish, then returns")
        func graceful() async throws {
            let ring = try TestRing.current
            try await testGracefulShutdown { trigger in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let address = listener.localAddress
                let server = StreamServer(listener.connections, gracePeriod: .seconds(3600), handler: Self.echo)
                async let running: Void = server.run()
                let client = try await StreamConnection.connect(to: address, on: ring)
                #expect(try await roundTrip("before", on: client) == "before")

                trigger.triggerGracefulShutdown()
                try await waitUntilRefused(address, ring: ring)
                // Accepting has stopped, but this connection is still served.
                #expect(try await roundTrip("during", on: client) == "during")
                try await client.close()
                try await running  // returns once the handler has seen the close
            }
        }

        @Test("connections still open when the grace period ends are cancelled and closed")
        func gracePeriodEnds() async throws {
            let ring = try TestRing.current
            try await testGracefulShutdown { trigger in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let server = StreamServer(listener.connections, gracePeriod: .milliseconds(20), handler: Self.echo)
                async let running: Void = server.run()
                let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                #expect(try await roundTrip("ping", on: client) == "ping")
                trigger.triggerGracefulShutdown()
                try await running  // a graceful end: no error
                // The server's side closed when its handler was cancelled.
                #expect(try await client.receive(maximumCount: 16).isEmpty)
                try await client.close()
            }
        }

        @Test("cancelling the service cancels every handler and throws CancellationError")
        func cancelled() async throws {
            let ring = try TestRing.current
            let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
            let server = StreamServer(listener.connections, handler: Self.echo)
            let running = Task { try await server.run() }
            let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
            #expect(try await roundTrip("x", on: client) == "x")
            running.cancel()
            await #expect(throws: CancellationError.self) { try await running.value }
            #expect(try await client.receive(maximumCount: 16).isEmpty)
            try await client.close()
        }
    }
}
#endif
