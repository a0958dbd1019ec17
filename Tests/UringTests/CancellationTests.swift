import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Cancellation", .checksDescriptorLeaks)
    struct CancellationTests {
        /// Reads from a pipe that never gets data, cancels, and checks the
        /// caller gets `CancellationError` and its untouched buffer.
        static func cancelIdleRead(on ring: RingActor) async throws {
            let (readEnd, writeEnd) = makePipe()
            defer { close(writeEnd) }
            let outcome = await cancelOnceInFlight(on: ring) {
                // The file moves into the child task that uses it.
                let file = File(adopting: FileDescriptor(rawValue: readEnd), on: ring)
                var buffer = [UInt8](repeating: 7, count: 100)
                do {
                    let n = try await file.read(into: &buffer)
                    return "read \(n)"
                } catch is CancellationError {
                    let intact = buffer.count == 100 && buffer.allSatisfy { $0 == 7 }
                    return intact ? "cancelled, buffer intact" : "cancelled, buffer changed"
                } catch {
                    return "error \(error)"
                }
            }
            #expect(outcome == "cancelled, buffer intact")
            #expect(ring.statistics.inFlight == 0)
            #expect(ring.statistics.slotsInUse == 0)
        }

        @Test("a pipe read that never gets data, cancelled from an ordinary task")
        func cancelReadFromGlobalPool() async throws {
            let ring = try RingActor()
            try await Self.cancelIdleRead(on: ring)
            await ring.shutdown()
        }

        @Test("a pipe read that never gets data, cancelled on the ring thread")
        func cancelReadOnRing() async throws {
            try await RingActor.run { ring in
                try await Self.cancelIdleRead(on: ring)
            }
        }

        @Test("an already cancelled task does not submit at all")
        func cancelledBeforeStart() async throws {
            let ring = try RingActor()
            let submitted = ring.statistics.submitted
            await withTaskGroup(of: Void.self) { group in
                group.cancelAll()
                group.addTask {
                    await #expect(throws: CancellationError.self) { try await ring.nop() }
                }
            }
            #expect(ring.statistics.submitted == submitted)
            await ring.shutdown()
        }

        enum Outcome: Sendable, Hashable {
            case completed
            case cancelled
            case failed(String)
        }

        @Test(
            "cancellation racing completion has exactly one outcome, 1,000 times",
            arguments: [false, true])
        func cancellationRace(onRing: Bool) async throws {
            let ring = try RingActor()
            let preferred: (any TaskExecutor)? = onRing ? ring.executor : nil
            var counts = [Outcome: Int]()
            try await withTaskExecutorPreference(preferred) {
                for round in 0..<1_000 {
                    let outcomes = await withTaskGroup(of: Outcome.self) { group in
                        // A sleep close to the cancellation, and a NOP that
                        // usually completes before it.
                        group.addTask {
                            do {
                                try await ring.sleep(for: .microseconds(round % 40))
                                return .completed
                            } catch is CancellationError {
                                return .cancelled
                            } catch {
                                return .failed("\(error)")
                            }
                        }
                        group.addTask {
                            do {
                                try await ring.nop()
                                return .completed
                            } catch is CancellationError {
                                return .cancelled
                            } catch {
                                return .failed("\(error)")
                            }
                        }
                        if round % 2 == 0 { await Task.yield() }
                        group.cancelAll()
                        var all: [Outcome] = []
                        for await outcome in group { all.append(outcome) }
                        return all
                    }
                    #expect(outcomes.count == 2)
                    for outcome in outcomes { counts[outcome, default: 0] += 1 }
                }
                _ = try await ring.sleep(for: .zero)
            }
            #expect(counts.keys.allSatisfy { $0 == Outcome.completed || $0 == Outcome.cancelled }, "\(counts)")
            #expect(counts.values.reduce(0, +) == 2_000)
            let stats = ring.statistics
            #expect(stats.submitted == stats.completed, "\(stats)")
            #expect(stats.slotsInUse == 0, "\(stats)")
            await ring.shutdown()
        }

        @Test("chunks stop their read-ahead when the task is cancelled")
        func cancelChunks() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            let (readEnd, writeEnd) = makePipe()
            let pipeName = descriptorTarget(readEnd)!
            let result = await cancelOnceInFlight(on: ring) {
                let file = File(adopting: FileDescriptor(rawValue: readEnd), on: ring)
                do {
                    for try await _ in file.chunks(size: 1024) {}
                    return "ended"
                } catch is CancellationError {
                    try? await file.close()
                    return "cancelled"
                } catch {
                    return "\(error)"
                }
            }
            #expect(result == "cancelled")
            close(writeEnd)
            // The sequence's duplicate descriptor is closed too.
            #expect(descriptors(matching: { $0 == pipeName }) == 0)
            #expect(scratch.openDescriptors == 0)
            #expect(ring.statistics.inFlight == 0)
            await ring.shutdown()
        }
    }
}
