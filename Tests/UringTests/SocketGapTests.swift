import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Zero-copy sends and Unix-domain sockets", .checksDescriptorLeaks)
    struct SocketGapTests {
        @Test(
            "sendZeroCopy: 1 MiB reaches the peer exact, the buffer lent until the kernel is done with it",
            .requires(.sendZeroCopy, "IORING_OP_SEND_ZC (6.0+)"))
        func zeroCopy() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let sender = Shared(try await StreamConnection.connect(to: listener.localAddress, on: ring))
                let receiver = Shared(try await listener.accept())
                let content = pattern(count: 1 << 20, seed: 17)
                async let received: [UInt8] = {
                    var all: [UInt8] = []
                    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                    while true {
                        let n = try await receiver.value.receive(into: &buffer)
                        if n == 0 { return all }
                        all += buffer[..<n]
                    }
                }()
                var offset = 0
                while offset < content.count {
                    // Each call returns only when the kernel no longer reads
                    // the buffer, so a fresh slice per call is safe to free.
                    let piece = Array(content[offset..<min(offset + 256 * 1024, content.count)])
                    offset += try await sender.value.sendZeroCopy(piece)
                }
                try await sender.value.shutdown(.sending)
                let bytes = try await received
                #expect(bytes.count == content.count)
                #expect(Checksum.of(bytes) == Checksum.of(content))
                try await listener.close()
            }
        }

        @Test(
            "sendZeroCopy to a peer that never reads ends at the deadline with timedOut",
            .requires(.sendZeroCopy, "IORING_OP_SEND_ZC (6.0+)"))
        func zeroCopyDeadline() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let sender = Shared(try await StreamConnection.connect(to: listener.localAddress, on: ring))
                let silent = Shared(try await listener.accept())
                let piece = [UInt8](repeating: 1, count: 1 << 20)
                do {
                    let sends = try await withTimeout(.milliseconds(100)) {
                        // Fills the socket's buffers (a few MiB on loopback),
                        // then waits for room that never comes.
                        var sends = 0
                        while sends < 1_000 {
                            _ = try await sender.value.sendZeroCopy(piece)
                            sends += 1
                        }
                        return sends
                    }
                    Issue.record("\(sends) MiB went into a socket nobody reads")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut, "\(error)")
                    #expect(error.operation == .sendZeroCopy)
                }
                _ = silent
                try await listener.close()
            }
        }

        @Test("a Unix-domain stream listener on a path: connect, echo, and a second bind names the path")
        func unixStream() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let address = try SocketAddress(unixPath: scratch.file("stream.sock").string)
                let listener = try await StreamListener.bind(to: address, on: ring)
                #expect(listener.localAddress == address)
                let server = { let connections = listener.connections; return Task { try await serveEcho(connections) } }()
                let bytes = pattern(count: 100_000, seed: 3)
                #expect(try await echoRoundTrip(bytes, to: address, on: ring) == bytes)
                do {
                    _ = try await StreamListener.bind(to: address, on: ring)
                    Issue.record("bound a path in use")
                } catch let error as UringError {
                    #expect(error.errno == .addressInUse)
                    #expect(error.description.contains(scratch.path + "/stream.sock"), "\(error)")
                }
                server.cancel()
                _ = await server.result
                try await listener.close()
            }
        }

        @Test("Unix datagrams between two bound paths carry the sender's address")
        func unixDatagrams() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let a = try SocketAddress(unixPath: scratch.file("a.sock").string)
                let b = try SocketAddress(unixPath: scratch.file("b.sock").string)
                let first = try await DatagramSocket.bind(to: a, on: ring)
                let second = try await DatagramSocket.bind(to: b, on: ring)
                #expect(try await second.send(Array("ping".utf8), to: a) == 4)
                var buffer = [UInt8](repeating: 0, count: 64)
                let (count, sender, truncated) = try await first.receive(into: &buffer)
                #expect(Array(buffer[..<count]) == Array("ping".utf8))
                #expect(sender == b)
                #expect(!truncated)
                // A datagram larger than the buffer is cut and says so.
                #expect(try await first.send([UInt8](repeating: 7, count: 100), to: b) == 100)
                let (small, _, cut) = try await second.receive(into: &buffer)
                #expect(small == 64 && cut)
                try await first.close()
                try await second.close()
            }
        }
    }
}
