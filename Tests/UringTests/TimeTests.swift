import Glibc
import SystemPackage
import Testing

@testable import Uring

/// Waits (without a time limit: a hang is the failure) until `ring` has no
/// request left in the kernel and no slot in use.
func settle(_ ring: RingActor) async {
    while (ring.statistics.inFlight != 0 || ring.statistics.slotsInUse != 0) && !Task.isCancelled { await Task.yield() }
}

extension AllTests {
    @Suite("Time and deadlines", .checksDescriptorLeaks)
    struct TimeTests {
        @Test("Task.sleep on the ring's clock waits at least the duration; now moves forward")
        func clockSleep() async throws {
            try await RingActor.run { ring in
                let clock = ring.clock
                let start = clock.now
                try await Task.sleep(for: .milliseconds(20), clock: clock)
                let elapsed = start.duration(to: clock.now)
                // Kernel timers never fire early: a lower bound, not a speed check.
                #expect(elapsed >= .milliseconds(20))
                #expect(clock.now > start)
                #expect((start + .seconds(1)) - start == .seconds(1))
                try await ring.sleep(until: .now - .seconds(1))  // already passed: returns at once
                #expect(ring.statistics.slotsInUse == 0)
            }
        }

        @Test("cancelling a sleep of an hour ends it at once with CancellationError")
        func cancelSleep() async throws {
            try await RingActor.run { ring in
                let outcome = await cancelOnceInFlight(on: ring) {
                    do {
                        try await Task.sleep(for: .seconds(3600), clock: ring.clock)
                        return "slept"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                #expect(outcome == "cancelled")
                await settle(ring)
            }
        }

        @Test(
            "ticks come from one repeating timer, in order, and stop when the loop ends",
            .enabled(if: RingCore.kernelIsAtLeast(6, 4), "the kernel lacks repeating timeouts (IORING_TIMEOUT_MULTISHOT, 6.4+)"))
        func ticks() async throws {
            try await checkTicks(RingOptions(), requestsAtMost: 2)
        }

        @Test("ticks before repeating timeouts: one timer per tick, the same ticks")
        func ticksOneTimerEach() async throws {
            var options = RingOptions()
            options.treatedAsUnsupported = [.repeatingTimeout]
            // A timer per tick, and the cancellation of the last.
            try await checkTicks(options, requestsAtMost: 5)
        }

        private func checkTicks(_ options: RingOptions, requestsAtMost requests: UInt64) async throws {
            try await RingActor.run(options: options) { ring in
                let start = RingClock.Instant.now
                var seen: [RingClock.Instant] = []
                let submittedBefore = ring.statistics.submitted
                for try await tick in ring.ticks(every: .milliseconds(5)) {
                    seen.append(tick)
                    if seen.count == 4 { break }
                }
                #expect(seen.count == 4)
                #expect(seen == seen.sorted())
                #expect(seen.last! - start >= .milliseconds(20), "the fourth expiry is 20 ms after the start at the earliest")
                #expect(ring.statistics.submitted - submittedBefore <= requests)
                await settle(ring)

                await #expect(throws: UringError.self) {
                    for try await _ in ring.ticks(every: .zero) {}
                }
            }
        }

        @Test("deadline: an operation that completes in time is unaffected")
        func deadlineSuccess() async throws {
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let a = pair.first, b = pair.second
                try await a.sendAll(Array("hello".utf8))
                var buffer = [UInt8](repeating: 0, count: 16)
                let n = try await withTimeout(.seconds(30)) {
                    try await b.receive(into: &buffer)
                }
                #expect(n == 5 && Array(buffer[..<5]) == Array("hello".utf8))
                await settle(ring)
                try await a.close()
                try await b.close()
            }
        }

