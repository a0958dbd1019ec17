import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Multishot reads, poll and signals", .checksDescriptorLeaks)
    struct StreamTests {
        @Test("lines from a pipe through one multishot read, including a last line without a newline", .requires(.readMultishot, "IORING_OP_READ_MULTISHOT (6.7+)"))
        func linesFromPipe() async throws {
            try await checkLinesFromPipe(RingOptions())
        }

        @Test("lines from a pipe before multishot reads: one read per chunk, the same lines")
        func linesFromPipeWithSingleReads() async throws {
            try await checkLinesFromPipe(Self.withoutMultishotReads)
        }

        static var withoutMultishotReads: RingOptions {
            var options = RingOptions()
            options.treatedAsUnsupported = [.readMultishot]
            return options
        }

        private func checkLinesFromPipe(_ options: RingOptions) async throws {
            try await RingActor.run(options: options) { ring in
                let (readEnd, writeEnd) = makePipe()
                let reading = File(adopting: FileDescriptor(rawValue: readEnd), path: "<pipe>", on: ring)
                let text = (0..<500).map { "line \($0) " + String(repeating: "x", count: $0 % 50) }
                // A plain thread writes in pieces, pausing between them, so
                // lines arrive split across many chunks.
                let writer = Task.detached {
                    for piece in stride(from: 0, to: text.count, by: 37) {
                        let chunk = Array((text[piece..<min(piece + 37, text.count)].joined(separator: "\n") + "\n").utf8)
                        var done = 0
                        while done < chunk.count {
                            let n = chunk[done...].withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) }
                            precondition(n > 0)
                            done += n
                        }
                        usleep(200)
                    }
                    _ = write(writeEnd, "last\r\nunterminated", 18)
                    close(writeEnd)
                }
                var lines: [String] = []
                let submitted = ring.statistics.submitted
                for try await line in reading.arrivals().lines {
                    lines.append(line)
                }
                await writer.value
                #expect(lines == text + ["last", "unterminated"])
                #expect(ring.statistics.submitted - submitted < UInt64(text.count / 4), "far fewer requests than lines")
                try await reading.close()
                await settle(ring)
            }
        }

        // One test only: it swaps the process's descriptor 0, which a second
        // test doing the same in parallel would race with. It reads through
        // a multishot read where the kernel has one and single reads before
        // 6.7; the pipe test above checks both ways on every kernel.
        @Test("standard input as lines: descriptor 0 swapped for a pipe, read through File.standardInput")
        func standardInputLines() async throws {
            let (readEnd, writeEnd) = makePipe()
            let savedInput = dup(0)
            dup2(readEnd, 0)
            close(readEnd)
            defer {
                dup2(savedInput, 0)
                close(savedInput)
            }
            try await RingActor.run { ring in
                let input = try File.standardInput(on: ring)
                _ = write(writeEnd, "a\nb\n", 4)
                close(writeEnd)
                var lines: [String] = []
                for try await line in input.arrivals().lines { lines.append(line) }
                #expect(lines == ["a", "b"], "ends at end of file")
            }
        }

        @Test("a multishot read of a regular file fails with a clear error", .requires(.readMultishot, "IORING_OP_READ_MULTISHOT (6.7+)"))
        func multishotReadOfRegularFile() async throws {
            let scratch = Scratch()
            let path = scratch.write("plain", [1, 2, 3])
            try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                do {
                    for try await _ in file.arrivals() {}
                    Issue.record("a regular file was read multishot")
                } catch let error as UringError {
                    #expect(error.operation == .readMultishot && error.path == path)
                }
                try await file.close()
                await settle(ring)
            }
        }

        // No kernel condition: before 6.7 the lines come from single reads.
        @Test("a line longer than the limit throws instead of growing")
        func lineTooLong() async throws {
            try await RingActor.run { ring in
                let pipe = try Pipe(on: ring)
                try await pipe.writing.writeAll([UInt8](repeating: UInt8(ascii: "z"), count: 5000))
                await #expect(throws: UringError.self) {
                    for try await _ in pipe.reading.arrivals().lines(maximumLength: 1000) {}
                }
                await settle(ring)
            }
        }

        @Test("poll: one-shot readiness of a descriptor the library does not own, and cancellation")
        func pollOnce() async throws {
            try await RingActor.run { ring in
                let (readEnd, writeEnd) = makePipe()
                defer { close(readEnd); close(writeEnd) }
                let writable = try await ring.poll(FileDescriptor(rawValue: writeEnd), for: .writable)
                #expect(writable.contains(.writable))
                let outcome = await cancelOnceInFlight(on: ring) {
                    do {
                        _ = try await ring.poll(FileDescriptor(rawValue: readEnd), for: .readable)
                        return "ready"
                    } catch is CancellationError { return "cancelled" } catch { return "\(error)" }
                }
                #expect(outcome == "cancelled")
                _ = write(writeEnd, "x", 1)
                let readable = try await ring.poll(FileDescriptor(rawValue: readEnd), for: .readable)
                #expect(readable == .readable, "\(readable)")
                await settle(ring)
            }
        }

        @Test("code isolated to an actor (the ring's, with no executor preference, or another): a cancelled poll and a cancelled readiness stream end with CancellationError and leave nothing in flight; a wait that completes resumes on the actor")
        func cancelledWhileIsolated() async throws {
            let ring = try RingActor()
            let other = OtherActor()
            let (readEnd, writeEnd) = makePipe()
            defer { close(readEnd); close(writeEnd) }
            let descriptor = FileDescriptor(rawValue: readEnd)
            for stream in [false, true] {
                for onRing in [true, false] {
                    // A task of the global pool, on an actor only through the
                    // isolation of the function it calls.
                    let waiter = Task {
                        if onRing {
                            try await awaitByte(isolatedTo: ring, ring, on: descriptor, stream: stream)
                        } else {
                            try await other.waitForByte(ring, on: descriptor, stream: stream)
                        }
                    }
                    while ring.statistics.inFlight == 0 && !Task.isCancelled { await Task.yield() }
                    waiter.cancel()
                    // Should the cancellation never reach the wait, a byte
                    // ends it after a while: the test then fails rather
                    // than hangs.
                    let rescue = Task {
                        try await Task.sleep(for: .seconds(10))
                        _ = write(writeEnd, "x", 1)
                    }
                    let outcome = await waiter.result
                    rescue.cancel()
                    let label = "\(stream ? "stream" : "poll") on \(onRing ? "the ring" : "another actor")"
                    #expect(throws: CancellationError.self, "\(label)") { try outcome.get() }
                    await settle(ring)
                    #expect(ring.statistics.inFlight == 0 && ring.statistics.slotsInUse == 0, "\(label)")
                }
            }
            // Waits that complete: each checks that it resumed on its actor.
            for stream in [false, true] {
                _ = write(writeEnd, "x", 1)
                try await awaitByte(isolatedTo: ring, ring, on: descriptor, stream: stream)
                _ = write(writeEnd, "x", 1)
                try await other.waitForByte(ring, on: descriptor, stream: stream)
            }
            await settle(ring)
            await ring.shutdown()
        }

        @Test("poll: multishot readiness events from one request, then hang-up")
        func pollMultishot() async throws {
            try await RingActor.run { ring in
                let (readEnd, writeEnd) = makePipe()
                defer { close(readEnd) }
                var events: [PollEvents] = []
                let submitted = ring.statistics.submitted
                var byte: UInt8 = 0
                _ = write(writeEnd, "1", 1)
                for try await event in ring.readiness(of: FileDescriptor(rawValue: readEnd), for: .readable) {
                    events.append(event)
                    if event.contains(.readable) { _ = read(readEnd, &byte, 1) }
                    if event.contains(.hangUp) { break }
                    if events.count < 3 {
                        _ = write(writeEnd, "2", 1)
                    } else if events.count == 3 {
                        close(writeEnd)
                    }
                }
                #expect(events.count >= 4)
                #expect(events.prefix(3).allSatisfy { $0.contains(.readable) })
                #expect(events.last!.contains(.hangUp))
                #expect(ring.statistics.submitted - submitted <= 2, "one request (and its cancellation)")
                await settle(ring)
            }
        }

        @Test("signals arrive as a sequence; each watcher sees each; the default action returns afterwards")
        func signalsSequence() async throws {
            try await RingActor.run { ring in
                let first = try ring.signals([.user1, .user2])
                let second = try ring.signals([.user1])
                kill(getpid(), SIGUSR1)
                kill(getpid(), SIGUSR2)
                var iterator = first.makeAsyncIterator()
                var received: Set<Signal> = []
                received.insert(try await iterator.next()!)
                received.insert(try await iterator.next()!)
                #expect(received == [.user1, .user2])
                var other = second.makeAsyncIterator()
                #expect(try await other.next() == .user1)
                #expect(Signal.interrupt.description == "SIGINT")
            }
            // Both sequences are gone: SIGUSR1's disposition is the default again.
            var current = sigaction()
            sigaction(SIGUSR1, nil, &current)
            #expect(current.__sigaction_handler.sa_handler == nil, "SIG_DFL restored")
            await #expect(throws: UringError.self) {
                try await RingActor.run { ring in _ = try ring.signals([Signal(rawValue: SIGKILL)]) }
            }
        }
    }
}

/// Waits until `descriptor` is readable, through one poll or a stream of
/// readiness events, from code isolated to `actor`; reads the byte, then
/// checks that the code resumed on `actor`.
private func awaitByte(
    isolatedTo actor: isolated any Actor, _ ring: RingActor, on descriptor: FileDescriptor, stream: Bool
) async throws {
    if stream {
        for try await event in ring.readiness(of: descriptor, for: .readable) where event.contains(.readable) { break }
    } else {
        _ = try await ring.poll(descriptor, for: .readable)
    }
    var byte: UInt8 = 0
    _ = read(descriptor.rawValue, &byte, 1)
    actor.preconditionIsolated("the wait resumed off its actor")
}

/// An actor of the test's own, with the default executor.
private actor OtherActor {
    func waitForByte(_ ring: RingActor, on descriptor: FileDescriptor, stream: Bool) async throws {
        try await awaitByte(isolatedTo: self, ring, on: descriptor, stream: stream)
    }
}
