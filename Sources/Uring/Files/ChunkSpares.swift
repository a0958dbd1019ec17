/// Chunk arrays that a ring's `chunks()` sequences handed out, kept to be
/// read into again: once a consumer lets go of a chunk, its storage serves
/// the next read of the same length, in this file or the next one. Fresh
/// storage costs an allocation and, for arrays as large as chunks, page
/// faults as the allocator maps and unmaps them: a run of `uring-bench
/// smallfiles` took 21,778 faults on the ring thread before this, and
/// under 800 after.
///
/// A kept array the consumer still holds is copied, not overwritten, when
/// taken (see `ChunkBox.init`). At most ``limit`` bytes are kept per ring.
final class ChunkSpares: Sendable {
    /// The most bytes kept.
    static let limit = 8 << 20

    private struct State: Sendable {
        var byLength: [Int: FIFO<[UInt8]>] = [:]
        var bytes = 0
    }

    private let state = Locked(State())

    /// The oldest kept array of `length` bytes, if any.
    func take(length: Int) -> [UInt8]? {
        state.withLock { state -> [UInt8]? in
            guard let array = state.byLength[length]?.popFirst() else { return nil }
            state.bytes -= length
            return array
        }
    }

    /// Keeps `array` (which its consumer may still hold) if there is room.
    func keep(_ array: [UInt8]) {
        let length = array.count
        state.withLock { state in
            guard state.bytes + length <= Self.limit else { return }
            state.bytes += length
            state.byLength[length, default: FIFO()].append(array)
        }
    }
}
