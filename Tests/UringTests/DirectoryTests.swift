import Foundation
import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Directories and trees", .checksDescriptorLeaks)
    struct DirectoryTests {
        /// A tree: a/, a/one.txt, a/b/, a/b/two.txt, a/b/c/ (empty), a/link -> b,
        /// a/fifo, and `outside` (a directory beside the tree with a file).
        func makeTree(_ scratch: Scratch) {
            mkdir(scratch.path + "/a", 0o755)
            mkdir(scratch.path + "/a/b", 0o755)
            mkdir(scratch.path + "/a/b/c", 0o755)
            scratch.write("a/one.txt", [1])
            scratch.write("a/b/two.txt", [2, 2])
            symlink("b", scratch.path + "/a/link")
            mkfifo(scratch.path + "/a/fifo", 0o644)
            mkdir(scratch.path + "/outside", 0o755)
            scratch.write("outside/keep.txt", [3])
            symlink(scratch.path + "/outside", scratch.path + "/a/b/out")
        }

        @Test("entries: every name once with its type, no . or .., and each iteration from the start")
        func entries() async throws {
            let scratch = Scratch()
            makeTree(scratch)
            try await RingActor.run { ring in
                let directory = try await Directory.open(scratch.file("a"), on: ring)
                let sequence = directory.entries()
                var first: [String: Uring.FileType] = [:]
                for try await entry in sequence {
                    #expect(first.updateValue(entry.type, forKey: entry.name.string) == nil, "\(entry) twice")
                }
                #expect(first == ["one.txt": .regular, "b": .directory, "link": .symbolicLink, "fifo": .fifo])
                var second = 0
                for try await _ in sequence { second += 1 }
                #expect(second == 4)
                // With metadata: described in the listing's step, links as links.
                var sizes: [String: Int64] = [:]
                for try await entry in directory.entries(withMetadata: true) {
                    let metadata = try #require(entry.metadata)
                    #expect(metadata.type == entry.type)
                    sizes[entry.name.string] = metadata.size
                }
                #expect(sizes["one.txt"] == 1 && sizes.count == 4)
                // The sequence outlives the directory value.
                try await directory.close()
                var third = 0
                for try await _ in sequence { third += 1 }
                #expect(third == 4)
            }
        }

        @Test("entries of 1,500 files (more than one 32 KiB batch) come each once")
        func manyEntries() async throws {
            let scratch = Scratch()
            mkdir(scratch.path + "/many", 0o755)
            // Plain open(2): FileManager took seconds for this under
            // ThreadSanitizer. Short names: 32-byte records, two getdents64
            // batches (long names were slow in a debug build, where
            // swift-system checks every path it makes).
            let prefix = "f"
            for i in 0..<1_500 {
                let fd = open(scratch.path + "/many/\(prefix)-\(i)", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                #expect(fd >= 0)
                close(fd)
            }
            try await RingActor.run { ring in
                let directory = try await Directory.open(scratch.file("many"), on: ring)
                var names = Set<String>()
                var others = 0
                for try await entry in directory.entries() {
                    if entry.type != .regular { others += 1 }
                    names.insert(entry.name.string)
                }
                #expect(others == 0)
                #expect(names.count == 1_500)
                #expect(names.contains("\(prefix)-1499"))
            }
        }

        @Test("walk: depth first, every entry once with its depth, links listed and never followed")
        func walk() async throws {
            let scratch = Scratch()
            makeTree(scratch)
            let root = scratch.file("a")
            try await RingActor.run { ring in
                var seen: [String: (Uring.FileType, Int)] = [:]
                var order: [String] = []
                for try await entry in Directory.walk(root) {
                    let relative = String(entry.path.string.dropFirst(root.string.count + 1))
                    #expect(seen.updateValue((entry.type, entry.depth), forKey: relative) == nil, "\(entry) twice")
                    order.append(relative)
                }
                #expect(Set(seen.keys) == ["one.txt", "b", "b/two.txt", "b/c", "b/out", "link", "fifo"])
                #expect(seen["b"].map { $0 == (.directory, 1) } == true)
                #expect(seen["b/c"].map { $0 == (.directory, 2) } == true)
                #expect(seen["b/out"].map { $0 == (.symbolicLink, 2) } == true)
                #expect(seen["link"].map { $0 == (.symbolicLink, 1) } == true)
                // Depth first: a directory comes before its contents.
                let directoryFirst = try #require(order.firstIndex(of: "b"))
                #expect(try #require(order.firstIndex(of: "b/two.txt")) > directoryFirst)
                var described = 0
                for try await entry in Directory.walk(root, withMetadata: true) {
                    let metadata = try #require(entry.metadata, "\(entry)")
                    #expect(metadata.type == entry.type)
                    if entry.path.lastComponent == "two.txt" { #expect(metadata.size == 2) }
                    described += 1
                }
                #expect(described == 7)
            }
        }

        @Test("walk: the same entries in the same order whether 1, 2 or 16 directories are loaded at once")
        func walkConcurrency() async throws {
            let scratch = Scratch()
            // 3 levels of 4 directories, 3 files in each: 84 directories.
            func fill(_ path: String, level: Int) {
                for f in 0..<3 { scratch.write(String(path.dropFirst(scratch.path.count + 1)) + "/f\(f)", [UInt8(f)]) }
                guard level < 3 else { return }
                for d in 0..<4 {
                    mkdir(path + "/d\(d)", 0o755)
                    fill(path + "/d\(d)", level: level + 1)
                }
            }
            mkdir(scratch.path + "/t", 0o755)
            fill(scratch.path + "/t", level: 0)
            try await RingActor.run { ring in
                var orders: [[String]] = []
                for concurrency in [1, 2, 16] {
                    var order: [String] = []
                    for try await entry in Directory.walk(scratch.file("t"), withMetadata: concurrency == 2, concurrency: concurrency) {
                        order.append("\(entry.path) \(entry.depth) \(entry.type)")
                    }
                    orders.append(order)
                }
                #expect(orders[0].count == 84 + 85 * 3)
                #expect(orders[1] == orders[0])
                #expect(orders[2] == orders[0])
                // Entries compare and hash by what they say, whichever walk
                // (and batch of names) they came from.
                var one: [DirectoryWalk.Entry] = []
                for try await entry in Directory.walk(scratch.file("t"), concurrency: 1) { one.append(entry) }
                var many: [DirectoryWalk.Entry] = []
                for try await entry in Directory.walk(scratch.file("t"), concurrency: 16) { many.append(entry) }
                #expect(one == many)
                #expect(Set(one) == Set(many) && Set(one).count == one.count)
                #expect(one.map(\.name.string) == orders[0].map { String($0.split(separator: " ")[0].split(separator: "/").last!) })
                // Stopping early leaves nothing behind once the walk is gone
                // (the suite counts descriptors after the test).
                var taken = 0
                for try await _ in Directory.walk(scratch.file("t"), concurrency: 16) {
                    taken += 1
                    if taken == 10 { break }
                }
                #expect(taken == 10)
            }
        }

        @Test("walk: a directory of more entries than one listing call reads and than several batches hold (2,250 files, 20 subdirectories) is walked whole and in order")
        func walkLargeDirectory() async throws {
            let scratch = Scratch()
            mkdir(scratch.path + "/big", 0o755)
            let files = 2_250
            #expect(files > 4 * WalkChannel.itemsPerBatch)
            for f in 0..<files { close(open(scratch.path + "/big/file-\(f)", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)) }
            for d in 0..<20 {
                mkdir(scratch.path + "/big/dir-\(d)", 0o755)
                scratch.write("big/dir-\(d)/inner", [UInt8(d)])
            }
            try await RingActor.run { ring in
                var order: [String] = []
                for try await entry in Directory.walk(scratch.file("big"), concurrency: 8) {
                    order.append(String(entry.path.string.dropFirst(scratch.path.count + 5)))
                }
                // Every task closed its directories before the walk heard
                // its end, so none is open once the loop is over.
                #expect(scratch.openDescriptors == 0)
                #expect(order.count == files + 40)
                #expect(Set(order).count == files + 40)
                // Depth first: each subdirectory's one file comes right after it.
                for d in 0..<20 {
                    let at = try #require(order.firstIndex(of: "dir-\(d)"))
                    #expect(order[at + 1] == "dir-\(d)/inner")
                }
            }
        }

        @Test("walk(followingLinks:): links to directories are entered, a link to nothing stays a link, a loop is ELOOP")
        func walkFollowingLinks() async throws {
            let scratch = Scratch()
            makeTree(scratch)
            symlink("missing", scratch.path + "/a/dangling")
            symlink("..", scratch.path + "/a/b/c/up")
            let root = scratch.file("a")
            try await RingActor.run { ring in
                let errors = Guarded<[UringError]>([])
                var seen: [String: Uring.FileType] = [:]
                for try await entry in Directory.walk(
                    root, followingLinks: true, onError: { error in errors.withLock { $0.append(error) } }
                ) {
                    let relative = String(entry.path.string.dropFirst(root.string.count + 1))
                    #expect(seen.updateValue(entry.type, forKey: relative) == nil, "\(entry) twice")
                }
                // `link` is `b` again, `b/out` leads to `outside`.
                #expect(seen["link"] == .directory)
                #expect(seen["link/two.txt"] == .regular)
                #expect(seen["b/out/keep.txt"] == .regular)
                #expect(seen["dangling"] == .symbolicLink)
                // `b/c/up` is `b`, which the walk is inside: listed, not entered.
                #expect(seen["b/c/up"] == .directory)
                #expect(seen["b/c/up/two.txt"] == nil)
                let reported = errors.withLock { $0 }
                #expect(reported.contains { $0.errno == .tooManySymbolicLinkLevels && $0.description.contains("b/c/up") }, "\(reported)")
                // Without onError the loop ends the walk, naming the link.
                do {
                    for try await _ in Directory.walk(root, withMetadata: true, followingLinks: true, concurrency: 8) {}
                    Issue.record("a loop did not end the walk")
                } catch let error as UringError {
                    #expect(error.errno == .tooManySymbolicLinkLevels)
                    #expect(error.description.contains("up"), "\(error)")
                }
            }
        }

        @Test("walk(withMetadata:) following links: an entry statx cannot describe (a link to itself: ELOOP) is listed without metadata and its error, naming it, follows it")
        func walkUndescribableEntry() async throws {
            let scratch = Scratch()
            mkdir(scratch.path + "/t", 0o755)
            scratch.write("t/plain", [1, 2, 3])
            symlink("self", scratch.path + "/t/self")
            let root = scratch.file("t")
            try await RingActor.run { ring in
                enum Item: Equatable { case entry(String, Bool), error(String) }
                let items = Guarded<[Item]>([])
                for try await entry in Directory.walk(
                    root, withMetadata: true, followingLinks: true,
                    onError: { error in
                        #expect(error.errno == .tooManySymbolicLinkLevels, "\(error)")
                        items.withLock { $0.append(.error(error.path?.lastComponent?.string ?? "\(error)")) }
                    }
                ) {
                    items.withLock { $0.append(.entry(entry.name.string, entry.metadata != nil)) }
                }
                let seen = items.withLock { $0 }
                #expect(seen.count == 3, "\(seen)")
                #expect(seen.contains(.entry("plain", true)), "\(seen)")
                let link = seen.firstIndex(of: .entry("self", false))
                #expect(link != nil && seen.indices.contains(link! + 1) && seen[link! + 1] == .error("self"), "\(seen)")
                // Without onError the error ends the walk.
                await #expect(throws: UringError.self) {
                    for try await _ in Directory.walk(root, withMetadata: true, followingLinks: true) {}
                }
            }
        }

        @Test("walk: in a cancelled task it throws CancellationError, also when cancelled mid-loop with entries listed ahead, and leaves no descriptor open")
        func walkCancelled() async throws {
            let scratch = Scratch()
            mkdir(scratch.path + "/t", 0o755)
            for d in 0..<8 {
                mkdir(scratch.path + "/t/d\(d)", 0o755)
                for f in 0..<40 { scratch.write("t/d\(d)/f\(f)", [1]) }
            }
            let root = scratch.file("t")
            // Cancelled before the first entry, or after the tenth: either
            // way within a batch (at most itemsPerBatch entries) of it, and
            // the tree holds more than that after the tenth.
            #expect(10 + WalkChannel.itemsPerBatch < 8 * 41)
            for cancelAfter in [0, 10] {
                let task = Task {
                    if cancelAfter == 0 { withUnsafeCurrentTask { $0?.cancel() } }
                    var seen = 0
                    do {
                        for try await _ in Directory.walk(root, withMetadata: true, concurrency: 4) {
                            seen += 1
                            if seen == cancelAfter { withUnsafeCurrentTask { $0?.cancel() } }
                        }
                        return "finished \(seen)"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                let outcome = await task.value
                #expect(outcome == "cancelled", "cancelled after \(cancelAfter): \(outcome)")
                #expect(scratch.openDescriptors == 0)
            }
        }

        @Test("walk: a missing root throws ENOENT naming it")
        func walkMissingRoot() async throws {
            let scratch = Scratch()
            makeTree(scratch)
            try await RingActor.run { ring in
                let missing = scratch.file("nope")
                do {
                    for try await _ in Directory.walk(missing) {}
                    Issue.record("walked a missing directory")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory)
                    #expect(error.description.contains(missing.string), "\(error)")
                }
            }
        }

        @Test(
            "walk: an unreadable subdirectory goes to onError and the walk goes on",
            .enabled(if: geteuid() != 0, "permissions do not stop root, and the suite runs as root here"))
        func walkUnreadable() async throws {
            let scratch = Scratch()
            makeTree(scratch)
            chmod(scratch.path + "/a/b", 0)
            defer { chmod(scratch.path + "/a/b", 0o755) }
            try await RingActor.run { ring in
                let errors = Guarded<[UringError]>([])
                var names: [String] = []
                for try await entry in Directory.walk(scratch.file("a"), onError: { error in errors.withLock { $0.append(error) } }) {
                    names.append(entry.path.lastComponent?.string ?? "")
                }
                #expect(Set(names) == ["one.txt", "b", "link", "fifo"])
                let reported = errors.withLock { $0 }
                #expect(reported.count == 1 && reported.first?.errno == .permissionDenied, "\(reported)")
            }
        }

        @Test("removeTree removes everything under a path, links themselves and never their targets")
        func removeTree() async throws {
            let scratch = Scratch()
            makeTree(scratch)
            try await RingActor.run { ring in
                try await ring.removeTree(at: scratch.file("a"))
                #expect(access(scratch.path + "/a", F_OK) != 0)
                // The link to `outside` was removed, not followed.
                #expect(access(scratch.path + "/outside/keep.txt", F_OK) == 0)
                // A link to a directory, given as the root, is removed alone.
                symlink(scratch.path + "/outside", scratch.path + "/tolink")
                try await ring.removeTree(at: scratch.file("tolink"))
                #expect(access(scratch.path + "/tolink", F_OK) != 0)
                #expect(access(scratch.path + "/outside/keep.txt", F_OK) == 0)
                // A file or a link alone is removed as such.
                try await ring.removeTree(at: scratch.file("outside/keep.txt"))
                #expect(access(scratch.path + "/outside/keep.txt", F_OK) != 0)
                do {
                    try await ring.removeTree(at: scratch.file("a"))
                    Issue.record("removed a missing tree")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory)
                    #expect(error.description.contains(scratch.path + "/a"), "\(error)")
                }
            }
        }

        @Test("createDirectory with intermediates makes every missing parent, accepts an existing directory, and names what is in the way")
        func createIntermediates() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let deep = scratch.file("x/y/z")
                try await ring.createDirectory(at: deep, intermediates: true)
                #expect(try await ring.metadata(at: deep).type == .directory)
                try await ring.createDirectory(at: deep, intermediates: true)
                do {
                    try await ring.createDirectory(at: deep)
                    Issue.record("created an existing directory without intermediates")
                } catch let error as UringError {
                    #expect(error.errno == .fileExists)
                }
                scratch.write("file", [1])
                do {
                    try await ring.createDirectory(at: scratch.file("file"), intermediates: true)
                    Issue.record("a file was taken for a directory")
                } catch let error as UringError {
                    #expect(error.errno == .fileExists)
                    #expect(error.description.contains(scratch.path + "/file"), "\(error)")
                }
                do {
                    try await ring.createDirectory(at: scratch.file("file/sub"), intermediates: true)
                    Issue.record("created a directory under a file")
                } catch let error as UringError {
                    #expect(error.errno == .notDirectory)
                }
            }
        }

        @Test("listing from a task on the ring runs getdents64 off the ring's thread")
        func listingOffRingThread() async throws {
            let scratch = Scratch()
            makeTree(scratch)
            try await RingActor.run { ring in
                #expect(ring.executor.isCurrentThread)
                let onRing = try await offRingThread { ring.executor.isCurrentThread }
                #expect(!onRing)
                #expect(ring.executor.isCurrentThread)
                // And listing works from there.
                let directory = try await Directory.open(scratch.file("a"), on: ring)
                var count = 0
                for try await _ in directory.entries() { count += 1 }
                #expect(count == 4)
            }
        }
    }
}
