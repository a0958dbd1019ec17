import Testing
import Uring

extension Trait where Self == ConditionTrait {
    /// Skips the test on kernels whose io_uring lacks `operation`, with the
    /// running kernel's release in the reason.
    ///
    /// ```swift
    /// @Test(.requires(.readMultishot, "IORING_OP_READ_MULTISHOT, Linux 6.7"))
    /// func multishotRead() async throws { … }
    /// ```
    ///
    /// It asks the kernel's probe, through ``Uring/RingActor/shared``; where
    /// no ring can be created at all, the test is skipped too.
    ///
    /// - Parameters:
    ///   - operation: The operation the test needs.
    ///   - needs: What to name in the reason: the opcode and the first kernel
    ///     that has it, say.
    public static func requires(_ operation: UringOperation, _ needs: String? = nil) -> Self {
        let what = needs.map { "\(operation) (\($0))" } ?? "\(operation)"
        return .enabled(
            if: (try? RingActor.shared)?.isSupported(operation) ?? false,
            "this kernel (Linux \(ProcessResources.kernelRelease)) lacks io_uring's \(what)")
    }
}
