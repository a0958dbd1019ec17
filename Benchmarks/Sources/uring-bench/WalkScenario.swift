// walk: a tree of 2,000 files in 20 directories, listed and each entry
// described (statx), through this library (statx per entry through the
// ring, and batched with the listing), NIOFileSystem (whose recursive
// listing also yields the root: 2,021 entries to the others' 2,020) and a
// C loop of getdents64 and statx.

import CBaseline
import Foundation
import SystemPackage
import Uring
import _NIOFileSystem

extension UringBench {
    static func walk(_ report: Report, quick: Bool, rounds: Int) async throws {
        let root = NSTemporaryDirectory() + "uring-bench-walk-\(getpid())"
        let directories = 20
        let filesPerDirectory = 100
        for d in 0..<directories {
            try FileManager.default.createDirectory(atPath: "\(root)/dir\(d)", withIntermediateDirectories: true)
            for f in 0..<filesPerDirectory {
                let fd = open("\(root)/dir\(d)/file\(f)", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                precondition(fd >= 0, "cannot create the tree")
                close(fd)
            }
        }
        defer { try? FileManager.default.removeItem(atPath: root) }
        let count = directories * (filesPerDirectory + 1)
        let inFlight = 32
        let scenario = "walk (2,000 files in 20 directories, listed and statx'ed)"

        let c = bestC(rounds, units: count, "C walk") {
            var entries: Int64 = 0
            let ns = cbaseline_walk(root, &entries)
            precondition(ns < 0 || entries == count, "C walked \(entries) entries")
            return ns
        }
        report.add(scenario, "C getdents64 + statx, one thread", "entries_per_second", c, "entries/s")

        let ours = try await RingActor.run { ring in
            try await best(rounds, units: count) {
                var seen = 0
                try await withThrowingTaskGroup(of: Void.self) { group in
                    var running = 0
                    for try await entry in Directory.walk(FilePath(root)) {
                        if running == inFlight {
                            try await group.next()
                            running -= 1
                        }
                        group.addTask { _ = try await ring.metadata(at: entry.path, followingSymlinks: false) }
                        running += 1
                        seen += 1
                    }
                    try await group.waitForAll()
                }
                precondition(seen == count, "swift-uring walked \(seen) entries")
            }
        }
        report.add(scenario, "swift-uring walk + statx, \(inFlight) in flight", "entries_per_second", ours, "entries/s")

        // Ours again, with each directory's statx calls made in the listing's
        // own step off the ring's thread (statx through io_uring always
        // goes to a kernel worker thread).
        let batched = try await RingActor.run { ring in
            try await best(rounds, units: count) {
                var seen = 0
                for try await entry in Directory.walk(FilePath(root), withMetadata: true) {
                    precondition(entry.metadata != nil)
                    seen += 1
                }
                precondition(seen == count, "swift-uring walked \(seen) entries")
            }
        }
        report.add(scenario, "swift-uring walk(withMetadata: true)", "entries_per_second", batched, "entries/s")

        // The same with no directory loaded ahead of the walk.
        let oneAtATime = try await RingActor.run { ring in
            try await best(rounds, units: count) {
                var seen = 0
                for try await _ in Directory.walk(FilePath(root), withMetadata: true, concurrency: 1) { seen += 1 }
                precondition(seen == count, "swift-uring walked \(seen) entries")
            }
        }
        report.add(scenario, "swift-uring walk(withMetadata: true, concurrency: 1)", "entries_per_second", oneAtATime, "entries/s")

        var nioSeen = 0
        let nio = try await best(rounds, units: count) {
            let seen = try await FileSystem.shared.withDirectoryHandle(atPath: FilePath(root)) { directory in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    var running = 0
                    var seen = 0
                    for try await batch in directory.listContents(recursive: true).batched() {
                        for entry in batch {
                            if running == inFlight {
                                try await group.next()
                                running -= 1
                            }
                            group.addTask { _ = try await FileSystem.shared.info(forFileAt: entry.path, infoAboutSymbolicLink: true) }
                            running += 1
                            seen += 1
                        }
                    }
                    try await group.waitForAll()
                    return seen
                }
            }
            nioSeen = seen
        }
        if nioSeen != count {
            print("note: NIOFileSystem listed \(nioSeen) entries of \(count)")
        }
        report.add(scenario, "NIOFileSystem listContents(recursive:) + info, \(inFlight) in flight", "entries_per_second", nio, "entries/s")
        report.table(scenario, "entries_per_second", ours: "swift-uring walk(withMetadata: true)")
        report.goal(scenario, "≥ 0.8 of C", ratio: batched / c)
        report.goal(scenario, "≥ 1.5× NIOFileSystem", ratio: batched / nio)
    }
}
