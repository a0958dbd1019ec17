import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    /// Waits that no request in the kernel ends, and sequences after an
    /// error: each once hung or lied (issue 11's defects 3, 4, 5 and 7).
    @Suite("Shutdown and error edges", .checksDescriptorLeaks)
    struct ShutdownEdgeTests {
        @Test("lines after a reset: the error is thrown, and the partial last line is not returned as a line")
        func linesAfterError() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                let server = try await listener.accept()
                try await client.sendAll(Array("complete\npartial".utf8))
                var lines = server.received().lines.makeAsyncIterator()
                let first = try await lines.next(isolation: ring)
                #expect(first == "complete")
                // Reset: close with a zero linger time.
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                _ = setsockopt(
                    client.descriptor.rawValue, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                try await client.close()
                do {
                    let line = try await lines.next(isolation: ring)
                    Issue.record("a line after the reset: \(line ?? "nil")")
                } catch {
                    #expect(error is UringError, "\(error)")
                }
                let after = try await lines.next(isolation: ring)
                #expect(after == nil, "the partial line came back as a finished one")
                _ = consume lines
                try await server.close()
                try await listener.close()
            }
        }

        @Test("a completion the kernel dropped fails its operation, and the sleeper in the kernel, instead of hanging")
        func droppedCompletion() async throws {
            let ring = try RingActor()
            // A request that stays in the kernel until something ends it.
            let sleeper = Task { try await ring.sleep(for: .seconds(3600)) }
            while ring.statistics.inFlight == 0 {
                try Task.checkCancellation()
                await Task.yield()
            }
            ring.core.dropCompletionsForTesting(1)
            // The NOP completes at once, and its completion is discarded as if
            // the kernel had dropped it. Before the fix this await never ended.
            do {
                try await ring.nop()
                Issue.record("the NOP whose completion was dropped succeeded")
            } catch let error as UringError {
                #expect(error.kind == .completionLost, "\(error)")
                #expect(error.operation == .nop)
            }
            // The sleeper was cancelled in the search, and says why.
            do {
                try await sleeper.value
                Issue.record("the sleeper finished normally")
            } catch let error as UringError {
                #expect(error.kind == .completionLost, "\(error)")
            }
            let statistics = ring.statistics
            #expect(statistics.droppedCompletions == 1)
            #expect(statistics.lostOperations == 1)
            // The ring goes on working, and shuts down.
            try await ring.nop()
            await ring.shutdown()
        }

        @Test("shutdown closes the ring's own descriptors, while the actor is still referenced")
        func shutdownClosesRingDescriptors() async throws {
            func rings() -> Int { openDescriptorTargets().filter { $0.hasSuffix("anon_inode:[io_uring]") }.count }
            let before = rings()
            let ring = try RingActor()
            try await ring.nop()
            #expect(rings() == before + 2, "the ring's descriptor and the one other rings message it through")
            await ring.shutdown()
            #expect(rings() == before, "both closed at shutdown")
            await #expect(throws: UringError.self, "a message to a ring that shut down") {
                try await RingActor.shared.send(1, to: ring)
            }
            withExtendedLifetime(ring) {}
        }

        @Test("ring messages: a waiter cancelled at any moment ends, 200 times over")
        func messageWaitCancelled() async throws {
            let ring = try RingActor()
            for round in 0..<200 {
                let waiter = Task {
                    var messages = ring.messages.makeAsyncIterator()
                    _ = try await messages.next()
                }
                // Cancel at varying points: before, during and after it parks.
                for _ in 0..<(round % 4) { await Task.yield() }
                waiter.cancel()
                await #expect(throws: CancellationError.self) { try await waiter.value }
            }
            await ring.shutdown()
        }

        @Test("shutdown ends a task waiting for ring messages", .requires(.message, "IORING_OP_MSG_RING (5.18+)"))
        func messagesEndAtShutdown() async throws {
            let ring = try RingActor()
            let waiter = Task { () -> Int in
                var count = 0
                for try await _ in ring.messages { count += 1 }
                return count
            }
            try await RingActor.run { sender in
                try await sender.send(1, to: ring)
            }
            // Wait until the message is taken, so the waiter is parked again.
            await ring.shutdown()
            #expect(try await waiter.value <= 1)
        }

        @Test("shutdown ends a receive sequence that waits for a free pool buffer")
        func poolWaiterEndsAtShutdown() async throws {
            let ring = try RingActor()
            let pool = try await ReceiveBufferPool(bufferCount: 1, bufferSize: 64, on: ring)
            let first = try StreamConnection.pair(on: ring)
            let second = try StreamConnection.pair(on: ring)
            try await first.first.sendAll([1])
            try await second.first.sendAll([2])
            var holder = first.second.received(using: pool).makeAsyncIterator()
            let held = try await holder.next()  // the pool's only buffer
            #expect(held?.first == 1)
            let waiting = Shared(second.second)
            let waiter = Task {
                for try await _ in waiting.value.received(using: pool) {}
            }
            while pool.waitingStreams == 0 { try await Task.sleep(for: .milliseconds(1)) }
            await ring.shutdown()
            do {
                try await waiter.value
                Issue.record("the waiting sequence ended normally")
            } catch let error as UringError {
                #expect(error.kind == .ringShutDown, "\(error)")
            }
            withExtendedLifetime(held) {}
            _ = consume holder
        }
    }
}
