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
/// run the suite alone. Put it outside a ``RingForTest`` (`.ring`) trait,
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

    /// Runs `function` between the two counts.
    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
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
