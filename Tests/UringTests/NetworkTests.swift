import Foundation
import Glibc
import SystemPackage
import Testing
@testable import Uring

/// Serves echo on `listener` until the task is cancelled: one child task per
/// connection, multishot accept and multishot receive.
func serveEcho(_ connections: IncomingConnections, pool: ReceiveBufferPool? = nil) async throws {
    try await withThrowingDiscardingTaskGroup { group in
        for try await incoming in connections {
            group.addTask {
                let connection = try incoming.take()
                for try await chunk in connection.received(using: pool) {
                    try await connection.sendAll(chunk)
                }
                try await connection.shutdown(.sending)
            }
        }
    }
}

/// Sends `bytes` on a new connection, half-closes, and returns all it reads back.
func echoRoundTrip(_ bytes: [UInt8], to address: SocketAddress, on ring: RingActor) async throws -> [UInt8] {
    let connection = Shared(try await StreamConnection.connect(to: address, on: ring))
    async let sent: Void = {
        try await connection.value.sendAll(bytes)
        try await connection.value.shutdown(.sending)
    }()
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let n = try await connection.value.receive(into: &buffer)
        if n == 0 { break }
        received += buffer[..<n]
    }
    try await sent
    return received
}

/// A noncopyable value shared by reference, so tasks can use it together
/// (escaping closures cannot capture noncopyable values).
final class Shared<Value: ~Copyable & Sendable>: Sendable {
    let value: Value
    init(_ value: consuming Value) { self.value = value }
}

/// Runs a Python 3 program (a peer this project did not write) and returns
/// its status and output, without blocking the caller's executor.
func python(_ program: String, _ arguments: [String] = []) async throws -> (status: Int32, stdout: String, stderr: String) {
    let result = try await Task.detached {
        try run("/usr/bin/env", ["python3", "-c", program] + arguments)
    }.value
    return (result.status, String(decoding: result.stdout, as: UTF8.self), String(decoding: result.stderr, as: UTF8.self))
}

