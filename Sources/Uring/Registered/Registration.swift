import CUring
import Glibc

/// Calls that change the ring's registered tables (`io_uring_register`).
enum Registration {
    /// Runs a registration call on the ring thread and throws its negative
    /// result as an error about `operation`.
    nonisolated(nonsending) static func perform(
        _ operation: UringOperation, on core: RingCore,
        _ call: @escaping @Sendable (UnsafeMutablePointer<io_uring>) -> Int32
    ) async throws(UringError) {
        let result = await core.register(call)
        if result == -ESHUTDOWN { throw .shutDown(operation) }
        if result < 0 { throw .system(operation, -result) }
    }

    /// Empties slot `slot` of the file table, on the ring thread, without
    /// waiting; for files dropped without `close()`.
    static func clearFileSlot(_ slot: Int32, on core: RingCore) {
        core.registerLater { ring in
            var none: Int32 = -1
            _ = io_uring_register_files_update(ring, UInt32(slot), &none, 1)
        }
    }
}
