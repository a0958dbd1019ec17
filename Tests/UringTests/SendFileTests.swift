import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Sending files", .checksDescriptorLeaks)
    struct SendFileTests {
        /// Reads everything from `connection` until the peer closes.
        func receiveAll(_ connection: borrowing StreamConnection) async throws -> [UInt8] {
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let n = try await connection.receive(into: &buffer)
                if n == 0 { return received }
                received += buffer[..<n]
            }
        }

        /// Sends all of `file` (which holds `content`) over a new connection
        /// pair on `ring` and checks what arrives.
        func sendsWhole(_ file: borrowing File, _ content: [UInt8], on ring: RingActor) async throws {
            let pair = try StreamConnection.pair(on: ring)
            let sender = Shared(pair.first)
            let receiver = Shared(pair.second)
            async let received = receiveAll(receiver.value)
            #expect(try await sender.value.send(file, from: 0, count: Int64(content.count)) == Int64(content.count))
            try await sender.value.shutdown(.sending)
            #expect(Checksum.of(try await received) == Checksum.of(content))
        }

        @Test("a file's range reaches the socket exact, spliced or (forced) read and sent; a short file sends what it has", arguments: [false, true])
        func sendsRange(forcedFallback: Bool) async throws {
            let scratch = Scratch()
            let content = pattern(count: 3 * 1024 * 1024 + 123, seed: 5)
            let path = scratch.write("body", content)
            var options = RingOptions()
            if forcedFallback { options.treatedAsUnsupported = [.splice] }
            let ring = try RingActor(options: options)
            let file = Shared(try await File.open(path, on: ring))
            let pair = try StreamConnection.pair(on: ring)
            let sender = Shared(pair.first)
            let receiver = Shared(pair.second)
            async let received = receiveAll(receiver.value)
            let whole = try await sender.value.send(file.value, from: 0, count: Int64(content.count))
            let middle = try await sender.value.send(file.value, from: 1000, count: 5000)
            // Past the end: only what is there.
            let tail = try await sender.value.send(file.value, from: Int64(content.count - 10), count: 100)
            try await sender.value.shutdown(.sending)
            let bytes = try await received
            #expect(whole == Int64(content.count) && middle == 5000 && tail == 10)
            #expect(bytes.count == content.count + 5000 + 10)
            #expect(Checksum.of(bytes[..<content.count]) == Checksum.of(content))
            #expect(Array(bytes[content.count..<content.count + 5000]) == Array(content[1000..<6000]))
            #expect(Array(bytes[(content.count + 5000)...]) == Array(content[(content.count - 10)...]))
            // The three sends took turns with one pipe, kept for the next.
            #expect(ring.splicePipes.idleCount == (forcedFallback ? 0 : 1))
            do {
                _ = try await sender.value.send(file.value, from: -1, count: 1)
                Issue.record("a negative offset was accepted")
            } catch let error as UringError {
                #expect(error.kind == .invalidArgument)
                #expect(error.description.contains(path.string), "\(error)")
            }
            await ring.shutdown()
        }

        @Test("send(file, after: header): the header then the file's range arrive exact, spliced or (forced) read; with nothing of the file, the header alone", arguments: [false, true])
        func headerFirst(forcedFallback: Bool) async throws {
            let scratch = Scratch()
            let content = pattern(count: 300 * 1024 + 7, seed: 11)
            let path = scratch.write("body", content)
            // Larger than the socket's buffer, so its send is taken in pieces.
            let header = pattern(count: 400 * 1024 + 3, seed: 12)
            var options = RingOptions()
            if forcedFallback { options.treatedAsUnsupported = [.splice] }
            try await RingActor.run(options: options) { ring in
                let file = Shared(try await File.open(path, on: ring))
                let pair = try StreamConnection.pair(on: ring)
                let sender = Shared(pair.first)
                let receiver = Shared(pair.second)
                async let received = receiveAll(receiver.value)
                let body = try await sender.value.send(file.value, from: 5, count: Int64(content.count), after: header)
                // Nothing of the file at its end: the header alone goes.
                let past = try await sender.value.send(
                    file.value, from: Int64(content.count), count: 10, after: [UInt8](Array("past".utf8)))
                let none = try await sender.value.send(file.value, from: 0, count: 0, after: [UInt8](Array("end".utf8)))
                do {
                    _ = try await sender.value.send(file.value, from: -1, count: 1, after: [UInt8](Array("never".utf8)))
                    Issue.record("a negative offset was accepted")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument)
                }
                try await sender.value.shutdown(.sending)
                let bytes = try await received
                // The file is 5 bytes shorter from offset 5 than asked.
                #expect(body == Int64(content.count - 5) && past == 0 && none == 0)
                let expected = header + content[5...] + Array("past".utf8) + Array("end".utf8)
                #expect(bytes.count == expected.count)
                #expect(Checksum.of(bytes) == Checksum.of(expected))
            }
        }

        @Test("over TCP, a header that no file bytes follow is not left held back by MSG_MORE: nothing stays unsent in the socket")
        func heldHeaderReleased() async throws {
            let scratch = Scratch()
            let path = scratch.write("body", pattern(count: 100, seed: 13))
            try await RingActor.run { ring in
                let file = Shared(try await File.open(path, on: ring))
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let connection = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                let accepted = try await listener.accept()
                // Nagle's algorithm on, as by default: only MSG_MORE holds it.
                let header = [UInt8](Array("HTTP/1.1 200 OK\r\n\r\n".utf8))
                #expect(try await accepted.send(file.value, from: 100, count: 10, after: header) == 0)
                // Bytes in the send queue not yet sent (SIOCOUTQNSD): none,
                // on loopback with the peer's window open.
                let unsent = accepted.withUnsafeDescriptor { descriptor in
                    var bytes: Int32 = -1
                    return ioctl(descriptor.rawValue, 0x894B /* SIOCOUTQNSD */, &bytes) == 0 ? bytes : -1
                }
                #expect(unsent == 0)
                var received: [UInt8] = []
                while received.count < header.count {
                    let piece = try await connection.receive(maximumCount: header.count - received.count)
                    try #require(!piece.isEmpty)
                    received += piece
                }
                #expect(received == header)
                try await connection.close()
                try await accepted.close()
                try await listener.close()
            }
        }

        @Test("a file its file system cannot splice (/proc/self/environ has no splice_read: EINVAL) is read and sent instead, exact")
        func unspliceableFile() async throws {
            // What the file holds, read with plain system calls.
            let fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC)
            try #require(fd >= 0)
            var expected: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n <= 0 { break }
                expected += chunk[..<n]
            }
            close(fd)
            try #require(!expected.isEmpty, "this process has an environment")
            try await RingActor.run { ring in
                let file = Shared(try await File.open("/proc/self/environ", on: ring))
                let pair = try StreamConnection.pair(on: ring)
                let sender = Shared(pair.first)
                let receiver = Shared(pair.second)
                async let received = receiveAll(receiver.value)
                #expect(try await sender.value.send(file.value, from: 0, count: Int64(expected.count)) == Int64(expected.count))
                // With a header: sent once, before the fallback's reads.
                let header = [UInt8](Array("head\r\n".utf8))
                #expect(try await sender.value.send(file.value, from: 0, count: Int64(expected.count), after: header) == Int64(expected.count))
                try await sender.value.shutdown(.sending)
                #expect(try await received == expected + header + expected)
                // The splice failed, so its pipe was not kept for the next send.
                #expect(ring.splicePipes.idleCount == 0)
            }
        }

        @Test("a ring keeps the pipes of sends that ran at once, not only a few, and hands out the largest first")
        func pipesKept() throws {
            let pipes = SplicePipes()
            let taken = try (0..<8).map { _ in try pipes.take(address: nil) }
            let largest = taken.map(\.capacity).max()
            for pipe in taken { pipes.giveBack(pipe) }
            // All eight kept, unless other rings' pipes filled the process's bound.
            #expect(pipes.idleCount == 8 || SplicePipes.idleInProcess >= SplicePipes.keptInProcess)
            try #require(pipes.idleCount > 0, "other rings keep \(SplicePipes.idleInProcess) pipes")
            let first = try pipes.take(address: nil)
            #expect(first.capacity == largest)
            #expect(taken.contains { $0 === first }, "a kept pipe, not a new one")
        }

        @Test("a ring's kept pipes close when it shuts down, not when the last reference to it goes")
        func pipesClosedAtShutdown() async throws {
            let scratch = Scratch()
            let content = pattern(count: 256 * 1024, seed: 11)
            let path = scratch.write("body", content)
            let ring = try RingActor()
            do {
                let file = try await File.open(path, on: ring)
                try await sendsWhole(file, content, on: ring)
                try await file.close()
            } catch {
                await ring.shutdown()
                throw error
            }
            let keptBefore = ring.splicePipes.idleCount
            await ring.shutdown()
            #expect(keptBefore == 1 || SplicePipes.idleInProcess >= SplicePipes.keptInProcess)
            #expect(ring.splicePipes.idleCount == 0)
            // One given back after the shutdown is closed, not kept.
            ring.splicePipes.giveBack(try SplicePipe(address: nil))
            #expect(ring.splicePipes.idleCount == 0)
        }

        @Test("send(file) to a peer that never reads ends at the deadline; on a one-entry ring the steps go unlinked")
        func deadlineAndTinyRing() async throws {
            let scratch = Scratch()
            let content = pattern(count: 2 * 1024 * 1024, seed: 9)
            let path = scratch.write("body", content)
            try await RingActor.run { ring in
                let file = Shared(try await File.open(path, on: ring))
                let pair = try StreamConnection.pair(on: ring)
                let sender = Shared(pair.first)
                let silent = Shared(pair.second)
                do {
                    _ = try await withTimeout(.milliseconds(100)) {
                        try await sender.value.send(file.value, from: 0, count: Int64(content.count))
                    }
                    Issue.record("2 MiB went into a socket nobody reads")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut, "\(error)")
                }
                _ = silent
                // A header larger than the socket takes is bounded too.
                let second = try StreamConnection.pair(on: ring)
                do {
                    _ = try await withTimeout(.milliseconds(100)) {
                        try await second.first.send(file.value, from: 0, count: 1, after: content)
                    }
                    Issue.record("a 2 MiB header went into a socket nobody reads")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut, "\(error)")
                }
                _ = second
                // (A header's send comes before the pipe is taken.) The first
                // timed-out send's pipe still held bytes: it was closed,
                // not kept, so the next send on this ring is exact.
                #expect(ring.splicePipes.idleCount == 0)
                try await sendsWhole(file.value, content, on: ring)
                #expect(ring.splicePipes.idleCount == 1)
            }
            var options = RingOptions()
            options.entries = 1
            try await RingActor.run(options: options) { ring in
                try #require(ring.queueSizes.submission == 1, "the kernel rounded 1 entry up")
                let file = try await File.open(path, on: ring)
                try await sendsWhole(file, content, on: ring)
            }
        }
    }
}
