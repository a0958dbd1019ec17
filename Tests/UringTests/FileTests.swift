import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Files", .checksDescriptorLeaks)
    struct FileTests {
        @Test("write at offsets, read back, and read short at the end of the file")
        func readWriteAndShortReads() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let path = scratch.file("data")
                let file = try await File.open(path, .readWrite, options: [.create, .exclusive], on: ring)
                let content = pattern(count: 100)
                #expect(try await file.write(content, at: 0) == 100)

                var buffer = [UInt8](repeating: 0, count: 4096)
                #expect(try await file.read(into: &buffer, at: 0) == 100)
                #expect(Array(buffer[..<100]) == content)
                #expect(buffer.count == 4096, "the buffer keeps its size")
                #expect(try await file.read(into: &buffer, at: 50) == 50)
                #expect(Array(buffer[..<50]) == Array(content[50...]))
                #expect(try await file.read(into: &buffer, at: 100) == 0, "at the end of the file")
                #expect(try await file.read(into: &buffer, at: 1 << 40) == 0, "far past the end")

                var all = [UInt8](repeating: 0, count: 250)
                #expect(try await file.readAll(into: &all, at: 0) == 100)
                try await file.close()
            }
            #expect(scratch.openDescriptors == 0)
        }

        @Test("a batch of reads at many offsets in one await, from the ring and from another thread")
        func batchReads() async throws {
            let scratch = Scratch()
            let content = pattern(count: 64 * 1024)
            let path = scratch.write("batch", content)
            let offsets: [Int64] = [4096, 0, 60_000, 70_000, 12_345]
            func check(_ buffers: [[UInt8]], _ counts: [Int]) {
                #expect(counts == [100, 100, 100, 0, 100], "the last piece is past the end")
                for (i, offset) in offsets.enumerated() where counts[i] > 0 {
                    #expect(Array(buffers[i][..<counts[i]]) == Array(content[Int(offset)..<Int(offset) + counts[i]]))
                }
            }
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                var buffers = [[UInt8]](repeating: [UInt8](repeating: 0, count: 100), count: offsets.count)
                let submitted = ring.statistics.submitted
                let enters = ring.statistics.kernelEnters
                let counts = try await file.read(into: &buffers, atOffsets: offsets)
                check(buffers, counts)
                #expect(ring.statistics.submitted - submitted == 5)
                #expect(ring.statistics.kernelEnters - enters <= 2, "submitted together")
                await #expect(throws: UringError.self) {
                    _ = try await file.read(into: &buffers, atOffsets: [0])
                }
                try await file.close()

                // A failing batch throws after every read completed.
                let bad = File(adopting: FileDescriptor(rawValue: 1_000_000), path: "/not-open", on: ring)
                do {
                    _ = try await bad.read(into: &buffers, atOffsets: offsets)
                    Issue.record("a batch on a bad descriptor succeeded")
                } catch let error as UringError {
                    #expect(error.errno == .badFileDescriptor && error.path == "/not-open")
                }
                _ = try bad.takeDescriptor()
                #expect(ring.statistics.slotsInUse == 0)
            }
            // From an ordinary task, through the inbox.
            let ring = try RingActor()
            let file = try await File.open(path, on: ring)
            var buffers = [[UInt8]](repeating: [UInt8](repeating: 0, count: 100), count: offsets.count)
            let counts = try await file.read(into: &buffers, atOffsets: offsets)
            check(buffers, counts)
            try await file.close()
            await ring.shutdown()
        }

        @Test("blocks of one aligned buffer read at many offsets in one await")
        func blockReads() async throws {
            let scratch = Scratch()
            let content = pattern(count: 64 * 1024)
            let path = scratch.write("blocks", content)
            let offsets: [Int64] = [8192, 0, 61_440, 70_000, 12_345]
            let blockSize = 4096
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                var blocks = AlignedBuffer(count: offsets.count * blockSize + 100)
                let submitted = ring.statistics.submitted
                let counts = try await file.read(into: &blocks, blockSize: blockSize, atOffsets: offsets)
                try #require(counts.count == offsets.count)
                #expect(counts == [4096, 4096, 4096, 0, 4096], "the fourth block is past the end")
                #expect(ring.statistics.submitted - submitted == 5)
                func check(_ blocks: borrowing AlignedBuffer) {
                    let span = blocks.span
                    for (i, offset) in offsets.enumerated() where counts[i] > 0 {
                        let start = i * blockSize
                        let read = (start..<start + counts[i]).map { span[$0] }
                        #expect(read == Array(content[Int(offset)..<Int(offset) + counts[i]]), "block \(i)")
                    }
                    // The block past the end and the buffer's tail are left as they were.
                    let untouched = (3 * blockSize..<4 * blockSize).map { span[$0] }
                        + (offsets.count * blockSize..<span.count).map { span[$0] }
                    #expect(untouched.allSatisfy { $0 == 0 })
                }
                check(blocks)
                #expect(try await file.read(into: &blocks, blockSize: blockSize, atOffsets: []) == [])

                // Bad arguments: typed errors naming the file, nothing submitted.
                let before = ring.statistics.submitted
                for (size, at) in [(0, offsets), (Int(Int32.max), [0]), (blockSize, offsets + [0]), (blockSize, [-1])] {
                    do {
                        _ = try await file.read(into: &blocks, blockSize: size, atOffsets: at)
                        Issue.record("block size \(size) at \(at) was accepted")
                    } catch let error as UringError {
                        #expect(error.kind == .invalidArgument && error.operation == .read && error.path == path)
                    }
                }
                #expect(ring.statistics.submitted == before)
                try await file.close()
                #expect(ring.statistics.slotsInUse == 0)
            }
            #expect(scratch.openDescriptors == 0)
        }

        @Test("reads and writes at the current position advance it; append writes at the end")
        func currentPosition() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let path = scratch.file("log")
                let writer = try await File.open(path, .writeOnly, options: [.create, .append], on: ring)
                try await writer.writeAll(Array("one ".utf8))
                try await writer.writeAll(Array("two".utf8))
                try await writer.close()

                let reader = try await File.open(path, on: ring)
                var first = [UInt8](repeating: 0, count: 4)
                var second = [UInt8](repeating: 0, count: 16)
                #expect(try await reader.read(into: &first) == 4)
                #expect(try await reader.read(into: &second) == 3)
                #expect(String(decoding: first, as: UTF8.self) == "one ")
                #expect(String(decoding: second[..<3], as: UTF8.self) == "two")
                #expect(try await reader.readToEnd() == Array("one two".utf8))
            }
            #expect(scratch.openDescriptors == 0)
        }

        @Test("vectored reads and writes")
        func vectored() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            let file = try await File.open(
                scratch.file("v"), .readWrite, options: [.create, .truncate], on: ring)
            let parts: [[UInt8]] = [Array("abc".utf8), Array("defgh".utf8), Array("ij".utf8)]
            #expect(try await file.write(parts, at: 10) == 10)
            var targets: [[UInt8]] = [[0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
            #expect(try await file.read(into: &targets, at: 10) == 10)
            #expect(targets[0] == Array("ab".utf8))
            #expect(targets[1] == Array("cdefg".utf8))
            #expect(Array(targets[2][..<3]) == Array("hij".utf8))
            // More buffers than one request may have: refused by name, before
            // the kernel sees it.
            var many = [[UInt8]](repeating: [0], count: 1_025)
            for attempt in [UringOperation.writeVectored, .readVectored] {
                do {
                    _ = attempt == .writeVectored ? try await file.write(many, at: 0) : try await file.read(into: &many, at: 0)
                    Issue.record("\(attempt) with 1,025 buffers succeeded")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument && error.operation == attempt, "\(error)")
                    #expect(error.path == scratch.file("v"))
                }
            }
            try await file.close()
            await ring.shutdown()
        }

        @Test("sync, syncData, preallocate and metadata")
        func durabilityAndMetadata() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let path = scratch.file("m")
                let file = try await File.open(
                    path, .readWrite, options: [.create], permissions: FilePermissions(rawValue: 0o600), on: ring)
                try await file.writeAll(pattern(count: 1000), at: 0)
                try await file.sync()
                try await file.syncData()
                try await file.preallocate(at: 0, length: 1 << 20, keepingSize: true)
                var metadata = try await file.metadata()
                #expect(metadata.type == .regular)
                #expect(metadata.size == 1000)
                #expect(metadata.permissions == FilePermissions(rawValue: 0o600))
                #expect(metadata.allocatedBytes >= 1 << 20)
                try await file.preallocate(at: 0, length: 4096 * 3)
                metadata = try await file.metadata()
                #expect(metadata.size == 4096 * 3)
                try await file.close()

                let byPath = try await ring.metadata(at: path)
                #expect(byPath.inode == metadata.inode)
                let directory = try await ring.metadata(at: FilePath(scratch.path))
                #expect(directory.type == .directory)
            }
        }

        @Test("path operations: mkdir, rename, unlink, rmdir, and open relative to a directory")
        func pathOperations() async throws {
            let scratch = Scratch()
            try await RingActor.run { ring in
                let dir = scratch.file("sub")
                try await ring.createDirectory(at: dir)
                let directory = try await Directory.open(dir, on: ring)
                let file = try await File.open("a.txt", relativeTo: directory, .writeOnly, options: [.create])
                try await file.writeAll(Array("hello".utf8))
                try await file.close()
                #expect(try await directory.metadata(of: "a.txt").size == 5)
                try await directory.close()

                try await ring.rename(dir.appending("a.txt"), to: dir.appending("b.txt"))
                await #expect(throws: UringError.self) { try await ring.metadata(at: dir.appending("a.txt")) }
                #expect(try await ring.metadata(at: dir.appending("b.txt")).size == 5)
                try await ring.removeFile(at: dir.appending("b.txt"))
                try await ring.removeDirectory(at: dir)
                await #expect(throws: UringError.self) { try await ring.metadata(at: dir) }
            }
            #expect(scratch.openDescriptors == 0)
        }

        @Test("a file dropped without close() is closed by its deinit")
        func deinitCloses() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            do {
                let file = try await File.open(scratch.file("x"), .writeOnly, options: .create, on: ring)
                #expect(scratch.openDescriptors == 1)
                _ = file.descriptor
            }
            #expect(scratch.openDescriptors == 0)
            await ring.shutdown()
        }

        @Test(
            "chunks are byte-identical to the file, whatever the chunk size",
            arguments: [(10_000, 4096), (8192, 4096), (1, 7), (0, 100), (300_001, 65_536)])
        func chunksMatchFile(size: Int, chunk: Int) async throws {
            let scratch = Scratch()
            let content = pattern(count: size, seed: UInt64(size + 1))
            let path = scratch.write("f", content)
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                var collected: [UInt8] = []
                var sizes: [Int] = []
                for try await piece in file.chunks(size: chunk, readAhead: 3) {
                    collected += piece
                    sizes.append(piece.count)
                }
                #expect(collected == content)
                #expect(sizes.dropLast().allSatisfy { $0 == chunk })
                try await file.close()
            }
            #expect(scratch.openDescriptors == 0)
        }

        @Test(
            "a regular file is read no further than its size: reads per file",
            arguments: [(3, 256 * 1024, 1), (0, 4096, 1), (8192, 4096, 3), (10_000, 4096, 3)])
        func chunksStopAtSize(size: Int, chunk: Int, reads: Int) async throws {
            let scratch = Scratch()
            let content = pattern(count: size, seed: 5)
            let path = scratch.write("f", content)
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                let before = ring.statistics.submitted
                var collected: [UInt8] = []
                for try await piece in file.chunks(size: chunk) { collected += piece }
                let submitted = ring.statistics.submitted - before
                #expect(collected == content)
                // A file of exactly two chunks needs a third read to see the
                // end; any other size ends with a short read.
                #expect(submitted == UInt64(reads), "\(submitted) reads for \(size) bytes in chunks of \(chunk)")
                try await file.close()
            }
        }

        @Test("a file that grows while it is read is read to its new end")
        func chunksFollowGrowth() async throws {
            let scratch = Scratch()
            let first = pattern(count: 10_000, seed: 6)
            let more = pattern(count: 5_000, seed: 7)
            let path = scratch.write("f", first)
            try await RingActor.run { ring in
                let file = try await File.open(path, .readWrite, on: ring)
                var collected: [UInt8] = []
                // One read at a time, so the growth lands before the last read.
                for try await piece in file.chunks(size: 4096, readAhead: 1) {
                    if collected.isEmpty { try await file.writeAll(more, at: Int64(first.count)) }
                    collected += piece
                }
                #expect(collected == first + more)
                try await file.close()
            }
        }

        @Test("chunks a consumer keeps are never read into again; dropped ones are, without changing what is read")
        func chunksKeptStayIntact() async throws {
            let scratch = Scratch()
            let content = pattern(count: 40 * 4096, seed: 21)
            let path = scratch.write("f", content)
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                // Every other chunk is kept; the sequence reuses the storage
                // of those dropped, and must copy before reusing a kept one.
                var kept: [(offset: Int, bytes: [UInt8])] = []
                var offset = 0
                var collected: [UInt8] = []
                for try await piece in file.chunks(size: 4096, readAhead: 4) {
                    if (offset / 4096) % 2 == 0 { kept.append((offset, piece)) }
                    collected += piece
                    offset += piece.count
                }
                #expect(collected == content)
                #expect(kept.count == 20)
                let changed = kept.filter { !$0.bytes.elementsEqual(content[$0.offset..<$0.offset + 4096]) }.map(\.offset)
                #expect(changed.isEmpty, "chunks changed after they were returned, at offsets \(changed)")
                try await file.close()
            }
        }

        @Test("stopping chunks early cancels the read-ahead and leaks nothing")
        func chunksStopEarly() async throws {
            let scratch = Scratch()
            let path = scratch.write("big", pattern(count: 1 << 20))
            let ring = try RingActor()
            let file = try await File.open(path, on: ring)
            var seen = 0
            for try await piece in file.chunks(size: 4096, readAhead: 8) {
                seen += piece.count
                if seen >= 3 * 4096 { break }
            }
            #expect(seen == 3 * 4096)
            // Abandoned reads give their slots back once the kernel is done,
            // and only then the sequence's duplicate descriptor is closed.
            try await ring.nop()
            for _ in 0..<200 where ring.statistics.slotsInUse > 0 { try await ring.sleep(for: .milliseconds(1)) }
            #expect(ring.statistics.slotsInUse == 0)
            #expect(ring.statistics.inFlight == 0)
            #expect(scratch.openDescriptors == 1, "only the file; the sequence's duplicate is closed")
            try await file.close()
            #expect(scratch.openDescriptors == 0)
            await ring.shutdown()
        }

        @Test("chunks outlive the file they came from")
        func chunksOutliveFile() async throws {
            let scratch = Scratch()
            let content = pattern(count: 50_000)
            let path = scratch.write("f", content)
            let ring = try RingActor()
            let file = try await File.open(path, on: ring)
            let chunks = file.chunks(size: 8192)
            try await file.close()
            var collected: [UInt8] = []
            for try await piece in chunks { collected += piece }
            #expect(collected == content)
            await ring.shutdown()
        }

        // Sized for the sanitizer runs: 100 MiB took 52 s under ThreadSanitizer
        // and over the minute under AddressSanitizer on this kind of machine.
        @Test("24 MiB written then read back through chunks has the same checksum")
        func largeFile() async throws {
            let scratch = Scratch()
            let total = 24 << 20
            let block = pattern(count: 1 << 20, seed: 42)
            var expected = Checksum()
            try await RingActor.run { ring in
                let path = scratch.file("large")
                let file = try await File.open(path, .readWrite, options: [.create, .truncate], on: ring)
                var offset: Int64 = 0
                var block = block
                for index in 0..<(total / block.count) {
                    block[0] = UInt8(truncatingIfNeeded: index)  // every block differs
                    try await file.writeAll(block, at: offset)
                    expected.update(block)
                    offset += Int64(block.count)
                }
                #expect(try await file.metadata().size == Int64(total))
                var actual = Checksum()
                var count = 0
                for try await piece in file.chunks(size: 1 << 20, readAhead: 4) {
                    actual.update(piece)
                    count += piece.count
                }
                #expect(count == total)
                #expect(actual.value == expected.value)
                try await file.close()
            }
        }

        @Test(
            "AlignedBuffer works with O_DIRECT and exposes its bytes as a span",
            .enabled(if: directIOWorksInTmp(), "the file system under /tmp refuses O_DIRECT"))
        func alignedDirect() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            let path = scratch.file("direct")
            let file = try await File.open(path, .readWrite, options: [.create, .direct], on: ring)
            var buffer = AlignedBuffer(count: 8192)
            #expect(Int(bitPattern: buffer.withUnsafeIOBytes { $0.baseAddress }) % AlignedBuffer.pageSize == 0)
            buffer.withUnsafeMutableBytes { bytes in
                for i in 0..<bytes.count { bytes[i] = UInt8(truncatingIfNeeded: i * 7) }
            }
            try await file.writeAll(buffer, at: 0)
            var back = AlignedBuffer(count: 8192)
            #expect(try await file.read(into: &back, at: 0) == 8192)
            let span = back.bytes
            #expect(span.byteCount == 8192)
            #expect(span.unsafeLoad(fromByteOffset: 7, as: UInt8.self) == UInt8(truncatingIfNeeded: 49))
            #expect(back.copyBytes() == buffer.copyBytes())
            try await file.close()
            await ring.shutdown()
        }

        @Test("ownership form: the buffer comes back with the count, or with the error")
        func ownershipForm() async throws {
            let scratch = Scratch()
            let path = scratch.write("o", pattern(count: 64))
            let ring = try RingActor()
            let file = try await File.open(path, on: ring)
            var result = await file.read(consuming: AlignedBuffer(count: 4096), at: 0)
            #expect(try result.count == 64)
            #expect(result.buffer.count == 4096)
            #expect(result.buffer[0] == pattern(count: 1)[0])
            result = await file.read(consuming: result.buffer, at: -1)
            #expect(throws: UringError.self) { try result.count }
            #expect(result.buffer.count == 4096, "the buffer survives the error")
            try await file.close()
            await ring.shutdown()
        }
    }
}

/// Whether a file under /tmp can be opened with O_DIRECT (tmpfs cannot).
func directIOWorksInTmp() -> Bool {
    let scratch = Scratch()
    let fd = open(scratch.path + "/probe", O_CREAT | O_RDWR | OpenOptions.direct.rawValue, 0o600)
    if fd >= 0 { close(fd) }
    return fd >= 0
}
