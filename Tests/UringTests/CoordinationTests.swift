import Foundation
import Glibc
import Synchronization
import SystemPackage
import Testing

@testable import Uring

/// How many tasks hold a permit now, and the most that ever did.
final class HoldCounts: Sendable {
    let holding = Atomic<Int>(0)
    let most = Atomic<Int>(0)
}

extension AllTests {
    @Suite("Futex semaphore, process exit, ring-to-ring messages", .checksDescriptorLeaks)
    struct CoordinationTests {
        @Test("semaphore: a task waits through the ring and a plain thread wakes it, and the other way round", .requires(.futexWait, "IORING_OP_FUTEX_WAIT (6.7+)"))
        func semaphoreAcrossThreads() async throws {
            try await checkSemaphoreAcrossThreads(RingOptions())
        }

        @Test("semaphore before futex requests: a task polling the eventfd is woken by a thread and by a task")
        func semaphoreAcrossThreadsPolling() async throws {
            try await checkSemaphoreAcrossThreads(Self.withoutFutexes)
        }

        static var withoutFutexes: RingOptions {
            var options = RingOptions()
            options.treatedAsUnsupported = [.futexWait, .futexWake]
            return options
        }

        private func checkSemaphoreAcrossThreads(_ options: RingOptions) async throws {
            try await RingActor.run(options: options) { ring in
                let semaphore = RingSemaphore(value: 0)
                let waiter = Task { try await semaphore.wait(on: ring) }
                while ring.statistics.inFlight == 0 && !Task.isCancelled { await Task.yield() }  // asleep in the kernel
                let thread = Thread { semaphore.signal() }
                thread.start()
                try await waiter.value
                #expect(semaphore.availablePermits == 0)

                // A blocked thread is woken by a task signalling through the ring.
                let woken = Atomic<Bool>(false)
                let blocked = Thread {
                    semaphore.waitBlocking()
                    woken.store(true, ordering: .sequentiallyConsistent)
                }
                blocked.start()
                var signalled = 0
                while !woken.load(ordering: .sequentiallyConsistent) {
                    if semaphore.availablePermits == 0 && signalled == 0 {
                        signalled += 1
                        try await semaphore.signal(on: ring)
                    }
                    try await ring.sleep(for: .milliseconds(1))
                }
                #expect(semaphore.availablePermits == 0)
                await settle(ring)
            }
        }

        @Test("semaphore: at most N tasks hold a permit at once", .requires(.futexWait, "IORING_OP_FUTEX_WAIT (6.7+)"))
        func semaphoreBoundsConcurrency() async throws {
            try await checkSemaphoreBounds(RingOptions())
        }

        @Test("semaphore before futex requests: at most N tasks hold a permit at once")
        func semaphoreBoundsConcurrencyPolling() async throws {
            try await checkSemaphoreBounds(Self.withoutFutexes)
        }

