import Glibc
import SystemPackage
import Testing

@testable import CUring
@testable import Uring

extension AllTests {
    @Suite("Engine internals", .checksDescriptorLeaks)
    struct EngineTests {
        @Test("closures posted to the ring thread from another thread always run, even as it goes to sleep")
        func ringThreadActionsAreNeverLost() async throws {
            // An action posted while the ring thread was between draining its
            // inbox and sleeping once slept with it (a lost wake-up that hung
            // the benchmark's buffer registration). The window is a few
            // instructions wide, so this is a regression check of the path,
            // not a reliable reproduction.
            let ring = try RingActor()
            let core = ring.core
            var total = 0
            for round in 0..<5_000 {
                total += await core.onRingThread { _ in 1 }
                if round % 100 == 0 { usleep(60) }  // let the ring thread reach its sleep
            }
            #expect(total == 5_000)
            await ring.shutdown()
        }

        @Test("the ring thread stops polling before it sleeps while the work that wakes it keeps coming later than idleSpin")
        func idleSpinAdapts() async throws {
            var options = RingOptions()
            options.idleSpin = .microseconds(50)
            let budgets = try await RingActor.run(options: options) { ring in
                // Read on the ring thread (this body runs there), which owns
                // the budget. Each 2 ms timer wakes the thread long after it
                // slept, so each halves the budget; a wake-up that came soon
                // (the thread preempted between arming the timer and
                // sleeping, on a busy machine) doubles it instead, so the
                // loop allows many more rounds than the six halvings needed.
                var budgets = [ring.core.idleSpinBudget]
                for _ in 0..<100 where ring.core.idleSpinBudget > 0 {
                    try await ring.sleep(for: .milliseconds(2))
                    budgets.append(ring.core.idleSpinBudget)
                }
                return budgets
            }
            #expect(budgets.first! <= 50_000)
            #expect(budgets.last == 0, "\(budgets)")
            // Polling off stays off.
            options.idleSpin = .zero
            let off = try await RingActor.run(options: options) { ring in
                try await ring.sleep(for: .milliseconds(1))
                return ring.core.idleSpinBudget
            }
            #expect(off == 0)
        }

        @Test("inside run, a generic loop over the ring's sequences sees every element on the ring thread")
        func genericIterationStaysOnRingThread() async throws {
            let scratch = Scratch()
            let path = scratch.write("generic", pattern(count: 16 * 4096))
            let (chunks, ticks) = try await RingActor.run { ring in
                let file = try await File.open(path, on: ring)
                // Generic over the sequence, as a library helper would be,
                // and not isolated to anything: the ring's executor is
                // preferred inside `run`, so the loop's body runs there.
                // (Whether `next` itself hops is not visible from here; the
                // walk's `perf` count is what showed it does not.)
                let chunks = try await ringThreadAtEachStep(of: file.chunks(size: 4096), core: ring.core, limit: 100)
                let ticks = try await ringThreadAtEachStep(of: ring.ticks(every: .milliseconds(1)), core: ring.core, limit: 3)
                try await file.close()
                return (chunks, ticks)
            }
            #expect(chunks == Array(repeating: true, count: 16))
            #expect(ticks == Array(repeating: true, count: 3))
        }

        /// For each element, up to `limit`, whether the loop body ran on the
        /// ring thread.
        private nonisolated func ringThreadAtEachStep<Elements: AsyncSequence>(
            of elements: Elements, core: RingCore, limit: Int
        ) async throws -> [Bool] {
            var onRingThread: [Bool] = []
            for try await _ in elements {
                onRingThread.append(core.isRingThread)
                if onRingThread.count == limit { break }
            }
            return onRingThread
        }

