import Synchronization

/// Counts of what the socket layer did to keep a server up, kept per ring
/// and reported in ``RingStatistics``. Updated with relaxed atomics: they
/// are readings, not synchronised with anything.
final class ServerCounters: Sendable {
    /// Times a multishot accept waited after running out of resources.
    let acceptBackOffs = Atomic<UInt64>(0)
    /// Received chunks copied out of a pool buffer because their sequence
    /// already held its share of the pool.
    let receiveCopies = Atomic<UInt64>(0)
    /// Times a receiving sequence waited for a pool buffer to come back.
    let receivePoolWaits = Atomic<UInt64>(0)

    /// Adds these counters to `statistics`.
    func fill(_ statistics: inout RingStatistics) {
        statistics.acceptBackOffs = acceptBackOffs.load(ordering: .relaxed)
        statistics.receiveCopies = receiveCopies.load(ordering: .relaxed)
        statistics.receivePoolWaits = receivePoolWaits.load(ordering: .relaxed)
    }
}
