import Glibc
import Synchronization
import SystemPackage
import Testing
import UringTesting

@testable import Uring

extension AllTests {
    @Suite("Vectored messages, control messages, multishot datagrams", .checksDescriptorLeaks)
    struct MessageTests {
        @Test("a datagram sent from three buffers arrives whole, spread over two, with its sender")
        func vectoredDatagram() async throws {
            try await RingActor.run { ring in
                let server = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                let client = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                let pieces: [[UInt8]] = [Array("head|".utf8), Array("body|".utf8), Array("tail".utf8)]
                #expect(try await client.send(pieces, to: server.localAddress!) == 14)
                var buffers = [[UInt8](repeating: 0, count: 4), [UInt8](repeating: 0, count: 64)]
                let (count, sender, truncated) = try await server.receive(into: &buffers)
                #expect(count == 14)
                #expect(!truncated)
                #expect(sender == client.localAddress)
                #expect(buffers[0] == Array("head".utf8))
                #expect(Array(buffers[1][..<10]) == Array("|body|tail".utf8))
                // Connected, the vectored send needs no address.
                #expect(client.remoteAddress == nil)
                try await client.connect(to: server.localAddress!)
                #expect(client.remoteAddress == server.localAddress)
                #expect(try await client.send([[UInt8(1)], [2, 3]]) == 3)
                let (again, _, _) = try await server.receive(into: &buffers)
                #expect(again == 3 && buffers[0][..<3] == [1, 2, 3])
                try await client.close()
                try await server.close()
            }
        }

        @Test("sendAll of many buffers, more than the socket holds, resumes after short sends; vectored receives get every byte in order")
        func vectoredStream() async throws {
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let sender = Shared(pair.first)
                let receiver = Shared(pair.second)
                // Larger than the socket's buffer, so some sends are short.
                let content = pattern(count: 600_000, seed: 41)
                var pieces: [[UInt8]] = []
                var offset = 0
                var size = 1
                while offset < content.count {
                    let end = min(content.count, offset + size)
                    pieces.append(Array(content[offset..<end]))
                    offset = end
                    size = size * 3 % 20_011 + 1
                }
                pieces.insert([], at: 3)  // an empty piece is skipped, not an error
                async let received: [UInt8] = {
                    var all: [UInt8] = []
                    var buffers = [[UInt8](repeating: 0, count: 1000), [UInt8](repeating: 0, count: 7000)]
                    while true {
                        let n = try await receiver.value.receive(into: &buffers)
                        if n == 0 { return all }
                        all += buffers[0].prefix(n)
                        if n > 1000 { all += buffers[1].prefix(n - 1000) }
                    }
                }()
                try await sender.value.sendAll(pieces)
                try await sender.value.shutdown(.sending)
                let bytes = try await received
                #expect(bytes.count == content.count)
                #expect(bytes == content)
            }
        }

