import Glibc
import Testing

@testable import Uring

extension AllTests {
    /// The public API's shapes that the newcomer's trial asked for: results
    /// that are descriptors, moving a file between tasks, scoped access to a
    /// raw descriptor, and registered files that do what files do.
    @Suite("API shape", .checksDescriptorLeaks)
    struct ApiShapeTests {
        @Test("withTimeout hands back a noncopyable result: an opened file, a connection")
        func timeoutReturnsDescriptors() async throws {
            let scratch = Scratch()
            let path = scratch.write("f", [1, 2, 3])
            try await RingActor.run { ring in
                let file = try await withTimeout(.seconds(30)) { try await File.open(path, on: ring) }
                #expect(try await file.metadata().size == 3)
                try await file.close()
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let connection = try await withDeadline(.now + .seconds(30)) {
                    try await StreamConnection.connect(to: listener.localAddress, on: ring)
                }
                let accepted = try await listener.accept()
                try await connection.sendAll([7])
                var byte = [UInt8](repeating: 0, count: 1)
                #expect(try await accepted.receive(into: &byte) == 1 && byte == [7])
                try await connection.close()
                try await accepted.close()
                try await listener.close()
            }
        }

        @Test("a file moves into a child task through handOff, once; an unclaimed one is closed")
        func fileHandOff() async throws {
            let scratch = Scratch()
            let path = scratch.write("f", pattern(count: 10))
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                let handoff = file.handOff()
                let size = try await withThrowingTaskGroup(of: Int64.self) { group in
                    group.addTask {
                        let file = try handoff.take()
                        let size = try await file.metadata().size
                        try await file.close()
                        return size
                    }
                    return try await group.next() ?? -1
                }
                #expect(size == 10)
                #expect(throws: UringError.self, "a second take") { _ = try handoff.take() }
                #expect(scratch.openDescriptors == 0)

                let unclaimed = try await File.open(path, on: ring).handOff()
                #expect(scratch.openDescriptors == 1)
                _ = consume unclaimed
                #expect(scratch.openDescriptors == 0, "dropping the package closes the file")
            }
        }

        @Test("ownership forms read alike: a received buffer comes back with its count")
        func ownershipReceive() async throws {
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let a = pair.first, b = pair.second
                let sent = await a.sendAll(consuming: [UInt8]("hi".utf8))
                #expect(try sent.count == 2)
                let received = await b.receive(consuming: [UInt8](repeating: 0, count: 16))
                #expect(try received.count == 2)
                #expect(Array(received.buffer.prefix(2)) == Array("hi".utf8))
                try await a.close()
                try await b.close()
            }
        }

        @Test("withUnsafeDescriptor lends the descriptor to a system call")
        func unsafeDescriptor() async throws {
            let scratch = Scratch()
            let path = scratch.write("f", pattern(count: 42))
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                let size = file.withUnsafeDescriptor { descriptor -> Int in
                    var info = stat()
                    return fstat(descriptor.rawValue, &info) == 0 ? Int(info.st_size) : -1
                }
                #expect(size == 42)
                try await file.close()
            }
        }

        @Test("a registered file writes all, reads all, syncs its data")
        func registeredFileParity() async throws {
            let scratch = Scratch()
            let path = scratch.file("r")
            try await RingActor.run { ring in
                try await ring.registerFiles(capacity: 4)
                let file = try await RegisteredFile.open(path, .readWrite, options: [.create], on: ring)
                let content = pattern(count: 100_000, seed: 3)
                try await file.writeAll(content, at: 0)
                try await file.syncData()
                var back = [UInt8](repeating: 0, count: 120_000)
                #expect(try await file.readAll(into: &back, at: 0) == 100_000)
                #expect(Array(back[..<100_000]) == content)
                try await file.close()
                try await ring.unregisterFiles()
            }
        }

        @Test(
            "a registered file's metadata, through a descriptor installed for the call",
            .requires(.installDescriptor, "IORING_OP_FIXED_FD_INSTALL (6.8+)"))
        func registeredFileMetadata() async throws {
            let scratch = Scratch()
            let path = scratch.write("r", pattern(count: 1234))
            try await RingActor.run { ring in
                try await ring.registerFiles(capacity: 4)
                let file = try await RegisteredFile.open(path, on: ring)
                #expect(try await file.metadata().size == 1234)
                #expect(scratch.openDescriptors == 0, "the installed descriptor is closed again")
                try await file.close()
                try await ring.unregisterFiles()
            }
        }
    }
}
