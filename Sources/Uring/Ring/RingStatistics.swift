/// Counters of a ring's work since it was created, for tests and benchmarks.
///
/// Every request that reached the kernel completes exactly once, so after a
/// ring has gone quiet ``submitted`` equals ``completed``.
public struct RingStatistics: Sendable, Hashable, CustomStringConvertible {
    /// Requests handed to the kernel.
    public var submitted: UInt64
    /// Final completions received for those requests.
    public var completed: UInt64
    /// Requests in the kernel right now.
    public var inFlight: UInt64 { submitted &- completed }
    /// Times another thread had to wake the sleeping ring thread.
    public var wakeUps: UInt64
    /// Times the completion queue overflowed into the kernel's backlog (no
    /// completion is lost; the ring drains the backlog).
    public var completionQueueOverflows: UInt64
    /// Completions the kernel dropped: when the completion queue is full
    /// and the kernel cannot allocate room for more in its backlog. The
    /// ring then cancels what it has in the kernel to find their owners.
    public var droppedCompletions: UInt64
    /// Requests that failed with ``UringError/Kind/completionLost`` because
    /// their completion was among those dropped.
    public var lostOperations: UInt64 = 0
    /// Calls into the kernel to submit or reap (each `io_uring_enter`).
    public var kernelEnters: UInt64
    /// Operation slots allocated so far (they are reused); for tests.
    var slotsCreated: Int
    /// Operation slots in use right now; for tests.
    var slotsInUse: Int
    /// Times a multishot accept waited because the process or the system
    /// ran out of descriptors or memory (see ``IncomingConnections``).
    public var acceptBackOffs: UInt64 = 0
    /// Received chunks copied out of the receive pool because their
    /// sequence already held its share of it (see ``ReceiveBufferPool``):
    /// a sign of consumers that do not keep up.
    public var receiveCopies: UInt64 = 0
    /// Times a receiving sequence found every buffer of its pool lent out
    /// and waited for one to come back (see ``RingEvent/receivePoolExhausted(path:address:bufferCount:)``).
    public var receivePoolWaits: UInt64 = 0

    /// All counters on one line.
    public var description: String {
        "submitted \(submitted), completed \(completed), in flight \(inFlight), wake-ups \(wakeUps), "
            + "CQ overflows \(completionQueueOverflows), dropped \(droppedCompletions), lost \(lostOperations), enters \(kernelEnters), slots \(slotsInUse)/\(slotsCreated), "
            + "accept back-offs \(acceptBackOffs), receive copies \(receiveCopies), pool waits \(receivePoolWaits)"
    }
}
