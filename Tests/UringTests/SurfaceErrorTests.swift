import Glibc
import SystemPackage
import Testing

@testable import Uring

/// The failures of the everyday surface (directories, trees, datagrams,
/// zero-copy messages, socket options) and the addresses every socket
/// reports: each failure a `UringError` naming what it was about.
extension AllTests {
    @Suite("Everyday surface: errors, addresses and pool buffers", .checksDescriptorLeaks)
    struct SurfaceErrorTests {
        @Test("opening a directory that is missing, or is a file, names the path; so does listing it")
        func directoryErrors() async throws {
            let scratch = Scratch()
            let file = scratch.write("plain", [1, 2, 3])
            try await RingActor.run { ring in
                let missing = scratch.file("missing")
                await expectFailure(.noSuchFileOrDirectory, path: missing) {
                    _ = try await Directory.open(missing, on: ring)
                }
                await expectFailure(.notDirectory, path: file) {
                    _ = try await Directory.open(file, on: ring)
                }
                // A directory removed after it was opened cannot be listed:
                // the kernel answers ENOENT, and the error names the path.
                let gone = scratch.file("gone")
                mkdir(gone.string, 0o755)
                let directory = try await Directory.open(gone, on: ring)
                rmdir(gone.string)
                await expectFailure(.noSuchFileOrDirectory, path: gone) {
                    for try await _ in directory.entries() {}
                }
                try await directory.close()
            }
        }

        @Test("copying a tree into itself is refused before anything is created")
        func copyTreeIntoItself() async throws {
            let scratch = Scratch()
            mkdir(scratch.path + "/source", 0o755)
            _ = scratch.write("source/a", [1])
            try await RingActor.run { ring in
                let inside = FilePath(scratch.path + "/source/copy")
                await expectFailure(.invalidArgument, path: inside) {
                    _ = try await ring.copyTree(from: FilePath(scratch.path + "/source"), to: inside)
                }
                #expect(access(inside.string, F_OK) != 0, "nothing was created")
            }
        }

        @Test("a Unix datagram to a path where no socket is bound fails, naming that path")
        func unixDatagramToNowhere() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let here = try SocketAddress(unixPath: scratch.file("here.sock").string)
                let nowhere = try SocketAddress(unixPath: scratch.file("nowhere.sock").string)
                let socket = try await DatagramSocket.bind(to: here, on: ring)
                do {
                    _ = try await socket.send(Array("ping".utf8), to: nowhere)
                    Issue.record("sent to a path with no socket")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory, "\(error)")
                    #expect(error.address == nowhere, "\(error)")
                    #expect(error.description.contains(scratch.path + "/nowhere.sock"), "\(error)")
                }
                try await socket.close()
            }
        }

        @Test(
            "a zero-copy message on a connection whose sending side is shut fails with EPIPE, naming the peer",
            .requires(.sendMessageZeroCopy, "IORING_OP_SENDMSG_ZC (6.1+)"))
        func zeroCopyMessageAfterShutdown() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let sender = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                let receiver = try await listener.accept()
                try await sender.shutdown(.sending)
                do {
                    _ = try await sender.sendZeroCopy([pattern(count: 1000, seed: 1), pattern(count: 10, seed: 2)])
                    Issue.record("sent after shutting the sending side")
                } catch let error as UringError {
                    #expect(error.errno == .brokenPipe, "\(error)")
                    #expect(error.address == listener.localAddress, "\(error)")
                }
                try await sender.close()
                try await receiver.close()
                try await listener.close()
            }
        }

        @Test("a connection knows both its addresses, and they mirror its peer's")
        func connectionAddresses() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                #expect(listener.localAddress.port != 0, "the kernel's port is reported")
                let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                let server = try await listener.accept()
                #expect(client.remoteAddress == listener.localAddress)
                #expect(server.localAddress == listener.localAddress)
                #expect(client.localAddress != nil)
                #expect(server.remoteAddress == client.localAddress)
                try await client.close()
                try await server.close()
                try await listener.close()
            }
        }

        @Test(
            "IPv6-only reads back as set by the bind, cannot change after it, and the error says which option",
            .enabled(if: ipv6LoopbackWorks(), "this machine cannot bind the IPv6 loopback address"))
        func ipv6OnlyOption() async throws {
            try await RingActor.run { ring in
                // Bound to one IPv6 address (not the wildcard, not a mapped
                // IPv4 one), a socket can only ever see IPv6, and the kernel
                // marks it so whatever the system's default.
                let listener = try await StreamListener.bind(to: SocketAddress(ip: "::1", port: 0), on: ring)
                #expect(try await listener.option(.ipv6Only) == true)
                do {
                    try await listener.setOption(.ipv6Only, to: false)
                    Issue.record("changed IPV6_V6ONLY on a bound socket")
                } catch let error as UringError {
                    #expect(error.errno == .invalidArgument, "\(error)")
                    #expect(error.description.contains("IPV6_V6ONLY"), "\(error)")
                }
                try await listener.close()
            }
        }

        @Test("a buffer from the registered pool carries a file's page over a socket and receives it back")
        func registeredBufferOverSocket() async throws {
            let scratch = Scratch()
            let content = pattern(count: 4096, seed: 21)
            let path = scratch.write("page", content)
            try await RingActor.run { ring in
                let buffers = try await ring.registerBuffers(count: 2, size: 4096)
                let pair = try StreamConnection.pair(on: ring)
                let a = pair.first, b = pair.second
                let file = try await File.open(path, on: ring)
                var outgoing = try await buffers.next()
                #expect(try await file.read(into: &outgoing, at: 0) == 4096)
                try await a.sendAll(outgoing)
                var incoming = try await buffers.next()
                var received = 0
                while received < 4096 {
                    // A stream may deliver the page in pieces; each receive
                    // fills the buffer from its start, so keep what came.
                    let n = try await b.receive(into: &incoming)
                    if n == 0 { break }
                    #expect(incoming.copyBytes(count: n) == Array(content[received..<(received + n)]))
                    received += n
                }
                #expect(received == 4096)
                try await file.close()
                try await a.close()
                try await b.close()
            }
        }

        @Test("a send buffer size set is at least what was asked (the kernel doubles it for its own use)")
        func sendBufferSize() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let client = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                try await client.setOption(.sendBufferSize, to: 64 * 1024)
                #expect(try await client.option(.sendBufferSize) >= 64 * 1024)
                try await client.close()
                try await listener.close()
            }
        }
    }
}

/// Runs `body`, which must fail with a `UringError` of `errno` naming `path`.
private nonisolated(nonsending) func expectFailure(
    _ errno: Errno, path: FilePath, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async {
    do {
        try await body()
        Issue.record("no error; expected \(errno) for \(path)", sourceLocation: sourceLocation)
    } catch let error as UringError {
        #expect(error.errno == errno, "\(error)", sourceLocation: sourceLocation)
        #expect(error.path == path, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("not a UringError: \(error)", sourceLocation: sourceLocation)
    }
}

/// Whether a plain socket can bind `::1` here.
private func ipv6LoopbackWorks() -> Bool {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    address.sin6_addr = in6addr_loopback
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
        }
    }
}
