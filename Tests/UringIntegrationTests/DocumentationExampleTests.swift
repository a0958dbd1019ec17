#if NIO && ServiceLifecycle && Metrics && Logging
import CoreMetrics
import Logging
import MetricsTestKit
import NIOCore
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing
import Uring
import UringLogging
import UringMetrics
import UringNIO
import UringServiceLifecycle
import UringTesting

// The code of the DocC article "Using swift-uring with SwiftNIO,
// ServiceLifecycle and metrics", compiled and run here. Keep the two alike.

// MARK: From the article

/// Echoes one connection with a ByteBuffer it reuses: the kernel receives
/// straight into the buffer's storage, and the send lends it to the kernel.
func echo(_ connection: borrowing StreamConnection) async throws {
    var buffer = ByteBufferAllocator().buffer(capacity: 16 * 1024)
    while try await connection.receive(into: &buffer, maximumCount: 16 * 1024) > 0 {
        try await connection.sendAll(buffer)
        buffer.clear()
    }
}

/// Runs an echo server until its service group shuts down: on SIGTERM or
/// SIGINT it stops accepting and gives open connections 10 seconds.
func runEchoServer(
    at address: Uring.SocketAddress, logger: Logger, metrics: RingMetrics,
    listening: @Sendable (Uring.SocketAddress) -> Void = { _ in }
) async throws {
    var options = RingOptions()
    options.logEvents(to: logger)  // accept back-offs, pool exhaustion, …
    try await RingActor.run(options: options) { ring in
        let listener = try await StreamListener.bind(to: address, on: ring)
        listening(listener.localAddress)
        let server = StreamServer(
            listener.connections, maximumConnections: 10_000, gracePeriod: .seconds(10),
            onError: { error, peer in logger.debug("\(peer.map { "\($0)" } ?? "client"): \(error)") },
            handler: { try await echo($0) })
        let services = ServiceGroup(
            services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await withThrowingDiscardingTaskGroup { group in
            // A sample now and every 10 s, until the services have stopped.
            group.addTask { await metrics.report(ring, every: .seconds(10)) }
            try await services.run()
            group.cancelAll()
        }
    }
}

// MARK: The tests

extension Integrations {
    @Suite("Documentation: the ecosystem article's examples")
    struct DocumentationExampleTests {
        @Test("the article's echo server serves, reports metrics, and stops on graceful shutdown", .ring)
        func echoServer() async throws {
            let ring = try TestRing.current
            let testMetrics = TestMetrics()
            let metrics = RingMetrics(prefix: "echo", factory: testMetrics)
            let (addresses, announce) = AsyncStream.makeStream(of: Uring.SocketAddress.self)
            try await testGracefulShutdown { trigger in
                async let server: Void = runEchoServer(
                    at: .loopback(port: 0), logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
                    metrics: metrics, listening: { announce.yield($0) })
                var iterator = addresses.makeAsyncIterator()
                let address = try #require(await iterator.next())
                let client = try await StreamConnection.connect(to: address, on: ring)
                try await client.sendAll(Array("hello".utf8))
                var echoed: [UInt8] = []
                while echoed.count < 5 {
                    let chunk = try await client.receive(maximumCount: 16)
                    if chunk.isEmpty { break }
                    echoed += chunk
                }
                #expect(echoed == Array("hello".utf8))
                try await client.close()
                trigger.triggerGracefulShutdown()
                try await server
            }
            // The first sample is taken as the server starts, after its
            // listening socket was opened through the ring.
            #expect(try testMetrics.expectGauge("echo.in_flight").values.isEmpty == false)
            #expect(try testMetrics.expectCounter("echo.submitted").totalValue >= 1)
        }
    }
}
#endif
