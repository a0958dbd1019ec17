import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Atomic file replacement", .checksDescriptorLeaks)
    struct AtomicFileTests {
        /// The names in `directory`, to check that no temporary file is left.
        func names(in directory: String, on ring: RingActor) async throws -> Set<String> {
            let opened = try await Directory.open(FilePath(directory), on: ring)
            var names = Set<String>()
            for try await entry in opened.entries() { names.insert(entry.name.string) }
            try await opened.close()
            return names
        }

        @Test("a new file, a replaced file and a failed write: readers see old or new whole, and nothing is left behind",
              arguments: [true, false])
        func replace(unnamed: Bool) async throws {
            let scratch = Scratch()
            let target = scratch.file("config.json")
            try await RingActor.run { ring in
                try await File.writeAtomically(
                    to: target, permissions: FilePermissions(rawValue: 0o600), durable: true, on: ring,
                    allowingUnnamed: unnamed
                ) { file in
                    try await file.writeAll(Array("first".utf8), at: 0)
                }
                #expect(try await File.open(target, on: ring).readToEnd() == Array("first".utf8))
                #expect(try await ring.metadata(at: target).permissions.rawValue & 0o777 == 0o600)
                let before = try await ring.metadata(at: target).inode

                try await File.writeAtomically(
                    to: target, permissions: FilePermissions(rawValue: 0o644), durable: false, on: ring,
                    allowingUnnamed: unnamed
                ) { file in
                    try await file.writeAll(Array("second, longer".utf8), at: 0)
                }
                #expect(try await File.open(target, on: ring).readToEnd() == Array("second, longer".utf8))
                #expect(try await ring.metadata(at: target).inode != before)

                struct Refused: Error {}
                await #expect(throws: Refused.self) {
                    try await File.writeAtomically(
                        to: target, permissions: FilePermissions(rawValue: 0o644), durable: true, on: ring,
                        allowingUnnamed: unnamed
                    ) { file in
                        try await file.writeAll(Array("partial".utf8), at: 0)
                        throw Refused()
                    }
                }
                #expect(try await File.open(target, on: ring).readToEnd() == Array("second, longer".utf8))
                #expect(try await names(in: scratch.path, on: ring) == ["config.json"])
            }
        }

        @Test("the public form works, and a missing directory is an error naming the path")
        func publicForm() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                try await File.writeAtomically(to: scratch.file("notes.txt"), on: ring) { file in
                    try await file.writeAll(Array("hello".utf8), at: 0)
                }
                #expect(try await File.open(scratch.file("notes.txt"), on: ring).readToEnd() == Array("hello".utf8))
                do {
                    try await File.writeAtomically(to: scratch.file("missing/notes.txt"), on: ring) { _ in }
                    Issue.record("wrote into a missing directory")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory)
                    #expect(error.description.contains(scratch.path + "/missing"), "\(error)")
                }
            }
        }
    }
}
