import Testing
import Uring

/// A trait that gives a test, or a suite, a ring of its own.
///
/// The ring is reached through ``TestRing/current`` (a task-local, so the
/// test's child tasks see it too), and runs until the test or suite ends.
/// It is then checked: operations still in the kernel once the test has
/// returned (a request never awaited, a sequence never ended) are a failure
/// that names how many, and then the ring shuts down, which cancels them.
///
/// ```swift
/// @Test(.ring)
/// func readsBack() async throws {
///     let ring = try TestRing.current
///     let file = try await File.open("/etc/hostname", on: ring)
///     …
/// }
/// ```
///
/// On a suite, one ring serves every test in it.
public struct RingForTest: TestTrait, SuiteTrait, TestScoping {
    /// The ring's options.
    public var options: RingOptions
    /// How long operations may take to complete after the test returns
    /// before the ones left count as leaked.
    public var settling: Duration

    /// One ring for a suite as a whole.
    public var isRecursive: Bool { false }

    /// A ring with `options`.
    public init(options: RingOptions = RingOptions(), settling: Duration = .seconds(5)) {
        self.options = options
        self.settling = settling
    }

    /// Runs `function` with the ring as ``TestRing/current``.
    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let ring = try RingActor(options: options)
        let outcome: Result<Void, any Error>
        do {
            try await TestRing.$ring.withValue(ring) {
                try await withTaskExecutorPreference(ring.executor) { try await function() }
            }
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        // Completions of requests cancelled at the end may still be on their
        // way; a request that never ends is still there after `settling`.
        var waited = Duration.zero
        let step = Duration.milliseconds(5)
        while ring.statistics.inFlight > 0 && waited < settling && !Task.isCancelled {
            do { try await ring.sleep(for: step) } catch { break }
            waited += step
        }
        let left = ring.statistics.inFlight
        #expect(left == 0, "\(test.name) left \(left) operations in the ring's kernel queue")
        await ring.shutdown()
        try outcome.get()
    }
}

extension Trait where Self == RingForTest {
    /// A ring of the test's (or suite's) own, with default options, as
    /// ``TestRing/current``; see ``RingForTest``.
    public static var ring: Self { RingForTest() }

    /// A ring of the test's (or suite's) own with `options`; see
    /// ``RingForTest``.
    public static func ring(_ options: RingOptions) -> Self { RingForTest(options: options) }
}

/// The ring a ``RingForTest`` trait gave the running test.
public enum TestRing {
    @TaskLocal static var ring: RingActor?

    /// The test's ring.
    ///
    /// - Throws: ``Uring/UringError`` of kind `invalidArgument` when the test
    ///   has no ``RingForTest`` trait (neither its own nor its suite's).
    public static var current: RingActor {
        get throws(UringError) {
            guard let ring else {
                throw UringError(
                    .invalidArgument, operation: .nop, errno: .invalidArgument,
                    detail: "the test has no ring: add the .ring trait to it or to its suite")
            }
            return ring
        }
    }
}