        @Test("deadline: an operation still waiting is cancelled, throws timedOut, and its buffer is the caller's again")
        func deadlineExpiry() async throws {
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let a = pair.first, b = pair.second
                var buffer = [UInt8](repeating: 7, count: 64)
                do {
                    _ = try await withTimeout(.milliseconds(10)) {
                        try await b.receive(into: &buffer)
                    }
                    Issue.record("receive returned with nothing sent")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut)
                    #expect(error.operation == .receive)
                    #expect(error.errno == .timedOut)
                    #expect("\(error)".contains("recv") && "\(error)".contains("ETIMEDOUT"))
                }
                #expect(buffer.count == 64 && buffer.allSatisfy { $0 == 7 }, "the buffer came back untouched")
                await settle(ring)
                // The connection still works after the cancelled receive.
                try await a.sendAll(Array("after".utf8))
                #expect(try await b.receive(into: &buffer) == 5)
                try await a.close()
                try await b.close()
            }
        }

        @Test("deadline: a multishot receive returns what arrived, then a wait past the deadline ends it with timedOut and stops the request")
        func deadlineOnSequence() async throws {
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let a = pair.first, b = pair.second
                try await a.sendAll(Array("early".utf8))
                var received: [UInt8] = []
                do {
                    try await withTimeout(.milliseconds(30)) {
                        for try await chunk in b.received() { received += chunk }
                    }
                    Issue.record("the sequence ended with nothing but 'early' sent")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut, "\(error)")
                    #expect(error.errno == .timedOut)
                }
                #expect(received == Array("early".utf8))
                // The multishot request is gone: a later plain receive gets
                // what is sent next, and nothing is left in the kernel.
                await settle(ring)
                try await a.sendAll(Array("after".utf8))
                var buffer = [UInt8](repeating: 0, count: 16)
                #expect(try await b.receive(into: &buffer) == 5)
                #expect(buffer.prefix(5).elementsEqual("after".utf8))

                // A deadline already past ends a sequence before it waits.
                do {
                    try await withDeadline(.now - .seconds(1)) {
                        for try await _ in b.received() { Issue.record("nothing was sent") }
                    }
                    Issue.record("a past deadline did not end the sequence")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut)
                }
                await settle(ring)
                try await a.close()
                try await b.close()
            }
        }

        @Test("deadline: an operation that fails reports its own error, not a timeout")
        func deadlineError() async throws {
            try await RingActor.run { ring in
                var buffer = [UInt8](repeating: 0, count: 8)
                let io = DescriptorIO(core: ring.core, fd: 1_000_000, path: "/not-open")
                do {
                    _ = try await withTimeout(.seconds(30)) {
                        try await io.read(into: address(of: &buffer), count: 8, offset: 0)
                    }
                    Issue.record("read of a bad descriptor succeeded")
                } catch let error as UringError {
                    #expect(error.kind == .system && error.errno == .badFileDescriptor)
                }
                await settle(ring)
            }
        }

        @Test("deadline: a deadline already past fails at once without reaching the kernel; nesting keeps the earlier one")
        func deadlinePassedAndNested() async throws {
            try await RingActor.run { ring in
                let submitted = ring.statistics.submitted
                await #expect(throws: UringError.timedOut(.nop)) {
                    try await withDeadline(.now - .seconds(1)) { try await ring.nop() }
                }
                #expect(ring.statistics.submitted == submitted)
                // An inner, later deadline does not extend the outer one.
                do {
                    try await withTimeout(.milliseconds(10)) {
                        try await withTimeout(.seconds(3600)) {
                            try await ring.sleep(for: .seconds(3600))
                        }
                    }
                    Issue.record("the sleep outlived the outer deadline")
                } catch let error as UringError {
                    #expect(error.kind == .timedOut && error.operation == .timeout)
                }
                await settle(ring)
            }
        }

        @Test("deadline: a one-entry ring cannot link a timeout, and says so instead of failing later")
        func deadlineOnTinyRing() async throws {
            var options = RingOptions()
            options.entries = 1
            try await RingActor.run(options: options) { ring in
                try #require(ring.queueSizes.submission == 1, "the kernel rounded 1 entry up")
                do {
                    try await withTimeout(.seconds(1)) { try await ring.nop() }
                    Issue.record("a deadline chain fit in a one-entry queue")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument && error.operation == .nop)
                }
                try await ring.nop()
            }
        }

        @Test("deadline: cancellation racing expiry ends in one of the two, and leaves nothing behind")
        func deadlineRacingCancellation() async throws {
            try await RingActor.run { ring in
                let pair = try StreamConnection.pair(on: ring)
                let shared = Shared(pair.first), other = pair.second
                var timedOut = 0
                var cancelled = 0
                for round in 0..<40 {
                    let task = Task {
                        var buffer = [UInt8](repeating: 0, count: 32)
                        do {
                            _ = try await withTimeout(.microseconds(500)) {
                                try await shared.value.receive(into: &buffer)
                            }
                            return "received"
                        } catch let error as UringError where error.kind == .timedOut {
                            return "timedOut"
                        } catch is CancellationError {
                            return "cancelled"
                        } catch {
                            return "\(error)"
                        }
                    }
                    // Vary the moment of cancellation around the expiry.
                    for _ in 0..<(round % 8) * 40 { await Task.yield() }
                    task.cancel()
                    let outcome = await task.value
                    #expect(outcome == "timedOut" || outcome == "cancelled", "round \(round): \(outcome)")
                    if outcome == "timedOut" { timedOut += 1 } else if outcome == "cancelled" { cancelled += 1 }
                }
                #expect(timedOut + cancelled == 40)
                await settle(ring)
                try await other.sendAll(Array("still works".utf8))
                var buffer = [UInt8](repeating: 0, count: 32)
                #expect(try await shared.value.receive(into: &buffer) == 11)
                try await other.close()
            }
        }
    }
}
