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
    }
}
