import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Copying a directory tree", .checksDescriptorLeaks)
    struct TreeCopyTests {
        @Test("copyTree: files byte for byte, permissions (a read-only directory too), links as links, FIFOs skipped")
        func copiesTree() async throws {
            try await RingActor.run { ring in
                let scratch = Scratch()
                let source = scratch.path + "/source"
                mkdir(source, 0o755)
                mkdir(source + "/a", 0o755)
                mkdir(source + "/a/b", 0o755)
                mkdir(source + "/empty", 0o755)
                mkdir(source + "/locked", 0o755)
                let big = pattern(count: 300_000, seed: 5)
                _ = scratch.write("source/a/b/c.txt", Array("deep\n".utf8))
                _ = scratch.write("source/a/big.bin", big)
                _ = scratch.write("source/private", Array("secret".utf8))
                chmod(source + "/private", 0o600)
                _ = scratch.write("source/locked/inside", Array("in".utf8))
                chmod(source + "/locked", 0o555)
                symlink("a/big.bin", source + "/link")
                symlink("/etc/hostname", source + "/outside")
                mkfifo(source + "/fifo", 0o644)
                defer { chmod(source + "/locked", 0o755); chmod(scratch.path + "/copy/locked", 0o755) }

                let copy = scratch.path + "/copy"
                let summary = try await ring.copyTree(from: FilePath(source), to: FilePath(copy), concurrency: 2)
                #expect(summary.directories == 5)
                #expect(summary.files == 4)
                #expect(summary.symbolicLinks == 2)
                #expect(summary.bytes == Int64(5 + big.count + 6 + 2))
                #expect(summary.skipped == [FilePath(source + "/fifo")])

                let file = try await File.open(FilePath(copy + "/a/big.bin"), on: ring)
                #expect(try await file.readToEnd() == big)
                try await file.close()
                #expect(try await ring.metadata(at: FilePath(copy + "/private")).permissions.rawValue & 0o777 == 0o600)
                #expect(try await ring.metadata(at: FilePath(copy + "/locked")).permissions.rawValue & 0o777 == 0o555)
                #expect(try await ring.metadata(at: FilePath(copy + "/locked/inside")).size == 2)
                #expect(try await ring.destinationOfSymbolicLink(at: FilePath(copy + "/link")) == "a/big.bin")
                #expect(try await ring.destinationOfSymbolicLink(at: FilePath(copy + "/outside")) == "/etc/hostname")
                #expect(try await ring.metadata(at: FilePath(copy + "/empty")).type == .directory)
                #expect(access(copy + "/fifo", F_OK) != 0)
            }
        }

        @Test("copyTree: an existing destination, a missing source and a file as source are typed errors naming the path")
        func errors() async throws {
            try await RingActor.run { ring in
                let scratch = Scratch()
                mkdir(scratch.path + "/source", 0o755)
                mkdir(scratch.path + "/taken", 0o755)
                _ = scratch.write("file", [1])
                func failure(_ source: String, _ destination: String) async -> UringError? {
                    do {
                        try await ring.copyTree(from: FilePath(source), to: FilePath(destination))
                        return nil
                    } catch let error as UringError { return error } catch { return nil }
                }
                let exists = await failure(scratch.path + "/source", scratch.path + "/taken")
                #expect(exists?.errno == .fileExists && exists?.path == FilePath(scratch.path + "/taken"))
                let missing = await failure(scratch.path + "/missing", scratch.path + "/new")
                #expect(missing?.errno == .noSuchFileOrDirectory && missing?.path == FilePath(scratch.path + "/missing"))
                let notDirectory = await failure(scratch.path + "/file", scratch.path + "/new")
                #expect(notDirectory?.errno == .notDirectory && notDirectory?.path == FilePath(scratch.path + "/file"))
                #expect(access(scratch.path + "/new", F_OK) != 0, "nothing was created")
            }
        }
    }
}
