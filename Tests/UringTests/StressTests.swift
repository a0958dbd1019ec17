import Glibc
import SystemPackage
import Testing

@testable import Uring

/// A small seeded generator (SplitMix64), so every run can be repeated.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Result where Failure == any Error {
    /// Captures the outcome of an async throwing call.
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

extension AllTests {
    @Suite("Stress", .checksDescriptorLeaks)
    struct StressTests {
        /// What one worker saw; summed and checked at the end.
        struct Tally: Sendable {
            var operations = 0
            var completed = 0
            var cancelled = 0
            var mismatches: [String] = []

            static func + (a: Tally, b: Tally) -> Tally {
                Tally(
                    operations: a.operations + b.operations, completed: a.completed + b.completed,
                    cancelled: a.cancelled + b.cancelled, mismatches: a.mismatches + b.mismatches)
            }
        }

        /// One worker: random reads, writes, NOPs, timeouts and cancellations
        /// on its own block of a shared file, checked against its own model.
        static func worker(
            index: Int, operations: Int, seed: UInt64, ring: RingActor, fd: Int32, block: Int
        ) async -> Tally {
            var random = SeededGenerator(seed: seed &+ UInt64(index))
            let file = File(adopting: FileDescriptor(rawValue: fd), on: ring)
            let base = Int64(index * block)
            var model = [UInt8](repeating: 0, count: block)
            var tally = Tally()
            var buffer = [UInt8](repeating: 0, count: block)
            for step in 0..<operations {
                tally.operations += 1
                switch random.next() % 5 {
                case 0:  // write a random span of the block
                    let start = Int(random.next() % UInt64(block - 1))
                    let length = 1 + Int(random.next() % UInt64(block - start))
                    let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                    do {
                        try await file.writeAll(bytes, at: base + Int64(start))
                        model.replaceSubrange(start..<start + length, with: bytes)
                        tally.completed += 1
                    } catch {
                        tally.mismatches.append("worker \(index) step \(step): write failed: \(error)")
                    }
                case 1:  // read the block back and compare
                    do {
                        let n = try await file.readAll(into: &buffer, at: base)
                        if n != block || buffer != model {
                            tally.mismatches.append("worker \(index) step \(step): read \(n) bytes, content differs")
                        }
                        tally.completed += 1
                    } catch {
                        tally.mismatches.append("worker \(index) step \(step): read failed: \(error)")
                    }
                case 2:
                    do {
                        try await ring.nop()
                        tally.completed += 1
                    } catch {
                        tally.mismatches.append("worker \(index) step \(step): nop failed: \(error)")
                    }
                case 3:
                    do {
                        try await ring.sleep(for: .microseconds(Int(random.next() % 50)))
                        tally.completed += 1
                    } catch {
                        tally.mismatches.append("worker \(index) step \(step): timeout failed: \(error)")
                    }
                default:  // a sleep cancelled at a random moment: exactly one outcome
                    let delay = Int(random.next() % 30)
                    let outcome = await withTaskGroup(of: Int.self) { group in
                        group.addTask {
                            do {
                                try await ring.sleep(for: .microseconds(delay))
                                return 0
                            } catch is CancellationError {
                                return 1
                            } catch {
                                return 2
                            }
                        }
                        if delay % 2 == 0 { await Task.yield() }
                        group.cancelAll()
                        return await group.next()!
                    }
                    switch outcome {
                    case 0: tally.completed += 1
                    case 1: tally.cancelled += 1
                    default: tally.mismatches.append("worker \(index) step \(step): cancelled sleep failed")
                    }
                }
            }
            _ = try? file.takeDescriptor()  // a shared descriptor, closed by the test
            return tally
        }

