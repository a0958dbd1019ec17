import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Registered files and buffers, linked chains, splice", .checksDescriptorLeaks)
    struct RegisteredTests {
        @Test("registered files: open into a slot, write, read, register a File, install as a descriptor, close")
        func registeredFiles() async throws {
            let scratch = Scratch()
            let path = scratch.file("slot")
            try await RingActor.run { ring in
                try await ring.registerFiles(capacity: 8)
                await #expect(throws: UringError.self, "a second table is refused") {
                    try await ring.registerFiles(capacity: 8)
                }
                let descriptorsBefore = scratch.openDescriptors
                let file = try await RegisteredFile.open(path, .readWrite, options: [.create], on: ring)
                #expect(scratch.openDescriptors == descriptorsBefore, "a direct open makes no descriptor")
                let content = pattern(count: 3000)
                #expect(try await file.write(content, at: 0) == 3000)
                try await file.sync()
                var buffer = [UInt8](repeating: 0, count: 3000)
                #expect(try await file.read(into: &buffer, at: 0) == 3000)
                #expect(buffer == content)

                // A normal File moves into a slot; its descriptor closes.
                let plain = try await File.open(path, on: ring)
                let moved = try await RegisteredFile.register(plain)
                #expect(moved.index != file.index)
                #expect(scratch.openDescriptors == descriptorsBefore)
                var head = [UInt8](repeating: 0, count: 10)
                #expect(try await moved.read(into: &head, at: 0) == 10)
                #expect(head == Array(content[..<10]))

                if ring.isSupported(.installDescriptor) {
                    let installed = try await moved.installDescriptor()
                    #expect(scratch.openDescriptors == descriptorsBefore + 1)
                    #expect(try await installed.read(into: &head, at: 10) == 10)
                    #expect(head == Array(content[10..<20]))
                    try await installed.close()
                } else {
                    try await moved.close()
                }
                try await file.close()
                #expect(scratch.openDescriptors == descriptorsBefore)
                try await ring.unregisterFiles()
            }
        }

        @Test("registered files: errors name the path; a dropped file clears its slot; no table is a clear error")
        func registeredFileErrors() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                do {
                    _ = try await RegisteredFile.open(scratch.file("x"), on: ring)
                    Issue.record("opened a registered file with no table")
                } catch let error as UringError {
                    #expect(error.operation == .open && error.path == scratch.file("x"))
                }
                try await ring.registerFiles(capacity: 1)
                do {
                    _ = try await RegisteredFile.open(scratch.file("missing"), on: ring)
                    Issue.record("opened a missing file")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory && error.path == scratch.file("missing"))
                }
                let path = scratch.write("present", [1])
                do {
                    let only = try await RegisteredFile.open(path, on: ring)
                    _ = only  // dropped without close: the slot is cleared
                }
                await settle(ring)
                // The one slot is free again.
                let again = try await RegisteredFile.open(path, on: ring)
                try await again.close()
                await #expect(throws: UringError.self) { try await ring.registerFiles(capacity: 0) }
            }
        }

        @Test("registered buffers: fixed reads and writes, exhaustion, and return on drop")
        func registeredBuffers() async throws {
            let scratch = Scratch()
            let content = pattern(count: 8192)
            let path = scratch.write("data", content)
            try await RingActor.run { ring in
                let buffers = try await ring.registerBuffers(count: 2, size: 4096)
                await #expect(throws: UringError.self, "one set per ring") {
                    _ = try await ring.registerBuffers(count: 1, size: 4096)
                }
                let file = try await File.open(path, .readWrite, on: ring)
                guard var first = buffers.take(), let second = buffers.take() else {
                    Issue.record("two buffers of two were not available")
                    return
                }
                switch buffers.take() {
                case .some: Issue.record("a third buffer was handed out of two")
                case .none: break
                }
                #expect(buffers.availableCount == 0)
                #expect(try await file.read(into: &first, at: 4096) == 4096)
                #expect(first.copyBytes() == Array(content[4096...]))
                #expect(try await file.write(first, at: 0) == 4096)
                var check = [UInt8](repeating: 0, count: 4096)
                #expect(try await file.read(into: &check, at: 0) == 4096)
                #expect(check == Array(content[4096...]))
                _ = consume second
                #expect(buffers.availableCount == 1)
                // A buffer of another ring is refused with a clear error.
                let other = try RingActor()
                let foreign = try await File.open(path, on: other)
                await #expect(throws: UringError.self) { _ = try await foreign.read(into: &first, at: 0) }
                try await foreign.close()
                await other.shutdown()
                try await file.close()
            }
        }

        @Test("linked chain: write then fsync succeed in order; a failing step cancels the rest, which say so")
        func linkedChains() async throws {
            let scratch = Scratch()
            let path = scratch.file("chain")
            try await RingActor.run { ring in
                let file = try await File.open(path, .readWrite, options: [.create], on: ring)
                var results = try await ring.linked { chain in
                    chain.write(Array("chained".utf8), to: file, at: 0)
                    chain.sync(file)
                    chain.read(from: file, count: 7, at: 0)
                }
                #expect(try results.map { try $0.outcome.get() } == [7, 0, 7])
                #expect(results[2].bytes == Array("chained".utf8))

                // The read of 100 bytes comes back short (7), which breaks a
                // soft link: the NOP after it is cancelled.
                results = try await ring.linked { chain in
                    chain.read(from: file, count: 100, at: 0)
                    chain.nop()
                }
                #expect(try results[0].outcome.get() == 7)
                guard case .cancelled = results[1].outcome else {
                    Issue.record("the step after a short read ran: \(results[1].outcome)")
                    return
                }

                // A failing open cancels the steps after it; hard links run on.
                try await ring.registerFiles(capacity: 4, reserved: 2)
                results = try await ring.linked { chain in
                    chain.open(scratch.file("missing"), into: 0)
                    chain.read(from: 0, count: 10, at: 0)
                    chain.close(0)
                }
                guard case .failed(let error) = results[0].outcome else {
                    Issue.record("opening a missing file did not fail"); return
                }
                #expect(error.errno == .noSuchFileOrDirectory && error.path == scratch.file("missing"))
                for later in results.dropFirst() {
                    guard case .cancelled = later.outcome else { Issue.record("\(later.outcome)"); return }
                }
                results = try await ring.linked(hard: true) { chain in
                    chain.read(from: file, count: 100, at: 0)
                    chain.nop()
                }
                #expect(try results.map { try $0.outcome.get() } == [7, 0])

                // Open, read and close a file in one trip, through a reserved slot.
                results = try await ring.linked { chain in
                    chain.open(path, into: 1)
                    chain.read(from: 1, count: 7, at: 0)
                    chain.close(1)
                }
                #expect(try results.map { try $0.outcome.get() } == [0, 7, 0])
                #expect(results[1].bytes == Array("chained".utf8))
                await #expect(throws: UringError.self) { _ = try await ring.linked { _ in } }
                try await file.close()
                await settle(ring)
            }
            #expect(scratch.openDescriptors == 0)
        }

        @Test("splice and tee move bytes through pipes; copy(from:to:) copies a file with progress")
        func spliceTeeAndCopy() async throws {
            let scratch = Scratch()
            let content = pattern(count: 3 << 20 | 12345)
            let source = scratch.write("source", content)
            try await RingActor.run { ring in
                let first = try Pipe(on: ring)
                let second = try Pipe(on: ring)
                try await first.writing.writeAll(Array("through the kernel".utf8))
                #expect(try await first.reading.tee(to: second.writing, count: 64) == 18)
                let target = try await File.open(scratch.file("spliced"), .writeOnly, options: [.create], on: ring)
                #expect(try await first.reading.splice(to: target, count: 64, to: 0) == 18)
                try await target.close()
                var copy = [UInt8](repeating: 0, count: 18)
                #expect(try await second.reading.read(into: &copy) == 18, "tee left a copy in the second pipe")
                #expect(copy == Array("through the kernel".utf8))

                // Pieces smaller than a page, larger than a pipe holds, and an empty file.
                for pieceSize in [4096, 3 << 20, 64 << 20] {
                    let copied = try await File.copy(
                        from: source, to: scratch.file("copy-\(pieceSize)"), on: ring, pieceSize: pieceSize)
                    #expect(copied == Int64(content.count))
                    let copy = try await File.open(scratch.file("copy-\(pieceSize)"), on: ring)
                    #expect(try await copy.readToEnd() == content, "piece size \(pieceSize)")
                    try await copy.close()
                }
                let empty = scratch.write("empty", [])
                #expect(try await File.copy(from: empty, to: scratch.file("empty-copy"), on: ring) == 0)
                #expect(try await ring.metadata(at: scratch.file("empty-copy")).size == 0)

                var reports: [Int64] = []
                let copied = try await File.copy(
                    from: source, to: scratch.file("copy"), on: ring, pieceSize: 256 << 10
                ) { done, total in
                    #expect(total == Int64(content.count))
                    reports.append(done)
                }
                #expect(copied == Int64(content.count))
                #expect(reports.count >= 12 && reports == reports.sorted() && reports.last == copied)
                let result = try await File.open(scratch.file("copy"), on: ring)
                #expect(try await result.readToEnd() == content)
                #expect(try await result.metadata().permissions == (try await ring.metadata(at: source)).permissions)
                try await result.close()

                // Cancelled mid-copy: CancellationError, and every descriptor closed.
                let big = scratch.write("big", pattern(count: 64 << 20, seed: 3))
                let outcome = await cancelOnceInFlight(on: ring) {
                    do {
                        try await File.copy(from: big, to: scratch.file("big-copy"), on: ring, pieceSize: 64 << 10)
                        return "copied"
                    } catch is CancellationError { return "cancelled" } catch { return "\(error)" }
                }
                #expect(outcome == "cancelled" || outcome == "copied")
                #expect(scratch.openDescriptors == 0)

                // Copying a file onto itself is refused before anything is truncated.
                await #expect(throws: UringError.self) {
                    try await File.copy(from: source, to: source, on: ring)
                }
                #expect(try await ring.metadata(at: source).size == Int64(content.count))

                do {
                    try await File.copy(from: scratch.file("missing"), to: scratch.file("never"), on: ring)
                    Issue.record("copied a missing file")
                } catch let error as UringError {
                    #expect(error.operation == .open && error.path == scratch.file("missing"))
                }
                await settle(ring)
            }
            #expect(scratch.openDescriptors == 0)
        }

        @Test("registered buffers as a pool: next() waits while all are lent, in turn; cancellation and shutdown end a wait")
        func bufferPool() async throws {
            let scratch = Scratch()
            let content = pattern(count: 4096, seed: 9)
            let path = scratch.write("data", content)
            let ring = try RingActor()
            let buffers = try await ring.registerBuffers(count: 2, size: 4096)
            var first = try await buffers.next()
            let second = try await buffers.next()
            #expect(buffers.availableCount == 0)

            // A waiter gets the buffer the moment one comes back.
            let waiter = Task { () -> Int in
                let buffer = try await buffers.next()
                return buffer.index.position
            }
            try await waitUntil { buffers.waitingCount == 1 }
            let returned = second.index.position
            _ = consume second
            #expect(try await waiter.value == returned)

            // A cancelled wait takes nothing and leaves no waiter.
            let held = try await buffers.next()
            let cancelled = Task { () -> String in
                do {
                    _ = try await buffers.next()
                    return "got one"
                } catch is CancellationError { return "cancelled" } catch { return "\(error)" }
            }
            try await waitUntil { buffers.waitingCount == 1 }
            cancelled.cancel()
            #expect(await cancelled.value == "cancelled")
            #expect(buffers.waitingCount == 0)

            // Pool buffers work for the fixed operations like any other.
            let file = try await File.open(path, on: ring)
            #expect(try await file.read(into: &first, at: 0) == 4096)
            #expect(first.copyBytes() == content)
            try await file.close()

            // Shutdown ends a wait that no request in the kernel would end.
            let stranded = Task { () -> UringError.Kind? in
                do {
                    _ = try await buffers.next()
                    return nil
                } catch let error as UringError { return error.kind } catch { return nil }
            }
            try await waitUntil { buffers.waitingCount == 1 }
            await ring.shutdown()
            #expect(await stranded.value == .ringShutDown)
            _ = consume held
            _ = consume first
        }
    }
}
