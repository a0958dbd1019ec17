/// What the running kernel's io_uring does beyond the basics, as it reported
/// when the ring was created (its `IORING_FEAT_*` bits); see
/// ``RingActor/features``. Operations are probed one by one with
/// ``RingActor/isSupported(_:)`` instead.
public struct RingFeatures: OptionSet, Sendable, Hashable {
    /// The kernel's bits.
    public let rawValue: UInt32

    /// Wraps the kernel's bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Submission and completion queues share one mapping (5.4).
    public static let singleMapping = RingFeatures(rawValue: 1 << 0)
    /// Completions that do not fit the completion queue wait in the kernel
    /// instead of being dropped, unless memory runs out (5.5).
    public static let noDrop = RingFeatures(rawValue: 1 << 1)
    /// A request's data is read when it is submitted, so it may live on the
    /// stack of the submitter (5.5).
    public static let stableSubmission = RingFeatures(rawValue: 1 << 2)
    /// An offset of -1 reads and writes at the file's current position (5.6).
    public static let currentPosition = RingFeatures(rawValue: 1 << 3)
    /// Requests run with the submitter's credentials (5.6).
    public static let submitterCredentials = RingFeatures(rawValue: 1 << 4)
    /// Reads and writes of sockets and pipes wait by polling, not in a
    /// worker thread (5.7).
    public static let fastPoll = RingFeatures(rawValue: 1 << 5)
    /// Poll masks have 32 bits (5.9).
    public static let poll32Bits = RingFeatures(rawValue: 1 << 6)
    /// The submission-polling thread takes unregistered files (5.11).
    public static let pollingWithPlainFiles = RingFeatures(rawValue: 1 << 7)
    /// Waits take a timeout argument directly (5.11).
    public static let extendedWaitArgument = RingFeatures(rawValue: 1 << 8)
    /// Worker threads are threads of the process (5.12).
    public static let nativeWorkers = RingFeatures(rawValue: 1 << 9)
    /// Registered resources carry tags (5.13).
    public static let resourceTags = RingFeatures(rawValue: 1 << 10)
    /// A request may ask for no completion on success (5.17).
    public static let skipCompletion = RingFeatures(rawValue: 1 << 11)
    /// Linked requests resolve their files when they run, not when
    /// submitted (5.17).
    public static let linkedFiles = RingFeatures(rawValue: 1 << 12)
}
