import Synchronization
import Testing
import Uring

/// A trait that fails a test or suite which leaves descriptors open or ring
/// threads running.
///
/// It records what every open descriptor refers to before the test, and
/// compares after it, once the ring threads the test started have ended
/// (threads named with ``threadPrefix``, `uring-ring` by default). A ring's
/// descriptors close as its last references go, which on a busy machine can
/// trail its thread by a little: the check allows up to `settling` for them,
/// and a real leak fails after it.
///
/// ```swift
/// @Suite(.serialized, .checksDescriptorLeaks)
/// struct ServerTests { … }
/// ```
///
/// Descriptors are process-wide, so tests that run in parallel with the
/// checked one make its counts wrong: apply it to a `.serialized` suite, or
/// run the suite alone. Checked scopes anywhere in the process take turns
/// (one process-wide lock, held from the first count to the second), so
/// two checked top-level suites, which Swift Testing runs at once, do not
/// count each other's rings; a checked scope inside another one counts
/// under its parent's turn (make that parent `.serialized`). A top-level
/// suite that is not checked but holds checked suites and unchecked ones
/// takes the turn for all of them with ``DescriptorCountingTurn``
/// (`.descriptorCountingTurn`). A scope that hangs keeps the turn, and the
/// others wait for it. Put it outside a ``RingForTest`` (`.ring`) trait,
/// on the suite with `.ring` on its tests, so the rings they give are gone
/// before it counts. Ring threads still running after `settling` before the
/// test (a ring the application keeps, named with the prefix) are allowed
/// to stay.
public struct DescriptorLeakCheck: TestTrait, SuiteTrait, TestScoping {
    /// The prefix of the names of ring threads to wait for.
    public var threadPrefix: String
    /// How long descriptors and threads may take to go after the test.
    public var settling: Duration

    /// Applies once to a suite as a whole, not to each of its tests.
    public var isRecursive: Bool { false }

    /// A check that waits for threads named `threadPrefix…` and allows
    /// `settling` for descriptors to close.
    public init(threadPrefix: String = "uring-ring", settling: Duration = .seconds(10)) {
        self.threadPrefix = threadPrefix
        self.settling = settling
    }

    /// Whether this task is inside a checked scope, which holds the turn.
    @TaskLocal private static var holdsTurn = false
    /// Whose turn it is to count.
    private static let turns = Turns()

    /// Runs `function` between the two counts, in this scope's turn.
    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await Self.inTurn { try await countAround(test, function) }
    }

    /// Runs `body` in the process-wide turn, taken now unless this task
    /// holds it already.
    static func inTurn(_ body: () async throws -> Void) async throws {
        if holdsTurn {
            try await body()
            return
        }
        await turns.take()
        do {
            try await $holdsTurn.withValue(true) { try await body() }
            turns.pass()
        } catch {
            turns.pass()
            throw error
        }
    }

    /// Counts descriptors and ring threads before and after `function`.
    private func countAround(_ test: Test, _ function: @Sendable () async throws -> Void) async throws {
        // The shared ring lives for the whole process; create it first so it
        // is not counted against whichever test touches it first. A first
        // sleep makes the runtime open its timer descriptor now, too.
        _ = try? RingActor.shared
        try? await Task.sleep(for: .milliseconds(1))
        // Rings of earlier tests may still be closing: let them go first. A
        // ring that stays (the application's own) is counted as it is, after
        // `settling`; name its thread otherwise to save that wait.
        await waitForThreads(toFall: 0)
        let threadsBefore = ProcessResources.threads(namedWithPrefix: threadPrefix)
        let before = ProcessResources.descriptorTargets()
        try await function()
        await waitForThreads(toFall: threadsBefore)
        var after = ProcessResources.descriptorTargets()
        let step = Duration.milliseconds(50)
        var waited = Duration.zero
        while after != before && waited < settling && !Task.isCancelled {
            try? await Task.sleep(for: step)
            waited += step
            after = ProcessResources.descriptorTargets()
        }
        let threads = ProcessResources.threads(namedWithPrefix: threadPrefix)
        #expect(
            threads <= threadsBefore,
            "\(test.name) left \(threads - threadsBefore) more ring threads (\(threadPrefix)…) running")
        #expect(
            after == before,
            "\(test.name) changed the open descriptors: opened \(after.subtracting(before)), closed \(before.subtracting(after))")
    }

    private func waitForThreads(toFall count: Int) async {
        let step = Duration.milliseconds(10)
        var waited = Duration.zero
        while ProcessResources.threads(namedWithPrefix: threadPrefix) > count && waited < settling && !Task.isCancelled {
            try? await Task.sleep(for: step)
            waited += step
        }
    }
}

/// A first-come, first-served turn that one task at a time holds.
private final class Turns: Sendable {
    private struct State {
        var taken = false
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Waits until the turn is this task's.
    func take() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state in
                if state.taken {
                    state.waiting.append(continuation)
                    return false
                }
                state.taken = true
                return true
            }
            if now { continuation.resume() }
        }
    }

    /// Gives the turn to the next waiting task, if any.
    func pass() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiting.isEmpty {
                state.taken = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}

/// A suite trait that runs the suite in ``DescriptorLeakCheck``'s
/// process-wide turn without counting anything itself: for a top-level
/// suite whose unchecked suites open rings, so that no checked suite
/// elsewhere in the process counts them. The checked suites inside it
/// count under its turn.
public struct DescriptorCountingTurn: SuiteTrait, TestScoping {
    /// Applies once to a suite as a whole.
    public var isRecursive: Bool { false }

    /// Runs `function` in the turn.
    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await DescriptorLeakCheck.inTurn(function)
    }
}

extension Trait where Self == DescriptorCountingTurn {
    /// Runs the suite in the descriptor checks' turn (see
    /// ``DescriptorCountingTurn``).
    public static var descriptorCountingTurn: Self { DescriptorCountingTurn() }
}

extension Trait where Self == DescriptorLeakCheck {
    /// Fails the test or suite if it leaves descriptors open or ring threads
    /// running (see ``DescriptorLeakCheck``).
    public static var checksDescriptorLeaks: Self { DescriptorLeakCheck() }
}

extension Array where Element == String {
    /// The elements of `self` not in `other`, counting repeats.
    fileprivate func subtracting(_ other: [String]) -> [String] {
        var remaining = other
        return filter { element in
            if let index = remaining.firstIndex(of: element) {
                remaining.remove(at: index)
                return false
            }
            return true
        }
    }
}
