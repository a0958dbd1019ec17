import CUring
import Glibc

/// How a buffer's memory will be used, for ``AlignedBuffer/advise(_:on:)``
/// (`madvise`'s advice).
public enum MemoryAdvice: Sendable, Hashable {
    /// No particular pattern.
    case normal
    /// Touched from start to end: the kernel may read ahead aggressively.
    case sequential
    /// Touched in no order.
    case random
    /// Needed soon.
    case willNeed
    /// Not needed: the kernel frees the pages now, and the bytes read as
    /// zero afterwards (the buffer stays usable).
    case dontNeed
    /// Back the memory with huge pages where the kernel can
    /// (transparent huge pages in `madvise` mode).
    case hugePages
    /// Never back the memory with huge pages.
    case noHugePages

    var rawValue: Int32 {
        switch self {
        case .normal: MADV_NORMAL
        case .sequential: MADV_SEQUENTIAL
        case .random: MADV_RANDOM
        case .willNeed: MADV_WILLNEED
        case .dontNeed: MADV_DONTNEED
        case .hugePages: MADV_HUGEPAGE
        case .noHugePages: MADV_NOHUGEPAGE
        }
    }
}

extension AlignedBuffer {
    /// Advises the kernel how the buffer's memory will be used
    /// (`IORING_OP_MADVISE`, through the ring).
    ///
    /// Only the memory pages that lie wholly inside the buffer are advised:
    /// a page it shares with other allocations is left alone, so that
    /// ``MemoryAdvice/dontNeed`` cannot zero anyone else's bytes. A buffer
    /// smaller than a page has no such page (nor may one that is not
    /// page-aligned and shorter than two), and then the call does nothing.
    ///
    /// - Throws: ``UringError`` naming `madvise` (`EINVAL` where the kernel
    ///   does not offer the advice, such as huge pages on a kernel built
    ///   without them).
    public mutating func advise(_ advice: MemoryAdvice, on ring: RingActor) async throws {
        let page = AlignedBuffer.pageSize
        guard let (start, length) = withUnsafeMutableIOBytes({ bytes -> (UnsafeMutableRawPointer, Int)? in
            guard let base = bytes.baseAddress else { return nil }
            let first = (Int(bitPattern: base) + page - 1) & ~(page - 1)
            let end = (Int(bitPattern: base) + bytes.count) & ~(page - 1)
            guard end > first, let start = UnsafeMutableRawPointer(bitPattern: first) else { return nil }
            return (start, end - first)
        }) else { return }
        // liburing 2.3 passes the length in 32 bits: advise in whole-page
        // pieces of at most 1 GiB. The buffer is lent (inout) meanwhile.
        let piece = 1 << 30
        var done = 0
        while done < length {
            let address = start + done
            let count = min(piece, length - done)
            _ = try await ring.core.perform(.adviseMemory) {
                io_uring_prep_madvise(&$0, address, off_t(count), advice.rawValue)
            }
            done += count
        }
    }
}
