// allocations: heap allocations per operation in steady state, counted by
// the interposed malloc (CMallocCounter). Goal: 0 per NOP and per read.

import CMallocCounter
import Foundation
import Glibc
import SystemPackage
import Uring

extension UringBench {
    static func allocations(_ report: Report, quick: Bool) async throws {
        let warmUp = 2_000
        let count = quick ? 10_000 : 100_000
        let path = try scratchFile("allocations", size: 1 << 20)
        defer { unlink(path) }
        let scenario = "allocations (steady state)"
        let (nop, read, receive) = try await RingActor.run { ring -> (Double, Double, Double) in
            // Each: a warm-up, then allocations per operation over `count`.
            for _ in 0..<warmUp { try await ring.nop() }
            var before = cmc_allocations()
            for _ in 0..<count { try await ring.nop() }
            let nop = Double(cmc_allocations() - before) / Double(count)

            let file = try await File.open(FilePath(path), on: ring)
            var buffer = [UInt8](repeating: 0, count: 4096)
            for i in 0..<warmUp { _ = try await file.read(into: &buffer, at: Int64(i % 256) * 4096) }
            before = cmc_allocations()
            for i in 0..<count { _ = try await file.read(into: &buffer, at: Int64(i % 256) * 4096) }
            let read = Double(cmc_allocations() - before) / Double(count)
            try await file.close()

            // recv: the peer's bytes are written with a plain write(2), then
            // received through the ring.
            let pair = try StreamConnection.pair(on: ring)
            let receiver = pair.first
            let sender = try pair.second.takeDescriptor()
            defer { try? sender.close() }
            var small = [UInt8](repeating: 0, count: 64)
            let message = [UInt8](repeating: 1, count: 64)
            for _ in 0..<warmUp {
                _ = message.withUnsafeBytes { Glibc.write(sender.rawValue, $0.baseAddress, 64) }
                _ = try await receiver.receive(into: &small)
            }
            before = cmc_allocations()
            for _ in 0..<count {
                _ = message.withUnsafeBytes { Glibc.write(sender.rawValue, $0.baseAddress, 64) }
                _ = try await receiver.receive(into: &small)
            }
            let receive = Double(cmc_allocations() - before) / Double(count)

            // A control that must allocate once per operation, so a zero above
            // means no allocation rather than a counter that counts nothing.
            before = cmc_allocations()
            for i in 0..<count { small = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 64 + i % 2) }
            let control = Double(cmc_allocations() - before) / Double(count)
            precondition(control >= 1, "the malloc counter saw \(control) allocations per new array")
            try await receiver.close()
            _ = small
            return (nop, read, receive)
        }
        report.add(scenario, "swift-uring awaited NOP", "allocations_per_op", nop, "allocations")
        report.add(scenario, "swift-uring 4 KiB read", "allocations_per_op", read, "allocations")
        report.add(scenario, "swift-uring 64-byte recv", "allocations_per_op", receive, "allocations")
        print("")
        print("\(scenario): NOP \(format(nop, digits: 3)), read \(format(read, digits: 3)), recv \(format(receive, digits: 3)) allocations per operation")
        report.goal(scenario, "0 allocations per NOP (measured: allocations per op)", ratio: nop)
        report.goal(scenario, "0 allocations per 4 KiB read (measured: allocations per op)", ratio: read)
    }
}