        // 30,000: 100,000 took 37 s under ThreadSanitizer here, too close to
        // the minute on a slower machine or in an emulated guest.
        @Test("30,000 mixed operations from 64 tasks on a 16-entry ring: exactly once, data intact, counters balanced")
        func mixedOperations() async throws {
            let seed = testSeed()
            let scratch = Scratch()
            let block = 4096
            let workers = 64
            let perWorker = 30_000 / workers + 1
            let path = scratch.write("stress", [UInt8](repeating: 0, count: block * workers))
            let fd = open(path.string, O_RDWR)
            try #require(fd >= 0)
            defer { close(fd) }
            let ring = try RingActor(options: RingOptions(entries: 16))
            let preferred = ring.executor
            let total = await withTaskGroup(of: Tally.self) { group in
                for index in 0..<workers {
                    if index % 2 == 0 {
                        // Half on the ring thread, half from the global pool.
                        group.addTask(executorPreference: preferred) {
                            await Self.worker(
                                index: index, operations: perWorker, seed: seed, ring: ring, fd: fd, block: block)
                        }
                    } else {
                        group.addTask {
                            await Self.worker(
                                index: index, operations: perWorker, seed: seed, ring: ring, fd: fd, block: block)
                        }
                    }
                }
                return await group.reduce(Tally(), +)
            }
            #expect(total.mismatches.isEmpty, "seed \(seed): \(total.mismatches.prefix(5))")
            #expect(total.operations == workers * perWorker)
            #expect(total.completed + total.cancelled == total.operations, "seed \(seed)")
            let stats = ring.statistics
            #expect(stats.submitted == stats.completed, "\(stats)")
            #expect(stats.slotsInUse == 0, "\(stats)")
            #expect(stats.inFlight == 0)
            await ring.shutdown()
            print("stress: seed \(seed), \(total.operations) operations, \(total.cancelled) cancelled, \(stats)")
        }

        @Test("a random cancellation storm: every operation ends once, nothing is left behind")
        func cancellationStorm() async throws {
            let seed = testSeed()
            var random = SeededGenerator(seed: seed)
            let ring = try RingActor(options: RingOptions(entries: 32))
            let pipes = (0..<8).map { _ in makePipe() }
            var outcomes = [0, 0, 0]  // completed, cancelled, failed
            for _ in 0..<100 {
                let plan = (0..<32).map { _ in (kind: random.next() % 3, value: Int(random.next() % 200)) }
                let wait = Int(random.next() % 300)
                let results = await withTaskGroup(of: Int.self) { group in
                    for (index, step) in plan.enumerated() {
                        let pipe = pipes[index % pipes.count]
                        group.addTask {
                            do {
                                switch step.kind {
                                case 0: try await ring.nop()
                                case 1: try await ring.sleep(for: .microseconds(step.value))
                                default:
                                    // A read that never gets data: only cancellation ends it.
                                    let file = File(adopting: FileDescriptor(rawValue: pipe.read), on: ring)
                                    var buffer = [UInt8](repeating: 0, count: 8)
                                    let outcome = await Result(catching: { try await file.read(into: &buffer) })
                                    _ = try file.takeDescriptor()  // shared; closed by the test
                                    _ = try outcome.get()
                                }
                                return 0
                            } catch is CancellationError {
                                return 1
                            } catch {
                                return 2
                            }
                        }
                    }
                    try? await ring.sleep(for: .microseconds(wait))
                    group.cancelAll()
                    var counts = [0, 0, 0]
                    for await result in group { counts[result] += 1 }
                    return counts
                }
                for i in 0..<3 { outcomes[i] += results[i] }
            }
            for pipe in pipes {
                close(pipe.read)
                close(pipe.write)
            }
            #expect(outcomes[2] == 0, "seed \(seed)")
            #expect(outcomes[0] + outcomes[1] == 3_200)
            let stats = ring.statistics
            #expect(stats.submitted == stats.completed, "seed \(seed): \(stats)")
            #expect(stats.slotsInUse == 0, "seed \(seed): \(stats)")
            await ring.shutdown()
        }

        @Test("rings created and shut down 1,000 times")
        func thousandRings() async throws {
            await waitForRingThreadsToEnd()
            let before = openDescriptorCount()
            for round in 0..<1_000 {
                let ring = try RingActor(options: RingOptions(entries: 2))
                if round % 2 == 0 { try await ring.nop() }
                await ring.shutdown()
            }
            await waitForRingThreadsToEnd()
            #expect(threads(named: "uring-ring") == 0)
            #expect(openDescriptorCount() == before, "\(openDescriptorTargets())")
        }
    }
}