        @Test("a linked chain runs in order, and a failed step cancels the rest")
        func linkedChain() async throws {
            let scratch = Scratch()
            let path = scratch.write("chain", [])
            let ring = try RingActor()
            let core = ring.core
            let fd = open(path.string, O_RDWR)
            defer { close(fd) }
            let data = PathStorage("written by a chain")
            let length = UInt32(strlen(data.pointer))

            // write, then fsync: both succeed, in order.
            var slots = core.submitChain(2) { step, request in
                if step == 0 {
                    io_uring_prep_write(&request, fd, data.pointer, length, 0)
                } else {
                    io_uring_prep_fsync(&request, fd, 0)
                }
                return nil
            }
            var results: [Int32] = []
            for slot in slots { results.append(await core.completion(of: slot).result) }
            #expect(results == [Int32(length), 0])

            // A read from a bad descriptor fails; the NOP linked after it is
            // cancelled and says so.
            slots = core.submitChain(3) { step, request in
                if step == 1 {
                    io_uring_prep_read(&request, -1, data.pointer, 1, 0)
                } else {
                    io_uring_prep_nop(&request)
                }
                return nil
            }
            results = []
            for slot in slots { results.append(await core.completion(of: slot).result) }
            #expect(results == [0, -EBADF, -ECANCELED])
            withExtendedLifetime(data) {}
            #expect(ring.statistics.slotsInUse == 0)
            await ring.shutdown()
        }

        @Test(
            "multishot slots deliver every intermediate completion, then the final one",
            .enabled(if: RingCore.kernelIsAtLeast(6, 4), "the kernel lacks repeating timeouts (IORING_TIMEOUT_MULTISHOT, 6.4+)"))
        func multishot() async throws {
            let ring = try RingActor()
            let core = ring.core
            let time = KernelTimespec(.milliseconds(2))
            let events = EventLog()
            let slot = core.submit(keepAlive: time, onIntermediateCompletion: { result, _ in events.append(result) }) {
                request in
                // IORING_TIMEOUT_MULTISHOT (1 << 6), kernel 6.4+: fire 3 times.
                io_uring_prep_timeout(&request, time.pointer, 3, 1 << 6)
            }
            let final = await core.completion(of: slot)
            #expect(final.result == -ETIME)
            #expect(events.values == [-ETIME, -ETIME], "two intermediate completions before the last")
            await ring.shutdown()
        }

        @Test("no descriptor or slot leaks across a mixed workload, counted in /proc/self/fd")
        func noLeakedDescriptors() async throws {
            await waitForRingThreadsToEnd()
            let before = openDescriptorCount()
            do {
                let scratch = Scratch()
                let path = scratch.write("w", pattern(count: 200_000))
                try await RingActor.run { ring in
                    for round in 0..<20 {
                        let file = try await File.open(path, on: ring)
                        var buffer = [UInt8](repeating: 0, count: 1000)
                        _ = try await file.read(into: &buffer, at: Int64(round))
                        var pieces = 0
                        for try await _ in file.chunks(size: 4096) {
                            pieces += 1
                            if pieces == round { break }
                        }
                        _ = try? await File.open(scratch.file("missing"), on: ring)
                        if round % 2 == 0 {
                            try await file.close()
                        } else {
                            // Left to deinit, after a refused read.
                            _ = try? await file.read(into: &buffer, at: -1)
                        }
                    }
                    #expect(ring.statistics.slotsInUse >= 0)
                }
            }
            // Rings close their last descriptor as their threads end.
            await waitForRingThreadsToEnd()
            #expect(threads(named: "uring-ring") == 0)
            #expect(openDescriptorCount() == before)
        }
    }
}

/// Collects values from the ring thread for a test to read afterwards.
final class EventLog: @unchecked Sendable {
    // `@unchecked Sendable`: appended on the ring thread before the final
    // completion is published, read by the test after it.
    private(set) var values: [Int32] = []
    func append(_ value: Int32) { values.append(value) }
}

extension AllTests.EngineTests {
    @Test("callers off the ring thread stop polling long for results that come late")
    func adaptiveCallerSpin() async throws {
        var options = RingOptions()
        options.callerSpin = .microseconds(40)
        let ring = try RingActor(options: options)
        #expect(ring.core.spinBudget.load(ordering: .relaxed) == 40_000)
        // Each 2 ms sleep misses the polling window, from an ordinary task.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for _ in 0..<8 { try await ring.sleep(for: .milliseconds(2)) }
            }
            try await group.waitForAll()
        }
        #expect(ring.core.spinBudget.load(ordering: .relaxed) == RingCore.minimumSpin)
        await ring.shutdown()
    }
}