extension AllTests {
    @Suite("Networking", .checksDescriptorLeaks)
    struct NetworkTests {
        @Test("a Python client's 1 MiB comes back byte for byte from the echo server")
        func echoWithPython() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let port = listener.localAddress.port!
                let server = { let connections = listener.connections; return Task { try await serveEcho(connections) } }()
                let client = """
                    import socket, sys, hashlib
                    data = bytes((i * 7 + 3) % 251 for i in range(1 << 20))
                    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                    got = bytearray()
                    while True:
                        chunk = s.recv(65536)
                        if not chunk: break
                        got += chunk
                    print(len(got), hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest())
                    """
                let result = try await python(client, ["\(port)"])
                server.cancel()
                _ = try? await server.value
                #expect(result.status == 0, "python: \(result.stderr)")
                #expect(result.stdout == "1048576 True\n")
                try await listener.close()
            }
        }

        // 16 KiB each: with 64 KiB this took 52-58 s under the sanitizers.
        // It needs about 2,100 descriptors. It must not run near the limit:
        // when libdispatch's worker monitor cannot open /proc/<tid>/stat
        // (EMFILE), it stops the process with a trap in
        // _dispatch_workq_monitor_pools. That was the silent SIGILL seen in
        // one 6.1 guest run, whose soft limit is 1,024.
        @Test(
            "1,000 concurrent connections each echo 16 KiB with matching checksums",
            .enabled(if: DescriptorLimit.hard >= 2_600, "needs 2,600 descriptors; RLIMIT_NOFILE's hard limit is \(DescriptorLimit.hard)"))
        func thousandConnections() async throws {
            let saved = DescriptorLimit.raiseToHard()
            defer { DescriptorLimit.restore(saved) }
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), backlog: 4096, on: ring)
                let address = listener.localAddress
                let server = { let connections = listener.connections; return Task { try await serveEcho(connections) } }()
                let mismatches = try await withThrowingTaskGroup(of: Int.self) { group -> Int in
                    for i in 0..<1_000 {
                        group.addTask {
                            let bytes = pattern(count: 16 * 1024, seed: UInt64(i + 1))
                            let back = try await echoRoundTrip(bytes, to: address, on: ring)
                            return Checksum.of(back) == Checksum.of(bytes) && back.count == bytes.count ? 0 : 1
                        }
                    }
                    var total = 0
                    for try await mismatch in group { total += mismatch }
                    return total
                }
                server.cancel()
                _ = try? await server.value
                #expect(mismatches == 0)
                try await listener.close()
            }
        }

        @Test("connecting to a closed port throws ECONNREFUSED naming the address")
        func connectionRefused() async throws {
            try await RingActor.run { ring in
                // A port that was just free: bind, note it, close.
                let probe = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let address = probe.localAddress
                try await probe.close()
                do {
                    _ = try await StreamConnection.connect(to: address, on: ring)
                    Issue.record("connect succeeded")
                } catch let error as UringError {
                    #expect(error.errno == .connectionRefused)
                    #expect(error.operation == .connect)
                    #expect(!error.isPeerGone)
                    #expect(error.description == "connect \(address): Connection refused (ECONNREFUSED)")
                }
            }
        }

        @Test("binding a port in use throws EADDRINUSE naming the address")
        func addressInUse() async throws {
            try await RingActor.run { ring in
                let first = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                do {
                    _ = try await StreamListener.bind(to: first.localAddress, on: ring)
                    Issue.record("second bind succeeded")
                } catch let error as UringError {
                    #expect(error.errno == .addressInUse)
                    #expect(error.operation == .bind)
                    #expect(error.description.hasPrefix("bind \(first.localAddress): "))
                    #expect(error.description.hasSuffix("(EADDRINUSE)"))
                }
                try await first.close()
            }
        }

        @Test("a peer that resets mid-stream ends the receive sequence with ECONNRESET")
        func peerReset() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                let server = try await listener.accept()
                try await client.sendAll(Array("partial".utf8))
                // SO_LINGER with a zero timeout turns close into a reset.
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                #expect(setsockopt(client.descriptor.rawValue, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size)) == 0)
                try await client.close()
                var received: [UInt8] = []
                do {
                    for try await chunk in server.received() { received += chunk }
                    Issue.record("the sequence ended without an error")
                } catch let error as UringError {
                    #expect(error.errno == .connectionReset)
                    #expect(error.operation == .receive)
                    #expect(error.isPeerGone)
                }
                #expect(received.isEmpty || received == Array("partial".utf8))
                try await server.close()
                try await listener.close()
            }
        }

        @Test("half-close: the server reads to end of stream, then still replies")
        func halfClose() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                let server = try await listener.accept()
                try await client.sendAll(pattern(count: 100_000, seed: 9))
                try await client.shutdown(.sending)
                var total = 0
                for try await chunk in server.received() { total += chunk.count }
                #expect(total == 100_000)
                try await server.sendAll(Array("done".utf8))
                try await server.close()
                let reply = try await client.receive(maximumCount: 16)
                #expect(reply == Array("done".utf8))
                #expect(try await client.receive(maximumCount: 16).isEmpty)
                try await client.close()
                try await listener.close()
            }
        }

        @Test("UDP datagrams keep their boundaries, over IPv4 and IPv6")
        func datagrams() async throws {
            try await RingActor.run { ring in
                for host in ["127.0.0.1", "::1"] {
                    let server = try await DatagramSocket.bind(to: SocketAddress(ip: host, port: 0), on: ring)
                    let client = try await DatagramSocket.bind(to: SocketAddress(ip: host, port: 0), on: ring)
                    let serverAddress = server.localAddress!
                    let sizes = [1, 100, 1000, 0]
                    for size in sizes where size > 0 {
                        _ = try await client.send(pattern(count: size, seed: UInt64(size)), to: serverAddress)
                    }
                    var buffer = [UInt8](repeating: 0, count: 2048)
                    for size in sizes where size > 0 {
                        let (count, sender, truncated) = try await server.receive(into: &buffer)
                        #expect(count == size)
                        #expect(!truncated)
                        #expect(Array(buffer[..<count]) == pattern(count: size, seed: UInt64(size)))
                        #expect(sender == client.localAddress)
                    }
                    try await client.close()
                    try await server.close()
                }
            }
        }

        @Test("SCM_RIGHTS passes an open file over a Unix socket")
        func passDescriptor() async throws {
            let scratch = Scratch()
            let path = scratch.write("passed", Array("through the socket".utf8))
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let first = pair.first
                let second = pair.second
                let file = try await File.open(path, on: ring)
                try await first.sendDescriptor(file.descriptor, with: [UInt8(1)])
                try await file.close()
                var byte = [UInt8](repeating: 0, count: 1)
                let (count, received) = try await second.receiveDescriptor(into: &byte)
                #expect(count == 1 && byte == [1])
                let descriptor = try #require(received)
                let passed = File(adopting: descriptor, on: ring)
                var contents = [UInt8](repeating: 0, count: 64)
                let n = try await passed.read(into: &contents, at: 0)
                #expect(Array(contents[..<n]) == Array("through the socket".utf8))
                try await passed.close()
                try await first.close()
                try await second.close()
            }
        }

        @Test("a slow consumer exhausts a 4-buffer pool: the kernel waits, nothing is lost or reordered")
        func bufferExhaustion() async throws {
            try await RingActor.run { ring in
                let pool = try await ReceiveBufferPool(bufferCount: 4, bufferSize: 1024, perConsumerLimit: 4, on: ring)
                let pair = try StreamConnection.pair(on: ring)
                let writer = Shared(pair.first)
                let reader = pair.second
                let bytes = pattern(count: 512 * 1024, seed: 77)
                let sender = Task {
                    try await writer.value.sendAll(bytes)
                    try await writer.value.shutdown(.sending)
                }
                var received = Checksum()
                var total = 0
                var held: [ReceivedBytes] = []
                var mostInUse = 0
                for try await chunk in reader.received(using: pool) {
                    // Hold up to four chunks, so the pool runs dry while the
                    // sender still has data; then let them go.
                    held.append(chunk)
                    mostInUse = max(mostInUse, pool.buffersInUse)
                    if held.count == 4 {
                        for chunk in held { received.update(chunk); total += chunk.count }
                        held.removeAll()
                        try await Task.sleep(for: .milliseconds(1))
                    }
                }
                for chunk in held { received.update(chunk); total += chunk.count }
                held.removeAll()
                try await sender.value
                #expect(total == bytes.count)
                #expect(received.value == Checksum.of(bytes))
                #expect(mostInUse == 4, "the pool never ran dry, so exhaustion was not exercised")
                #expect(pool.buffersInUse == 0)
                try await reader.close()
            }
        }

        @Test("a multishot accept stopped early: later connections and the listener close, no descriptor leaks")
        func acceptStoppedEarly() async throws {
            // Earlier tests' rings close their eventfds as their threads end;
            // one closing mid-test would throw the count off.
            await waitForRingThreadsToEnd()
            try await RingActor.run { ring in
                let before = openDescriptorCount()
                do {
                    let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                    let address = listener.localAddress
                    let first = try await StreamConnection.connect(to: address, on: ring)
                    for try await incoming in listener.connections {
                        let connection = try incoming.take()
                        #expect(throws: UringError.self) { _ = try incoming.take() }
                        try await connection.close()
                        break
                    }
                    // Accepted by the kernel after iteration stopped: never taken.
                    let second = try await StreamConnection.connect(to: address, on: ring)
                    let third = try await StreamConnection.connect(to: address, on: ring)
                    try await listener.close()
                    try await first.close()
                    try await second.close()
                    try await third.close()
                }
                // Late completions release their descriptors on the ring thread.
                for _ in 0..<100 where openDescriptorCount() != before {
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(openDescriptorCount() == before)
            }
        }

        @Test("closing the listener ends its connections sequence normally")
        func closingListenerEndsSequence() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let connections = listener.connections
                let acceptor = Task {
                    var count = 0
                    for try await _ in connections { count += 1 }
                    return count
                }
                let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                while ring.statistics.inFlight == 0 && !Task.isCancelled { await Task.yield() }
                try await listener.close()
                let accepted = try await acceptor.value
                #expect(accepted <= 1)
                try await client.close()
            }
        }

        @Test("stopping a server with open connections closes them all")
        func stoppingServerClosesConnections() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let address = listener.localAddress
                let server = { let connections = listener.connections; return Task { try await serveEcho(connections) } }()
                // Arrays cannot hold noncopyable values: keep the descriptors.
                var clients: [FileDescriptor] = []
                for _ in 0..<20 {
                    let client = try await StreamConnection.connect(to: address, on: ring)
                    try await client.sendAll([UInt8(7)])
                    #expect(try await client.receive(maximumCount: 1) == [7])
                    clients.append(try client.takeDescriptor())
                }
                server.cancel()
                _ = try? await server.value
                // Every client now reads end of stream (or a reset).
                var closed = 0
                while let descriptor = clients.popLast() {
                    let client = StreamConnection(adopting: descriptor, on: ring)
                    do {
                        if try await client.receive(maximumCount: 1).isEmpty { closed += 1 }
                    } catch let error as UringError where error.errno == .connectionReset {
                        closed += 1
                    }
                    try await client.close()
                }
                #expect(closed == 20)
                try await listener.close()
            }
        }

        @Test("TCP_NODELAY set through the ring (a socket command on 6.7+) reads back with getsockopt")
        func socketOption() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                let fd = client.descriptor.rawValue
                func noDelay() -> Int32 {
                    var value: Int32 = -1
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    _ = getsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &length)
                    return value
                }
                #expect(noDelay() == 0)
                let before = ring.statistics.submitted
                try await client.setNoDelay()
                #expect(noDelay() == 1)
                if ring.isSupported(.socketOption) {
                    #expect(ring.statistics.submitted > before, "the option did not go through the ring")
                }
                try await client.setNoDelay(false)
                #expect(noDelay() == 0)
                try await client.close()
                try await listener.close()
            }
        }

        @Test("addresses parse and print: IPv4, IPv6, Unix; bad text is a typed error")
        func addresses() throws {
            #expect(try SocketAddress(ip: "10.1.2.3", port: 80).description == "10.1.2.3:80")
            #expect(try SocketAddress(ip: "::1", port: 8080).description == "[::1]:8080")
            #expect(try SocketAddress(unixPath: "/tmp/x.sock").description == "unix:/tmp/x.sock")
            #expect(SocketAddress.loopback(port: 1).family == .ipv4)
            #expect(try SocketAddress(ip: "::", port: 0).family == .ipv6)
            #expect(throws: UringError.self) { try SocketAddress(ip: "300.1.1.1", port: 1) }
            #expect(throws: UringError.self) { try SocketAddress(unixPath: String(repeating: "x", count: 200)) }
        }
    }
}