        private func checkSemaphoreBounds(_ options: RingOptions) async throws {
            let ring = try RingActor(options: options)
            do {
                let semaphore = RingSemaphore(value: 2)
                let counts = HoldCounts()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<24 {
                        group.addTask {
                            try await semaphore.wait(on: ring)
                            let now = counts.holding.add(1, ordering: .sequentiallyConsistent).newValue
                            counts.most.max(now, ordering: .sequentiallyConsistent)
                            try await ring.sleep(for: .microseconds(300))
                            counts.holding.subtract(1, ordering: .sequentiallyConsistent)
                            semaphore.signal()
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(counts.most.load(ordering: .sequentiallyConsistent) == 2)
                #expect(semaphore.availablePermits == 2)
                await settle(ring)
            }
            await ring.shutdown()
        }

        @Test("semaphore: a cancelled waiter takes no permit and leaves nothing in the kernel", .requires(.futexWait, "IORING_OP_FUTEX_WAIT (6.7+)"))
        func semaphoreCancellation() async throws {
            try await checkSemaphoreCancellation(RingOptions())
        }

        @Test("semaphore before futex requests: a cancelled waiter takes no permit and leaves nothing in the kernel")
        func semaphoreCancellationPolling() async throws {
            try await checkSemaphoreCancellation(Self.withoutFutexes)
        }

        private func checkSemaphoreCancellation(_ options: RingOptions) async throws {
            try await RingActor.run(options: options) { ring in
                let semaphore = RingSemaphore(value: 0)
                let outcome = await cancelOnceInFlight(on: ring) {
                    do {
                        try await semaphore.wait(on: ring)
                        return "acquired"
                    } catch is CancellationError { return "cancelled" } catch { return "\(error)" }
                }
                #expect(outcome == "cancelled")
                semaphore.signal()
                #expect(semaphore.availablePermits == 1)
                #expect(semaphore.tryWait())
                #expect(!semaphore.tryWait())
                await settle(ring)
            }
        }

        @Test("waitForExit: exit codes, death by signal, a pid that is not a child, and cancellation", .requires(.waitForExit, "IORING_OP_WAITID (6.7+)"))
        func processExit() async throws {
            try await checkProcessExit(RingOptions())
        }

        @Test("waitForExit before IORING_OP_WAITID: the same, through a pidfd polled by the ring")
        func processExitThroughPidfd() async throws {
            var options = RingOptions()
            options.treatedAsUnsupported = [.waitForExit]
            try await checkProcessExit(options)
        }

        private func checkProcessExit(_ options: RingOptions) async throws {
            try await RingActor.run(options: options) { ring in
                let scratch = Scratch()
                let out = scratch.path + "/out"
                let exiting = try spawn("/bin/sh", ["-c", "exit 3"], stdin: "/dev/null", stdout: out, stderr: out)
                #expect(try await ring.waitForExit(exiting) == .exited(code: 3))
                let fine = try spawn("/bin/true", [], stdin: "/dev/null", stdout: out, stderr: out)
                #expect(try await ring.waitForExit(fine).isSuccess)

                let sleeper = try spawn("/bin/sleep", ["60"], stdin: "/dev/null", stdout: out, stderr: out)
                let outcome = await cancelOnceInFlight(on: ring) {
                    do {
                        _ = try await ring.waitForExit(sleeper)
                        return "exited"
                    } catch is CancellationError { return "cancelled" } catch { return "\(error)" }
                }
                #expect(outcome == "cancelled", "the child still runs; only the wait ended")
                // SIGKILL: the child may have inherited a mask that blocks others.
                kill(sleeper, SIGKILL)
                let status = try await ring.waitForExit(sleeper)
                #expect(status == .signaled(Signal(rawValue: SIGKILL), coreDumped: false))
                #expect("\(status)" == "killed by signal 9")

                do {
                    _ = try await ring.waitForExit(1)
                    Issue.record("waited for init")
                } catch let error as UringError {
                    #expect(error.errno == .noChildProcess && error.operation == .waitForExit)
                }
                await #expect(throws: UringError.self) { _ = try await ring.waitForExit(0) }
                await settle(ring)
            }
        }

        @Test(
            "messages: a value, an object and a registered file go from one ring to another",
            .requires(.message, "IORING_OP_MSG_RING (5.18+)"))
        func ringMessages() async throws {
            let scratch = Scratch()
            let path = scratch.write("shared", Array("handed over".utf8))
            let receiver = try RingActor()
            // Messages go out as soon as the initializer returns: the ring
            // thread enables the ring before that, so none fails EBADFD.
            try await RingActor.run { sender in
                let listening = Task { () -> [String] in
                    var seen: [String] = []
                    for try await message in receiver.messages {
                        switch message {
                        case .value(let value): seen.append("value \(value)")
                        case .object(let object): seen.append("object \(object as? String ?? "?")")
                        case .file(let incoming):
                            let file = try incoming.take()
                            var bytes = [UInt8](repeating: 0, count: 32)
                            let n = try await file.read(into: &bytes, at: 0)
                            seen.append("file \(String(decoding: bytes[..<n], as: UTF8.self))")
                            #expect(throws: UringError.self) { _ = try incoming.take() }
                            try await file.close()
                        }
                        if seen.count == 3 { return seen }
                    }
                    return seen
                }
                let seen: [String]
                do {
                    try await sender.send(42, to: receiver)
                    try await sender.send(object: "hello", to: receiver)
                    try await sender.registerFiles(capacity: 2)
                    try await receiver.registerFiles(capacity: 2)
                    let file = try await RegisteredFile.open(path, on: sender)
                    try await file.send(to: receiver)
                    try await file.close()
                    seen = try await listening.value
                } catch {
                    // Stop the listener and the receiver's thread, so a
                    // failure here does not show up as a leak in later tests.
                    listening.cancel()
                    await receiver.shutdown()
                    throw error
                }
                // Values and objects keep their order; the kernel delivers a
                // file by another path, so it may overtake them.
                #expect(seen.sorted() == ["file handed over", "object hello", "value 42"])
                #expect(seen.filter { !$0.hasPrefix("file") } == ["value 42", "object hello"])

                await receiver.shutdown()
                do {
                    try await sender.send(1, to: receiver)
                    Issue.record("a shut-down ring took a message")
                } catch let error as UringError {
                    #expect(error.kind == .ringShutDown && error.operation == .message)
                }
                await settle(sender)
            }
        }

        @Test(
            "messages: a ring takes one the moment its initializer returns, every time",
            .requires(.message, "IORING_OP_MSG_RING (5.18+)"))
        func messageToNewRing() async throws {
            try await RingActor.run { sender in
                // The kernel refuses messages to a ring its thread has not
                // enabled yet (EBADFD); the initializer waits for the thread.
                for round in 0..<20 {
                    let receiver = try RingActor()
                    // Shut down on every path, so a failure leaves no ring
                    // thread behind for later tests to count.
                    let first: RingMessage?
                    do {
                        try await sender.send(Int32(round), to: receiver)
                        var messages = receiver.messages.makeAsyncIterator()
                        first = try await messages.next()
                    } catch {
                        await receiver.shutdown()
                        throw error
                    }
                    await receiver.shutdown()
                    guard case .value(let value) = first else {
                        Issue.record("round \(round): got \(String(describing: first))")
                        return
                    }
                    #expect(value == Int32(round))
                }
                await settle(sender)
            }
        }
    }
}