/// An actor of the test's own, not a ring's.
private actor IsolatedCaller {
    func sleepRepeatedly(on ring: RingActor) async throws {
        for _ in 0..<8 { try await ring.sleep(for: .milliseconds(2)) }
    }
}

extension AllTests.EngineTests {
    @Test("code isolated to an actor never polls for results, so the polling budget is untouched")
    func isolatedCallersDoNotSpin() async throws {
        var options = RingOptions()
        options.callerSpin = .microseconds(40)
        let ring = try RingActor(options: options)
        // Had the actor polled, each 2 ms sleep would have missed the window
        // and halved the budget (as in `adaptiveCallerSpin`).
        try await IsolatedCaller().sleepRepeatedly(on: ring)
        #expect(ring.core.spinBudget.load(ordering: .relaxed) == 40_000)
        await ring.shutdown()
    }
}

extension AllTests.EngineTests {
    @Test(
        "requests queued behind the in-flight limit go in as room frees up, with no one posting",
        .timeLimit(.minutes(1)))
    func queuedRequestsFlowWithoutPosts() async throws {
        var options = RingOptions(entries: 4)
        options.maximumInFlight = 2
        let ring = try RingActor(options: options)
        // Ordinary tasks poll for their results, so completions queue no jobs
        // on the ring thread: only the ring itself can move the queue along.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<64 {
                group.addTask { try await ring.sleep(for: .microseconds(300)) }
            }
            try await group.waitForAll()
        }
        // Every sleep ended (a hang is what this test catches). A sleep
        // whose deadline had already passed when it ran (a slow guest can
        // take 300 µs to get there) returns without a request, so the count
        // is at most 64, and every request made completed.
        let stats = ring.statistics
        #expect(stats.submitted > 0 && stats.submitted <= 64 && stats.completed == stats.submitted, "\(stats)")
        await ring.shutdown()
    }

    @Test("a request queued behind the in-flight limit is cancelled at once", .timeLimit(.minutes(1)))
    func cancelQueuedRequest() async throws {
        var options = RingOptions(entries: 4)
        options.maximumInFlight = 1
        let ring = try RingActor(options: options)
        await withTaskGroup(of: Void.self) { outer in
            // This one holds the only place in the kernel.
            outer.addTask { try? await ring.sleep(for: .seconds(3600)) }
            while ring.statistics.inFlight == 0 && !Task.isCancelled { await Task.yield() }
            let outcome = await withTaskGroup(of: String.self) { inner in
                inner.addTask {
                    do {
                        try await ring.nop()
                        return "completed"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                while ring.statistics.slotsInUse < 2 && !Task.isCancelled { await Task.yield() }
                inner.cancelAll()
                return await inner.next()!
            }
            #expect(outcome == "cancelled")
            #expect(ring.statistics.inFlight == 1, "the long sleep is still in the kernel")
            outer.cancelAll()
        }
        await ring.shutdown()
    }

    @Test("a descriptor number reused after chunks stop early receives no stray read")
    func noStrayReadsAfterEarlyStop() async throws {
        let scratch = Scratch()
        let path = scratch.write("big", pattern(count: 1 << 20))
        let ring = try RingActor()
        let file = try await File.open(path, on: ring)
        let message = pattern(count: 512, seed: 9)
        for _ in 0..<100 {
            for try await _ in file.chunks(size: 4096, readAhead: 8) { break }
            // A new pipe likely takes the number the sequence's duplicate had.
            let (readEnd, writeEnd) = makePipe()
            _ = message.withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) }
            close(writeEnd)
            var received = [UInt8](repeating: 0, count: 1024)
            let n = received.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            close(readEnd)
            #expect(n == message.count && Array(received[..<max(n, 0)]) == message, "a stray read took pipe data")
        }
        try await file.close()
        await ring.shutdown()
    }
}
