#if Metrics
import CoreMetrics
import MetricsTestKit
import Testing
import Uring
import UringMetrics
import UringTesting

extension Integrations {
    @Suite("UringMetrics: ring statistics as swift-metrics")
    struct MetricsTests {
        @Test("samples turn into counters that add up to the ring's own counts, and an in-flight gauge", .ring)
        func samples() async throws {
            let ring = try TestRing.current
            let metrics = TestMetrics()
            let recorder = RingMetrics(prefix: "t", dimensions: [("service", "test")], factory: metrics)
            recorder.record(ring.statistics)
            for _ in 0..<10 { try await ring.nop() }
            recorder.record(ring.statistics)
            for _ in 0..<5 { try await ring.nop() }
            let last = ring.statistics
            recorder.record(last)

            let submitted = try metrics.expectCounter("t.submitted", [("service", "test")])
            #expect(submitted.totalValue == Int64(last.submitted))
            #expect(last.submitted >= 15)
            let completed = try metrics.expectCounter("t.completed", [("service", "test")])
            #expect(completed.totalValue == Int64(last.completed))
            let inFlight = try metrics.expectGauge("t.in_flight", [("service", "test")])
            #expect(inFlight.lastValue == Double(last.inFlight))
        }

        @Test("a group's rings are reported each under its index, until the task is cancelled")
        func group() async throws {
            let metrics = TestMetrics()
            let recorder = RingMetrics(prefix: "g", factory: metrics)
            try await RingGroup.run(rings: 2) { group in
                for ring in group.rings { try await ring.nop() }
                let reporting = Task { await recorder.report(group, every: .milliseconds(1)) }
                // The first sample is taken at once; wait for it, then stop.
                while (try? metrics.expectCounter("g.submitted", [("ring", "1")])) == nil && !Task.isCancelled {
                    try await group.rings[0].sleep(for: .milliseconds(1))
                }
                reporting.cancel()
                await reporting.value
            }
            for index in 0..<2 {
                let submitted = try metrics.expectCounter("g.submitted", [("ring", "\(index)")])
                #expect(submitted.totalValue >= 1, "ring \(index) submitted its NOP")
            }
        }
    }
}
#endif
