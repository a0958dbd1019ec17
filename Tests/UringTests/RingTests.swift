import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
@Suite("Ring and executor", .checksDescriptorLeaks)
struct RingTests {
    @Test("an awaited NOP makes a round trip and the counters balance")
    func nopRoundTrip() async throws {
        let ring = try RingActor()
        try await ring.nop()
        let stats = ring.statistics
        #expect(stats.submitted == 1)
        #expect(stats.completed == 1)
        #expect(stats.inFlight == 0)
        await ring.shutdown()
    }

    @Test("run executes its body on the ring thread, and child tasks too")
    func runIsolation() async throws {
        let onRing = try await RingActor.run { ring in
            var all = ring.executor.isCurrentThread
            try await ring.nop()
            all = all && ring.executor.isCurrentThread
            let executor = ring.executor
            let children = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try? await Task.sleep(for: .milliseconds(1))
                        return executor.isCurrentThread
                    }
                }
                var all = true
                for await onRing in group { all = all && onRing }
                return all
            }
            return all && children
        }
        #expect(onRing)
    }

    @Test("operations from ordinary tasks, off the ring thread, complete")
    func fromGlobalPool() async throws {
        let ring = try RingActor()
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<200 { try await ring.nop() }
                    return ring.executor.isCurrentThread
                }
            }
            for try await onRing in group { #expect(!onRing) }
        }
        #expect(ring.statistics.completed == 1600)
        await ring.shutdown()
    }

    @Test("10,000 concurrent operations on a ring with 8 entries wait for room, never fail")
    func submissionBackPressure() async throws {
        var options = RingOptions(entries: 8)
        options.callerSpin = .zero
        let ring = try RingActor(options: options)
        #expect(ring.queueSizes.submission == 8)
        // Half from ordinary tasks, half from tasks on the ring thread.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<5_000 {
                group.addTask { try await ring.nop() }
            }
            try await group.waitForAll()
        }
        try await withTaskExecutorPreference(ring.executor) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<5_000 {
                    group.addTask { try await ring.nop() }
                }
                try await group.waitForAll()
            }
        }
        let stats = ring.statistics
        #expect(stats.submitted == 10_000)
        #expect(stats.completed == 10_000)
        #expect(stats.slotsInUse == 0)
        await ring.shutdown()
    }

    @Test("a completion flood overflows the CQ and nothing is lost")
    func completionQueueOverflow() async throws {
        var options = RingOptions(entries: 8)
        options.completionEntries = 16
        // Let far more requests into the kernel than the CQ can hold.
        options.maximumInFlight = 100_000
        let ring = try RingActor(options: options)
        let count = 2_000
        // Every request polls one pipe, and one byte written once all of
        // them are in the kernel completes them together: a burst far
        // larger than the 16-entry CQ, however slow the machine.
        let (readEnd, writeEnd) = makePipe()
        defer {
            close(readEnd)
            close(writeEnd)
        }
        let finished = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<count {
                group.addTask {
                    _ = try await ring.poll(FileDescriptor(rawValue: readEnd), for: .readable)
                    return 1
                }
            }
            while ring.statistics.inFlight < UInt64(count) {
                try Task.checkCancellation()
                await Task.yield()
            }
            _ = write(writeEnd, "x", 1)
            var finished = 0
            for try await one in group { finished += one }
            return finished
        }
        let stats = ring.statistics
        #expect(finished == count)
        #expect(stats.submitted == UInt64(count))
        #expect(stats.completed == UInt64(count))
        #expect(stats.completionQueueOverflows > 0, "the burst should have overflowed the CQ: \(stats)")
        #expect(stats.droppedCompletions == 0)
        await ring.shutdown()
    }

    @Test("shutdown cancels operations in flight and later operations fail clearly")
    func shutdownWithOperationsInFlight() async throws {
        let ring = try RingActor()
        let pipes = (0..<8).map { _ in makePipe() }
        let pipeNames = pipes.map { descriptorTarget($0.write)! }
        let kinds = await withTaskGroup(of: UringError.Kind?.self) { group in
            for pipe in pipes {
                group.addTask {
                    let file = File(adopting: FileDescriptor(rawValue: pipe.read), on: ring)
                    var buffer = [UInt8](repeating: 0, count: 16)
                    do {
                        _ = try await file.read(into: &buffer)
                        return nil
                    } catch let error as UringError {
                        return error.kind
                    } catch {
                        return nil
                    }
                }
            }
            // Let every read reach the kernel before shutting down.
            while ring.statistics.inFlight < 8 { try? await Task.sleep(for: .milliseconds(1)) }
            await ring.shutdown()
            return await group.reduce(into: [UringError.Kind?]()) { $0.append($1) }
        }
        #expect(kinds.count == 8)
        #expect(kinds.allSatisfy { $0 == .ringShutDown })
        #expect(ring.statistics.inFlight == 0)
        // Each read end was closed by its file: only the write end remains.
        for name in pipeNames {
            #expect(descriptors(matching: { $0 == name }) == 1)
        }
        for pipe in pipes { close(pipe.write) }

        await #expect(throws: UringError.self) { try await ring.nop() }
        do {
            try await ring.nop()
        } catch let error as UringError {
            #expect(error.kind == .ringShutDown)
            #expect(error.description.contains("shut down"))
        }
        await ring.shutdown()  // a second call is harmless
    }

    @Test("rings can be created and shut down many times without leaking threads or descriptors")
    func createAndShutdownLoop() async throws {
        await waitForRingThreadsToEnd()
        let fdsBefore = openDescriptorCount()
        for _ in 0..<200 {
            let ring = try RingActor(options: RingOptions(entries: 4))
            try await ring.nop()
            await ring.shutdown()
        }
        // Ring threads end shortly after their last reference goes.
        await waitForRingThreadsToEnd()
        #expect(threads(named: "uring-ring") == 0)
        #expect(openDescriptorCount() == fdsBefore)
    }

    @Test("a ring dropped without shutdown cleans up after itself")
    func deinitWithoutShutdown() async throws {
        await waitForRingThreadsToEnd()
        let fdsBefore = openDescriptorCount()
        do {
            let ring = try RingActor()
            try await ring.nop()
        }
        for _ in 0..<500 where openDescriptorCount() > fdsBefore {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(openDescriptorCount() <= fdsBefore)
    }

    @Test("the shared ring exists and works")
    func sharedRing() async throws {
        let ring = try RingActor.shared
        try await ring.nop()
        #expect(try RingActor.shared === ring)
    }

    @Test("the probe reports the operations the library uses")
    func probe() throws {
        let ring = try RingActor()
        for operation in [UringOperation.nop, .read, .write, .open, .close, .metadata, .cancel, .timeout] {
            #expect(ring.isSupported(operation), "\(operation) missing from the probe")
        }
        #expect(ring.features.contains(.noDrop), "IORING_FEAT_NODROP")
    }

    @Test("option: SQPOLL")
    func submissionPolling() async throws {
        var polled = RingOptions(entries: 16)
        polled.submissionPolling = .milliseconds(10)
        let ring = try RingActor(options: polled)
        try await ring.nop()
        await ring.shutdown()
    }

    @Test("options: cooperative task running and shared workers")
    func options() async throws {
        let first = try RingActor()

        var cooperative = RingOptions(entries: 16)
        cooperative.deferTaskRun = false
        cooperative.cooperativeTaskRun = true
        cooperative.sharesWorkersWith = first
        let second = try RingActor(options: cooperative)
        try await second.nop()
        await second.shutdown()
        await first.shutdown()
    }

    @Test("bad options give a typed error")
    func badOptions() {
        #expect(throws: UringError.self) { try RingActor(options: RingOptions(entries: 0)) }
    }

    @Test("the ring's clock: sleep waits and cancellation ends it at once")
    func sleepAndCancel() async throws {
        let ring = try RingActor()
        let start = ContinuousClock.now
        try await ring.sleep(for: .milliseconds(20))
        #expect(ContinuousClock.now - start >= .milliseconds(19))

        let outcome = await cancelOnceInFlight(on: ring) {
            do {
                try await ring.sleep(for: .seconds(3600))
                return "slept"
            } catch is CancellationError {
                return "cancelled"
            } catch {
                return "\(error)"
            }
        }
        #expect(outcome == "cancelled")
        await ring.shutdown()
    }
}
}
