import Testing
import Uring

@Test func nopRoundTrip() async throws {
    let ring = try RingActor()
    try await ring.nop()
    await ring.shutdown()
}
