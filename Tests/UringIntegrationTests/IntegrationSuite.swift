import Testing
import UringTesting

/// Every integration suite nests here: they run one at a time, so the
/// descriptor check counts exactly, and a hang fails by name.
@Suite(.serialized, .timeLimit(.minutes(1)), .checksDescriptorLeaks) enum Integrations {}

/// A deterministic byte pattern, so failures repeat.
func pattern(count: Int, seed: UInt8 = 7) -> [UInt8] {
    var state = UInt32(seed) | 1
    return (0..<count).map { _ in
        state = state &* 1_664_525 &+ 1_013_904_223
        return UInt8(truncatingIfNeeded: state >> 24)
    }
}
