import Foundation
import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Links, size and advice", .checksDescriptorLeaks)
    struct LinkTests {
        @Test("symbolic links: created as given, read back (long targets too), and errors naming the path")
        func symbolicLinks() async throws {
            let scratch = Scratch()
            scratch.write("target.txt", [1, 2, 3])
            try await RingActor.run { ring in
                let link = scratch.file("link")
                try await ring.createSymbolicLink(at: link, pointingTo: "target.txt")
                #expect(try await ring.destinationOfSymbolicLink(at: link) == "target.txt")
                #expect(try await ring.metadata(at: link, followingSymlinks: false).type == .symbolicLink)
                #expect(try await ring.metadata(at: link).size == 3)
                // A target longer than the first buffer, and one that does not exist.
                let long = FilePath(String(repeating: "d/", count: 300) + "end")
                try await ring.createSymbolicLink(at: scratch.file("long"), pointingTo: long)
                #expect(try await ring.destinationOfSymbolicLink(at: scratch.file("long")) == long)
                do {
                    try await ring.createSymbolicLink(at: link, pointingTo: "elsewhere")
                    Issue.record("replaced an existing link")
                } catch let error as UringError {
                    #expect(error.errno == .fileExists)
                    #expect(error.operation == .createSymbolicLink)
                    #expect(error.description.contains(link.string), "\(error)")
                }
                do {
                    _ = try await ring.destinationOfSymbolicLink(at: scratch.file("target.txt"))
                    Issue.record("read a regular file as a link")
                } catch let error as UringError {
                    #expect(error.errno == .invalidArgument)
                    #expect(error.description.contains("target.txt"), "\(error)")
                }
            }
        }

        @Test("hard links: a second name for the same file; errors name the new path")
        func hardLinks() async throws {
            let scratch = Scratch()
            scratch.write("a", [7, 7])
            try await RingActor.run { ring in
                try await ring.createLink(at: scratch.file("b"), to: scratch.file("a"))
                let a = try await ring.metadata(at: scratch.file("a"))
                let b = try await ring.metadata(at: scratch.file("b"))
                #expect(a.inode == b.inode)
                #expect(b.linkCount == 2)
                do {
                    try await ring.createLink(at: scratch.file("c"), to: scratch.file("missing"))
                    Issue.record("linked a missing file")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory)
                    #expect(error.description.contains(scratch.path + "/c"), "\(error)")
                }
            }
        }

        @Test("truncate cuts and extends with zeros, through the ring or (forced) the system call", arguments: [false, true])
        func truncate(forcedFallback: Bool) async throws {
            let scratch = Scratch()
            let path = scratch.write("data", Array(1...10))
            var options = RingOptions()
            if forcedFallback { options.treatedAsUnsupported = [.truncate] }
            let ring = try RingActor(options: options)
            let file = try await File.open(path, .readWrite, on: ring)
            try await file.truncate(to: 4)
            #expect(try await file.metadata().size == 4)
            try await file.truncate(to: 8)
            var bytes = [UInt8](repeating: 0xFF, count: 8)
            #expect(try await file.readAll(into: &bytes, at: 0) == 8)
            #expect(bytes == [1, 2, 3, 4, 0, 0, 0, 0])
            do {
                try await file.truncate(to: -1)
                Issue.record("truncated to a negative size")
            } catch let error as UringError {
                #expect(error.kind == .invalidArgument)
                #expect(error.description.contains(path.string), "\(error)")
            }
            try await file.close()
            await ring.shutdown()
        }

        @Test("advice is accepted for a file and refused, naming the operation, for a pipe")
        func advice() async throws {
            let scratch = Scratch()
            let path = scratch.write("data", Array(repeating: 1, count: 4096))
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                try await file.advise(.sequential)
                try await file.advise(.willNeed, offset: 0, length: 4096)
                try await file.advise(.dontNeed)
                try await file.close()
                let (read, write) = makePipe()
                close(write)
                let pipe = File(adopting: FileDescriptor(rawValue: read), on: ring)
                do {
                    try await pipe.advise(.sequential)
                    Issue.record("advised a pipe")
                } catch let error as UringError {
                    #expect(error.errno == .illegalSeek)
                    #expect(error.operation == .advise)
                }
                try await pipe.close()
            }
        }

        @Test("memory advice through the ring: dontNeed frees whole pages, which then read as zero; the edges are left alone")
        func memoryAdvice() async throws {
            try await RingActor.run { ring in
                let page = AlignedBuffer.pageSize
                var buffer = AlignedBuffer(copying: [UInt8](repeating: 0xAB, count: 4 * page))
                try await buffer.advise(.sequential, on: ring)
                try await buffer.advise(.willNeed, on: ring)
                try await buffer.advise(.dontNeed, on: ring)
                #expect(buffer.copyBytes().allSatisfy { $0 == 0 }, "the kernel did not drop the pages")
                // Not page-aligned: only the pages wholly inside are advised.
                var offset = AlignedBuffer(copying: [UInt8](repeating: 0xCD, count: 3 * page + 16), alignment: 16)
                try await offset.advise(.dontNeed, on: ring)
                let base = offset.withUnsafeIOBytes { Int(bitPattern: $0.baseAddress!) }
                let first = (base + page - 1) / page * page - base
                let end = (base + 3 * page + 16) / page * page - base
                let bytes = offset.copyBytes()
                #expect(bytes[..<first].allSatisfy { $0 == 0xCD })
                #expect(bytes[first..<end].allSatisfy { $0 == 0 })
                #expect(bytes[end...].allSatisfy { $0 == 0xCD })
                #expect(end - first >= 2 * page)
                var small = AlignedBuffer(copying: [UInt8](repeating: 7, count: 100))
                try await small.advise(.dontNeed, on: ring)
                #expect(small.copyBytes() == [UInt8](repeating: 7, count: 100))
            }
        }
    }
}
