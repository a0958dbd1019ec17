// The examples of DocC's Getting Started article, copied as written. This
// file imports only Uring and Testing, so it also checks that the
// swift-system types the examples name come with `import Uring`.
import Testing
import Uring

func totalSize(of paths: [FilePath]) async throws -> Int {
    try await RingActor.run { ring in
        try await withThrowingTaskGroup(of: Int.self) { group in
            for path in paths {
                group.addTask {
                    let file = try await File.open(path, on: ring)
                    let size = try await file.metadata().size
                    try await file.close()
                    return Int(size)
                }
            }
            var total = 0
            for try await size in group { total += size }
            return total
        }
    }
}

func writeAndReadBack(_ path: FilePath, on ring: RingActor) async throws -> Int {
    let file = try await File.open(path, .readWrite, options: [.create, .truncate], on: ring)
    try await file.writeAll(Array("hello\n".utf8), at: 0)

    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = try await file.read(into: &buffer, at: 0)      // 6
    try await file.sync()
    try await file.close()
    return n
}

func countFiles(withExtension suffix: String, under root: FilePath) async throws -> Int {
    var count = 0
    for try await entry in Directory.walk(root) where entry.type == .regular {
        if entry.path.extension == suffix { count += 1 }
    }
    return count
}

extension AllTests {
    @Suite("Documentation examples")
    struct DocumentationExampleTests {
        @Test("Getting Started: the task-group example adds up file sizes")
        func gettingStartedSizes() async throws {
            let scratch = Scratch()
            let a = scratch.write("a.log", [UInt8](repeating: 1, count: 100))
            let b = scratch.write("b.log", [UInt8](repeating: 2, count: 23))
            #expect(try await totalSize(of: [a, b]) == 123)
        }

        @Test("Getting Started: the read-and-write example reads back what it wrote")
        func gettingStartedReadWrite() async throws {
            let scratch = Scratch()
            let path = scratch.file("notes.txt")
            let count = try await RingActor.run { ring in try await writeAndReadBack(path, on: ring) }
            #expect(count == 6)
        }

        @Test("Getting Started: the walk example counts files by extension; removeTree clears the tree")
        func gettingStartedWalk() async throws {
            let scratch = Scratch()
            let root = scratch.file("project")
            try await RingActor.run { ring in
                try await ring.createDirectory(at: root.appending("Sources/Engine"), intermediates: true)
                for name in ["Sources/a.swift", "Sources/Engine/b.swift", "Sources/notes.md"] {
                    let file = try await File.open(root.appending(name), .writeOnly, options: [.create], on: ring)
                    try await file.close()
                }
                #expect(try await countFiles(withExtension: "swift", under: root) == 2)
                try await ring.removeTree(at: root)
                await #expect(throws: UringError.self) { try await ring.metadata(at: root) }
            }
        }
    }
}
