import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    /// `ring.batch`: many requests, one submission and one wait.
    @Suite("Batches", .checksDescriptorLeaks)
    struct BatchTests {
        @Test("a batch of writes lands each record at its offset, and results come back in order")
        func writes() async throws {
            let scratch = Scratch()
            let path = scratch.file("log")
            try await RingActor.run { ring in
                let file = try await File.open(path, .readWrite, options: [.create, .truncate], on: ring)
                let records = (0..<40).map { pattern(count: 100 + $0, seed: UInt64($0)) }
                let before = ring.statistics.submitted
                let written = try await ring.batch { batch in
                    for (index, record) in records.enumerated() { batch.write(record, to: file, at: Int64(index * 200)) }
                }
                #expect(ring.statistics.submitted - before == 40)
                #expect(written == records.map(\.count))
                for (index, record) in records.enumerated() {
                    var back = [UInt8](repeating: 0, count: record.count)
                    #expect(try await file.read(into: &back, at: Int64(index * 200)) == record.count)
                    #expect(back == record, "record \(index)")
                }
                try await file.close()
            }
        }

        @Test("batches from concurrent tasks, on the ring's thread and off it, each get their own results")
        func concurrentBatches() async throws {
            let scratch = Scratch()
            let path = scratch.file("interleaved")
            // 16 tasks, half preferring the ring's thread (their requests go
            // straight into the SQ) and half on the global pool (posted to
            // the ring): completions of different batches share the CQ.
            let tasks = 16, batches = 12, perBatch = 16, recordSize = 64
            try await RingActor.run { ring in
                let file = try await File.open(path, .readWrite, options: [.create, .truncate], on: ring)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for task in 0..<tasks {
                        let work: @Sendable () async throws -> Void = {
                            // A descriptor of its own, for the same file.
                            let file = try await File.open(path, .readWrite, on: ring)
                            for round in 0..<batches {
                                let first = (task * batches + round) * perBatch
                                let records = (first..<(first + perBatch)).map {
                                    pattern(count: recordSize, seed: UInt64($0))
                                }
                                let results = try await ring.batch { batch in
                                    for (index, record) in records.enumerated() {
                                        if index % 4 == 3 { batch.nop() }
                                        batch.write(record, to: file, at: Int64((first + index) * recordSize))
                                    }
                                }
                                #expect(results.count == perBatch + perBatch / 4)
                                #expect(results.filter { $0 != 0 }.allSatisfy { $0 == recordSize })
                                #expect(results.filter { $0 == recordSize }.count == perBatch)
                            }
                            try await file.close()
                        }
                        if task % 2 == 0 {
                            group.addTask { try await work() }
                        } else {
                            group.addTask(executorPreference: globalConcurrentExecutor) { try await work() }
                        }
                    }
                    try await group.waitForAll()
                }
                for record in 0..<(tasks * batches * perBatch) {
                    var back = [UInt8](repeating: 0, count: recordSize)
                    #expect(try await file.read(into: &back, at: Int64(record * recordSize)) == recordSize)
                    #expect(back == pattern(count: recordSize, seed: UInt64(record)), "record \(record)")
                }
                try await file.close()
            }
        }

        @Test("a batch of NOPs and sends: the peer receives every send, in order")
        func sendsAndNops() async throws {
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let a = pair.first, b = pair.second
                let messages = (0..<10).map { Array("message \($0);".utf8) }
                let results = try await ring.batch { batch in
                    for message in messages {
                        batch.nop()
                        batch.send(message, on: a)
                    }
                }
                #expect(results.count == 20)
                #expect(stride(from: 0, to: 20, by: 2).allSatisfy { results[$0] == 0 })
                #expect(stride(from: 1, to: 20, by: 2).map { results[$0] } == messages.map(\.count))
                let expected = messages.flatMap { $0 }
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while received.count < expected.count {
                    let n = try await b.receive(into: &buffer)
                    #expect(n > 0)
                    received += buffer[..<n]
                }
                #expect(received == expected)
                try await a.close()
                try await b.close()
            }
        }

        @Test("a wrong request is refused before anything is submitted; a failing one fails after all complete")
        func errors() async throws {
            let scratch = Scratch()
            let path = scratch.write("readonly", [1, 2, 3])
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)  // read-only
                let before = ring.statistics.submitted
                do {
                    _ = try await ring.batch { batch in
                        batch.nop()
                        batch.write([], to: file, at: 0)
                    }
                    Issue.record("an empty write was accepted")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument)
                    #expect(error.operation == .write)
                }
                #expect(ring.statistics.submitted == before, "nothing reaches the kernel")
                do {
                    _ = try await ring.batch { batch in
                        batch.nop()
                        batch.write([9], to: file, at: 0)
                        batch.nop()
                    }
                    Issue.record("a write to a read-only file succeeded")
                } catch let error as UringError {
                    #expect(error.errno == .badFileDescriptor, "\(error)")
                    #expect(error.path == path, "the error names the file")
                }
                #expect(ring.statistics.submitted == before + 3)
                #expect(ring.statistics.inFlight == 0, "every request completed before the throw")
                #expect(try await ring.batch { _ in } == [])
                try await file.close()
            }
        }

        @Test("a batch larger than the submission queue goes in pieces, results in order")
        func largerThanTheQueue() async throws {
            let scratch = Scratch()
            let path = scratch.file("pieces")
            var options = RingOptions()
            options.entries = 8
            try await RingActor.run(options: options) { ring in
                let file = try await File.open(path, .readWrite, options: [.create, .truncate], on: ring)
                let records = (0..<50).map { pattern(count: 1 + $0, seed: UInt64($0)) }
                let results = try await ring.batch { batch in
                    for (index, record) in records.enumerated() {
                        batch.nop()
                        batch.write(record, to: file, at: Int64(index * 64))
                    }
                }
                #expect(results.count == 100)
                #expect(stride(from: 0, to: 100, by: 2).allSatisfy { results[$0] == 0 })
                #expect(stride(from: 1, to: 100, by: 2).map { results[$0] } == records.map(\.count))
                var back = [UInt8](repeating: 0, count: 64)
                for (index, record) in records.enumerated() {
                    #expect(try await file.read(into: &back, at: Int64(index * 64)) >= record.count)
                    #expect(Array(back[..<record.count]) == record, "record \(index)")
                }
                #expect(ring.statistics.inFlight == 0)
                #expect(ring.core.pool.inUseCount == 0, "every slot went back to the pool")
                try await file.close()
            }
        }

        @Test("under an in-flight limit, a batch completes beside a request that stays in the kernel")
        func underTheInFlightLimit() async throws {
            var options = RingOptions()
            options.entries = 8
            options.maximumInFlight = 4
            let ring = try RingActor(options: options)
            let sleeper = Task { try await ring.sleep(for: .seconds(3600)) }
            while ring.statistics.inFlight == 0 {
                try Task.checkCancellation()
                await Task.yield()
            }
            // One place of four is taken for good: the batch must go in
            // pieces that fit the other three.
            let results = try await ring.batch { batch in
                for _ in 0..<20 { batch.nop() }
            }
            #expect(results == [Int](repeating: 0, count: 20))
            sleeper.cancel()
            _ = await sleeper.result
            #expect(ring.statistics.inFlight == 0)
            await ring.shutdown()
        }

        /// Runs a batch of four 1 MiB sends to a peer that never reads, so all
        /// but the first wait in the kernel; `interrupt` is called once three
        /// are waiting there, and the batch's error is returned.
        private func blockedSends(
            on ring: RingActor, interrupt: @Sendable (RingActor, Task<Void, any Error>) async -> Void
        ) async throws -> (any Error)? {
            let payload = [UInt8](repeating: 7, count: 1 << 20)
            let task = Task {
                let pair = try StreamConnection.pair(on: ring)
                var small: Int32 = 4096
                _ = setsockopt(
                    pair.first.descriptor.rawValue, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
                var failure: (any Error)? = nil
                do {
                    _ = try await ring.batch { batch in
                        for _ in 0..<4 { batch.send(payload, on: pair.first) }
                    }
                } catch {
                    failure = error
                }
                try? await pair.first.close()
                try? await pair.second.close()
                if let failure { throw failure }
            }
            while ring.statistics.inFlight < 3 {
                try Task.checkCancellation()
                await Task.yield()
            }
            await interrupt(ring, task)
            switch await task.result {
            case .success: return nil
            case .failure(let error): return error
            }
        }

        @Test("cancelling a batch cancels the requests still in the kernel, waits for them, and throws CancellationError")
        func cancelled() async throws {
            let ring = try RingActor()
            let error = try await blockedSends(on: ring) { _, task in task.cancel() }
            #expect(error is CancellationError, "\(String(describing: error))")
            #expect(ring.statistics.inFlight == 0)
            #expect(ring.core.pool.inUseCount == 0, "every slot went back to the pool")
            try await ring.nop()
            await ring.shutdown()
        }

        @Test("shutting the ring down during a batch fails it as shut down")
        func shutDownDuring() async throws {
            let ring = try RingActor()
            let error = try await blockedSends(on: ring) { ring, _ in await ring.shutdown() }
            #expect((error as? UringError)?.kind == .ringShutDown, "\(String(describing: error))")
            #expect((error as? UringError)?.operation == .send)
        }

        @Test("a lost completion inside a batch fails that request as lost after the others complete")
        func lostCompletion() async throws {
            let ring = try RingActor()
            ring.core.dropCompletionsForTesting(1)
            do {
                _ = try await ring.batch { batch in
                    for _ in 0..<8 { batch.nop() }
                }
                Issue.record("a batch with a lost completion succeeded")
            } catch let error as UringError {
                #expect(error.kind == .completionLost, "\(error)")
                #expect(error.operation == .nop)
            }
            #expect(ring.statistics.lostOperations == 1)
            #expect(ring.statistics.inFlight == 0)
            #expect(try await ring.batch { batch in batch.nop() } == [0])
            await ring.shutdown()
        }
    }
}
