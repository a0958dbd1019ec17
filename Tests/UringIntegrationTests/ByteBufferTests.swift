#if NIO
import Glibc
import NIOCore
import SystemPackage
import Testing
import Uring
import UringNIO
import UringTesting

extension Integrations {
    @Suite("UringNIO: ByteBuffer on sockets and files", .ring)
    struct ByteBufferTests {
        @Test("a ByteBuffer is sent as it is, and received chunks come back as ByteBuffers, held ones unchanged")
        func sendAndReceiveChunks() async throws {
            let ring = try TestRing.current
            let pair = try StreamConnection.pair(on: ring)
            let bytes = pattern(count: 100_000)
            var outgoing = ByteBufferAllocator().buffer(capacity: bytes.count + 10)
            outgoing.writeString("skip")
            outgoing.writeBytes(bytes)
            outgoing.moveReaderIndex(forwardBy: 4)  // only the readable bytes go
            try await pair.first.sendAll(outgoing)
            try await pair.first.shutdown(.sending)
            // Every buffer is kept: the sequence reuses a buffer's storage
            // only once nobody else holds it, so these must stay as they came.
            var held: [ByteBuffer] = []
            for try await buffer in pair.second.received().byteBuffers() {
                held.append(buffer)
            }
            #expect(held.flatMap { Array($0.readableBytesView) } == bytes)

            // A consumer that lets each go gets the same bytes.
            try await pair.second.sendAll(outgoing)
            try await pair.second.shutdown(.sending)
            var received: [UInt8] = []
            for try await buffer in pair.first.received().byteBuffers() {
                received += buffer.readableBytesView
            }
            #expect(received == bytes)
        }

        @Test("receiving into a ByteBuffer appends after its writer index, in its own storage")
        func receiveAppends() async throws {
            let ring = try TestRing.current
            let pair = try StreamConnection.pair(on: ring)
            var buffer = ByteBufferAllocator().buffer(capacity: 4096)
            buffer.writeString("head:")
            let storage = buffer.withVeryUnsafeBytes { $0.baseAddress }
            try await pair.first.sendAll(Array("hello".utf8))
            let n = try await pair.second.receive(into: &buffer, maximumCount: 1024)
            #expect(n == 5)
            #expect(buffer.readString(length: buffer.readableBytes) == "head:hello")
            // The kernel wrote into the buffer's storage: nothing was copied
            // or reallocated.
            #expect(buffer.withVeryUnsafeBytes { $0.baseAddress } == storage)

            try await pair.first.shutdown(.sending)
            #expect(try await pair.second.receiveBuffer() == nil, "the peer's close ends receiving")
        }

        @Test("receiving into a ByteBuffer that shares its storage leaves the other copy as it was")
        func receiveIntoSharedStorage() async throws {
            let ring = try TestRing.current
            let pair = try StreamConnection.pair(on: ring)
            var buffer = ByteBufferAllocator().buffer(capacity: 64)
            buffer.writeString("kept:")
            let other = buffer  // shares the storage
            try await pair.first.sendAll(Array("new".utf8))
            _ = try await pair.second.receive(into: &buffer, maximumCount: 64)
            #expect(buffer.getString(at: buffer.readerIndex, length: buffer.readableBytes) == "kept:new")
            #expect(other.getString(at: other.readerIndex, length: other.readableBytes) == "kept:")
            #expect(other.writerIndex == 5)
            // The kernel wrote into storage of the receiving buffer's own.
            let storages = (buffer.withVeryUnsafeBytes { $0.baseAddress }, other.withVeryUnsafeBytes { $0.baseAddress })
            #expect(storages.0 != storages.1)
        }

        @Test("files: a ByteBuffer written, read back into one, and a size limit that names the path")
        func files() async throws {
            let ring = try TestRing.current
            let path = FilePath("/tmp/uring-nio-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            defer { _ = unlink(path.string) }
            let file = try await File.open(path, .readWrite, options: [.create, .truncate], permissions: .ownerReadWrite, on: ring)
            let bytes = pattern(count: 200_000, seed: 3)
            var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            try await file.writeAll(buffer, at: 0)

            let all = try await file.readToEnd(allocator: ByteBufferAllocator())
            #expect(Array(all.readableBytesView) == bytes)

            var part = ByteBufferAllocator().buffer(capacity: 16)
            part.writeString(">")
            #expect(try await file.read(into: &part, maximumCount: 4, at: 10) == 4)
            #expect(Array(part.readableBytesView) == [UInt8(ascii: ">")] + bytes[10..<14])
            #expect(try await file.read(into: &part, maximumCount: 4, at: Int64(bytes.count)) == 0)

            do {
                _ = try await file.readToEnd(maximumSize: 1000, allocator: ByteBufferAllocator())
                Issue.record("a file over maximumSize was read")
            } catch let error as UringError {
                #expect(error.errno == .fileTooLarge)
                #expect(error.path == path)
            }
            try await file.close()
        }

        @Test("datagrams: one received into a ByteBuffer, with its sender")
        func datagrams() async throws {
            let ring = try TestRing.current
            let receiver = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
            let sender = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
            var message = ByteBufferAllocator().buffer(capacity: 16)
            message.writeString("datagram")
            _ = try await sender.send(message, to: #require(receiver.localAddress))
            var buffer = ByteBuffer()
            let result = try await receiver.receive(into: &buffer, maximumCount: 64)
            #expect(result.count == 8)
            #expect(result.truncated == false)
            #expect(result.sender == sender.localAddress)
            #expect(buffer.readString(length: buffer.readableBytes) == "datagram")
            try await sender.close()
            try await receiver.close()
        }
    }
}
#endif
