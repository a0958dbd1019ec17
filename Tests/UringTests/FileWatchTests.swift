import Glibc
import SystemPackage
import Testing

@testable import Uring

/// Reads changes until `done` says the last expected one has come.
func collect(_ changes: FileChanges, until done: ([FileChange]) -> Bool) async throws -> [FileChange] {
    var seen: [FileChange] = []
    for try await change in changes {
        seen.append(change)
        if done(seen) { break }
    }
    return seen
}

/// Creates `path` with `text` in it, with plain system calls.
func createFile(_ path: String, _ text: String = "x") {
    let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
    precondition(fd >= 0, "open \(path): \(errno)")
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

extension AllTests {
    @Suite("Watching files for changes", .checksDescriptorLeaks)
    struct FileWatchTests {
        @Test("a directory's changes arrive typed and in order: create, write, close, rename (paired), chmod, remove")
        func directoryChanges() async throws {
            try await RingActor.run { ring in
                let scratch = Scratch()
                let changes = try await ring.watch(FilePath(scratch.path))
                createFile(scratch.path + "/a")
                rename(scratch.path + "/a", scratch.path + "/b")
                chmod(scratch.path + "/b", 0o600)
                unlink(scratch.path + "/b")
                let seen = try await collect(changes) { $0.last?.kind == .removed }
                let root = FilePath(scratch.path)
                #expect(seen.map(\.kind) == [.created, .modified, .closedAfterWriting, .movedAway, .movedHere, .attributesChanged, .removed])
                #expect(seen.map(\.path) == [root.appending("a"), root.appending("a"), root.appending("a"), root.appending("a"), root.appending("b"), root.appending("b"), root.appending("b")])
                #expect(seen[3].moveCookie != 0 && seen[3].moveCookie == seen[4].moveCookie, "the rename's two halves pair up")
                #expect(seen.allSatisfy { !$0.isDirectory })
            }
        }

        @Test("only the kinds asked for are reported; the watched directory's removal ends the sequence")
        func filteredAndEnds() async throws {
            try await RingActor.run { ring in
                let scratch = Scratch()
                let watched = scratch.path + "/watched"
                mkdir(watched, 0o755)
                let changes = try await ring.watch(FilePath(watched), for: [.created])
                createFile(watched + "/a")
                unlink(watched + "/a")
                mkdir(watched + "/d", 0o755)
                rmdir(watched + "/d")
                rmdir(watched)
                var seen: [FileChange] = []
                for try await change in changes { seen.append(change) }  // ends by itself
                #expect(seen.map(\.kind) == [.created, .created, .watchedItemRemoved])
                #expect(seen.map(\.path.string) == [watched + "/a", watched + "/d", watched])
                #expect(seen.map(\.isDirectory).prefix(2) == [false, true])
            }
        }

        @Test("a single file: its writes, its attributes and its removal, each naming the file; the removal ends the sequence")
        func singleFile() async throws {
            try await RingActor.run { ring in
                let scratch = Scratch()
                let path = scratch.path + "/watched.txt"
                createFile(path)
                let changes = try await ring.watch(FilePath(path))
                let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
                #expect(fd >= 0)
                _ = "more".withCString { write(fd, $0, 4) }
                close(fd)
                chmod(path, 0o600)
                unlink(path)
                let seen = try await collect(changes) { $0.last?.kind == .watchedItemRemoved }
                #expect(Array(seen.map(\.kind).prefix(3)) == [.modified, .closedAfterWriting, .attributesChanged], "\(seen)")
                #expect(seen.last?.kind == .watchedItemRemoved)
                #expect(seen.allSatisfy { $0.path == FilePath(path) && !$0.isDirectory }, "\(seen)")
            }
        }

        @Test("recursively: directories under the root and ones made later, with what they held before their watch")
        func recursive() async throws {
            try await RingActor.run { ring in
                let scratch = Scratch()
                mkdir(scratch.path + "/x", 0o755)
                mkdir(scratch.path + "/x/y", 0o755)
                let changes = try await ring.watch(FilePath(scratch.path), for: [.created, .closedAfterWriting], recursively: true)
                createFile(scratch.path + "/x/y/deep")
                mkdir(scratch.path + "/new", 0o755)
                mkdir(scratch.path + "/new/inner", 0o755)
                createFile(scratch.path + "/new/inner/file")
                createFile(scratch.path + "/last")
                let seen = try await collect(changes) { $0.last?.path == FilePath(scratch.path + "/last") && $0.last?.kind == .closedAfterWriting }
                let paths = Set(seen.filter { $0.kind == .created }.map(\.path.string))
                #expect(paths.isSuperset(of: [
                    scratch.path + "/x/y/deep", scratch.path + "/new", scratch.path + "/new/inner",
                    scratch.path + "/new/inner/file", scratch.path + "/last",
                ]), "\(seen)")
                #expect(seen.contains { $0.kind == .closedAfterWriting && $0.path.string == scratch.path + "/x/y/deep" })
            }
        }

        @Test("recursively: a directory renamed out of the tree is no longer watched")
        func movedOut() async throws {
            try await RingActor.run { ring in
                let scratch = Scratch()
                let root = scratch.path + "/root"
                mkdir(root, 0o755)
                mkdir(root + "/x", 0o755)
                let changes = try await ring.watch(FilePath(root), for: [.created, .moved, .closedAfterWriting], recursively: true)
                rename(root + "/x", scratch.path + "/elsewhere")
                let away = try await collect(changes) { $0.last?.kind == .movedAway }
                #expect(away.last?.path == FilePath(root + "/x"))
                // Made after the watch on the moved directory was removed.
                createFile(scratch.path + "/elsewhere/outside")
                createFile(root + "/marker")
                let rest = try await collect(changes) { $0.last?.path == FilePath(root + "/marker") && $0.last?.kind == .closedAfterWriting }
                #expect(!rest.contains { $0.path.string.hasSuffix("outside") }, "\(rest)")
            }
        }

        @Test("a missing path: ENOENT naming inotify_add_watch and the path; cancelling a quiet watch ends it")
        func errorsAndCancellation() async throws {
            try await RingActor.run { ring in
                do {
                    _ = try await ring.watch("/nonexistent/watched")
                    Issue.record("a missing path was watched")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory)
                    #expect(error.operation == .watch)
                    #expect(error.path == "/nonexistent/watched")
                }
                let scratch = Scratch()
                let changes = try await ring.watch(FilePath(scratch.path))
                let outcome = await cancelOnceInFlight(on: ring) {
                    do {
                        for try await _ in changes { return "a change" }
                        return "ended"
                    } catch is CancellationError { return "cancelled" } catch { return "\(error)" }
                }
                #expect(outcome == "cancelled")
                await settle(ring)
            }
        }

        @Test(
            "an overflowing kernel queue is reported as a change, not lost silently",
            .enabled(
                if: access("/proc/sys/fs/inotify/max_queued_events", W_OK) == 0,
                "needs root, to lower fs.inotify.max_queued_events while one inotify instance is made"))
        func overflow() async throws {
            let setting = "/proc/sys/fs/inotify/max_queued_events"
            let saved = try #require(readSetting(setting))
            try #require(writeSetting(setting, "16"))
            defer { _ = writeSetting(setting, saved) }  // on every path (restored earlier below)
            try await RingActor.run { ring in
                let scratch = Scratch()
                let changes: FileChanges
                do {
                    defer { _ = writeSetting(setting, saved) }
                    changes = try await ring.watch(FilePath(scratch.path), for: [.created])
                }
                for index in 0..<64 { createFile(scratch.path + "/f\(index)") }
                let seen = try await collect(changes) { $0.last?.kind == .overflow }
                #expect(seen.last?.kind == .overflow)
                #expect(seen.last?.path == FilePath(scratch.path))
                #expect(seen.count <= 17, "16 queued changes, then the overflow")
            }
        }
    }
}

/// A /proc/sys setting's text, or nil.
func readSetting(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 64)
    let n = read(fd, &buffer, buffer.count)
    guard n > 0 else { return nil }
    return String(decoding: buffer[..<n], as: UTF8.self).split(whereSeparator: \.isWhitespace).first.map(String.init)
}

/// Writes a /proc/sys setting; false if it cannot.
func writeSetting(_ path: String, _ value: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return value.withCString { write(fd, $0, strlen($0)) } == value.utf8.count
}