        @Test("more than 1,024 buffers: one message is refused by name, sendAll sends them in turns")
        func manyBuffers() async throws {
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let sender = Shared(pair.first)
                let receiver = Shared(pair.second)
                let pieces = (0..<1500).map { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)] }
                do {
                    _ = try await sender.value.send(pieces)
                    Issue.record("1,500 buffers went in one message")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument)
                    #expect(error.description.contains("sendmsg") && error.description.contains("1500"), "\(error)")
                }
                do {
                    try await sender.value.sendAll([[UInt8](), []])
                    Issue.record("sendAll of empty buffers was accepted")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument)
                }
                async let received = receive(atLeast: 3000, from: receiver.value)
                try await sender.value.sendAll(pieces)
                #expect(try await received == pieces.flatMap { $0 })
            }
        }

        @Test("three descriptors passed in one message arrive as the same files; untaken ones are closed")
        func passingDescriptors() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let a = pair.first, b = pair.second
                var files: [FileDescriptor] = []
                for name in ["one", "two", "three"] {
                    files.append(try FileDescriptor.open(
                        scratch.write(name, Array(name.utf8)), .readOnly, options: .closeOnExec))
                }
                defer { for file in files { try? file.close() } }
                #expect(try await a.send(Array("x".utf8), control: [.descriptors(files)]) == 1)
                var buffer = [UInt8](repeating: 0, count: 8)
                let message = try await b.receiveMessage(into: &buffer)
                #expect(message.count == 1 && buffer[0] == UInt8(ascii: "x"))
                #expect(!message.controlTruncated)
                #expect(message.controlMessages.isEmpty)
                #expect(message.descriptors.count == 3)
                let received = message.descriptors.take()
                #expect(message.descriptors.take().isEmpty)
                for (mine, theirs) in zip(files, received) {
                    #expect(try identity(of: mine) == identity(of: theirs))
                    #expect(fcntl(theirs.rawValue, F_GETFD) & FD_CLOEXEC != 0)
                    try theirs.close()
                }
                // Received and never taken: closed with the message, which the
                // suite's descriptor check sees.
                _ = try await a.send(Array("y".utf8), control: [.descriptors(files)])
                let ignored = try await b.receiveMessage(into: &buffer)
                #expect(ignored.descriptors.count == 3)
                try await a.close()
                try await b.close()
            }
        }

        @Test("control data larger than the room given is reported cut, and nothing leaks")
        func controlTruncated() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let a = pair.first, b = pair.second
                let file = try FileDescriptor.open(scratch.write("f", [1]), .readOnly, options: .closeOnExec)
                defer { try? file.close() }
                _ = try await a.send(Array("z".utf8), control: [.descriptors([file, file, file, file])])
                var buffer = [UInt8](repeating: 0, count: 8)
                // Room for the header and two descriptors only.
                let message = try await b.receiveMessage(into: &buffer, controlCapacity: 24)
                #expect(message.controlTruncated)
                #expect(message.descriptors.count <= 2)
                do {
                    _ = try await b.receiveMessage(into: &buffer, controlCapacity: -1)
                    Issue.record("a negative control capacity was accepted")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument)
                    #expect(error.description.contains("recvmsg"), "\(error)")
                }
                try await a.close()
                try await b.close()
            }
        }

        @Test("a UDP receiver that asks for the time-to-live reads the sender's, as a control message; one sent as a control message applies to its datagram alone")
        func timeToLive() async throws {
            try await RingActor.run { ring in
                let server = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                let client = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                try await server.setOption(.receiveTimeToLive, to: true)
                #expect(try await server.option(.receiveTimeToLive))
                try await client.setOption(.integer(level: Int32(IPPROTO_IP), name: IP_TTL), to: 33)
                _ = try await client.send(Array("ttl".utf8), to: server.localAddress!)
                var buffer = [UInt8](repeating: 0, count: 16)
                let message = try await server.receiveMessage(into: &buffer)
                #expect(message.count == 3)
                #expect(message.sender == client.localAddress)
                let ttl = message.controlMessages.first { $0.level == Int32(IPPROTO_IP) && $0.type == IP_TTL }
                #expect(ttl?.value(as: Int32.self) == 33, "\(message.controlMessages)")
                #expect(message.descriptors.count == 0)
                // A control message sent with one datagram overrides the
                // socket's option for that datagram alone (IP_TTL, an int).
                let once = ControlMessage(level: Int32(IPPROTO_IP), type: IP_TTL, value: Int32(7))
                _ = try await client.send(Array("once".utf8), to: server.localAddress!, control: [once])
                _ = try await client.send(Array("again".utf8), to: server.localAddress!)
                for (text, expected) in [("once", Int32(7)), ("again", 33)] {
                    let next = try await server.receiveMessage(into: &buffer)
                    #expect(Array(buffer[..<next.count]) == Array(text.utf8))
                    let value = next.controlMessages.first { $0.level == Int32(IPPROTO_IP) && $0.type == IP_TTL }
                    #expect(value?.value(as: Int32.self) == expected, "\(text): \(next.controlMessages)")
                }
                try await client.close()
                try await server.close()
            }
        }

        @Test(
            "sendZeroCopy of a datagram and of a vectored stream message: the bytes arrive exact",
            .requires(.sendMessageZeroCopy, "IORING_OP_SENDMSG_ZC (6.1+)"))
        func zeroCopyMessages() async throws {
            try await RingActor.run { ring in
                let server = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                let client = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                let datagram = pattern(count: 30_000, seed: 5)
                #expect(try await client.sendZeroCopy(datagram, to: server.localAddress!) == datagram.count)
                var buffer = [UInt8](repeating: 0, count: 65_536)
                let (count, _, _) = try await server.receive(into: &buffer)
                #expect(count == datagram.count)
                #expect(Array(buffer[..<count]) == datagram)
                try await client.close()
                try await server.close()

                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let sender = Shared(try await StreamConnection.connect(to: listener.localAddress, on: ring))
                let receiver = Shared(try await listener.accept())
                let pieces = [pattern(count: 40_000, seed: 6), pattern(count: 10, seed: 7), pattern(count: 25_000, seed: 8)]
                async let received = receive(atLeast: 65_010, from: receiver.value)
                var sent = 0
                let whole = pieces.flatMap { $0 }
                while sent < whole.count {
                    sent += try await sender.value.sendZeroCopy(sent == 0 ? pieces : [Array(whole[sent...])])
                }
                #expect(try await received == whole)
                try await listener.close()
            }
        }

        @Test("datagrams(): one multishot recvmsg serves 200 pings, each with its sender; a long one is cut and says so")
        func multishotDatagrams() async throws {
            try await RingActor.run { ring in
                let pool = try await ReceiveBufferPool(bufferCount: 8, bufferSize: 1024, on: ring)
                let server = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                let serverAddress = server.localAddress!
                let datagrams = server.datagrams(using: pool)
                let echo = Task {
                    var served = 0
                    for try await datagram in datagrams {
                        let reply = datagram.truncated ? Array("cut \(datagram.bytes.count)".utf8) : Array(datagram.bytes)
                        _ = try await server.send(reply.isEmpty ? [0] : reply, to: datagram.sender!)
                        served += 1
                    }
                    return served
                }
                let client = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                var reply = [UInt8](repeating: 0, count: 2048)
                for i in 0..<200 {
                    // Lockstep, so no datagram can find the socket's buffer full.
                    let ping = pattern(count: 1 + (i * 37) % 800, seed: UInt64(i))
                    _ = try await client.send(ping, to: serverAddress)
                    let (count, sender, _) = try await client.receive(into: &reply)
                    #expect(sender == serverAddress)
                    #expect(Array(reply[..<count]) == ping, "ping \(i)")
                }
                _ = try await client.send([UInt8](repeating: 1, count: 1500), to: serverAddress)
                let (count, _, _) = try await client.receive(into: &reply)
                #expect(String(decoding: reply[..<count], as: UTF8.self) == "cut \(1024 - ReceivedDatagrams.headerSize)")
                echo.cancel()
                do {
                    _ = try await echo.value
                    Issue.record("the sequence ended without an error")
                } catch is CancellationError {}
                // Every datagram was dropped by its consumer: the buffers are back.
                #expect(pool.buffersInUse == 0)
                try await client.close()
            }
        }

        @Test("datagrams(idleTimeout:) ends with timedOut when nothing arrives; vectored sendAll(timeout:) to a peer that never reads times out")
        func timeouts() async throws {
            try await RingActor.run { ring in
                let server = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                do {
                    for try await _ in server.datagrams(idleTimeout: .milliseconds(20)) {
                        Issue.record("a datagram arrived from nowhere")
                    }
                    Issue.record("the sequence ended without an error")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut, "\(error)")
                }
                try await server.close()
                let pair = try StreamConnection.pair(on: ring)
                let sender = pair.first, silent = pair.second
                let big = [[UInt8](repeating: 1, count: 4 << 20), [UInt8](repeating: 2, count: 4 << 20)]
                do {
                    try await sender.sendAll(big, timeout: .milliseconds(50))
                    Issue.record("8 MiB went into a socket nobody reads")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut, "\(error)")
                    #expect(error.operation == .sendMessage)
                }
                try await sender.close()
                try await silent.close()
            }
        }

        @Test("a waiting datagrams() sequence ends with ringShutDown when its ring shuts down")
        func datagramsEndAtShutdown() async throws {
            let ring = try RingActor()
            var consumer: Task<UringError.Kind?, Never>? = nil
            do {
                let server = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                let address = server.localAddress!
                let datagrams = server.datagrams()
                let received = Shared(Atomic<Int>(0))
                consumer = Task {
                    do {
                        for try await _ in datagrams { received.value.add(1, ordering: .relaxed) }
                        return nil
                    } catch let error as UringError {
                        return error.kind
                    } catch {
                        return nil  // not a UringError: the expectation below fails
                    }
                }
                // Datagrams until one is through, so the request is surely
                // armed (at most 400, in case the sequence failed instead).
                let client = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                var tries = 0
                while received.value.load(ordering: .relaxed) == 0 && tries < 400 && !Task.isCancelled {
                    _ = try await client.send([7], to: address)
                    try await ring.sleep(for: .milliseconds(5))
                    tries += 1
                }
                #expect(received.value.load(ordering: .relaxed) > 0, "no datagram arrived in 400 tries")
                try await client.close()
                try await server.close()
            } catch {
                Issue.record("\(error)")
            }
            // Shut down whatever happened above, so no ring thread outlives the test.
            await ring.shutdown()
            let kind = await consumer?.value
            #expect(kind == .ringShutDown, "ended with \(String(describing: kind))")
        }

        @Test("datagrams() over a pool too small for the header fails by name, leaking nothing")
        func datagramPoolTooSmall() async throws {
            try await RingActor.run { ring in
                let pool = try await ReceiveBufferPool(bufferCount: 2, bufferSize: 128, on: ring)
                let server = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                do {
                    for try await _ in server.datagrams(using: pool) {}
                    Issue.record("a 128-byte pool was accepted")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument)
                    #expect(error.description.contains("recvmsg") && error.description.contains("127.0.0.1"), "\(error)")
                }
                try await server.close()
            }
        }
    }
}

/// Bytes from `connection` until at least `count` have come or the peer
/// closes its side.
private func receive(atLeast count: Int, from connection: borrowing StreamConnection) async throws -> [UInt8] {
    var all: [UInt8] = []
    while all.count < count {
        let piece = try await connection.receive(maximumCount: 65_536)
        if piece.isEmpty { break }
        all += piece
    }
    return all
}

/// The device and inode a descriptor refers to.
private func identity(of descriptor: FileDescriptor) throws -> [UInt64] {
    var info = stat()
    guard fstat(descriptor.rawValue, &info) == 0 else { throw Errno(rawValue: errno) }
    return [UInt64(info.st_dev), UInt64(info.st_ino)]
}
