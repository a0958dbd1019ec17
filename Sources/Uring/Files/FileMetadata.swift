import CUring
import Glibc
import SystemPackage

/// What kind of file system object a path or descriptor refers to.
public enum FileType: Sendable, Hashable {
    case regular
    case directory
    case symbolicLink
    case fifo
    case socket
    case characterDevice
    case blockDevice
    case unknown
}

/// A point in time as the file system records it: seconds and nanoseconds
/// since the Unix epoch.
public struct FileTimestamp: Sendable, Hashable, Comparable {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    public var seconds: Int64
    /// Nanoseconds past `seconds`, 0 to 999,999,999.
    public var nanoseconds: UInt32

    /// Creates a timestamp.
    public init(seconds: Int64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Whether `a` is earlier than `b`.
    public static func < (a: Self, b: Self) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// A file's metadata, from `statx`.
public struct FileMetadata: Sendable, Hashable {
    /// The kind of object.
    public var type: FileType
    /// Size in bytes.
    public var size: Int64
    /// Permission bits (without the type bits).
    public var permissions: FilePermissions
    /// Owning user id.
    public var userID: UInt32
    /// Owning group id.
    public var groupID: UInt32
    /// Number of hard links.
    public var linkCount: UInt32
    /// Inode number.
    public var inode: UInt64
    /// Device (major, minor) holding the file.
    public var device: (major: UInt32, minor: UInt32)
    /// Preferred I/O block size.
    public var blockSize: UInt32
    /// Bytes actually allocated on disk.
    public var allocatedBytes: Int64
    /// Last access.
    public var accessed: FileTimestamp
    /// Last content change.
    public var modified: FileTimestamp
    /// Last status change.
    public var statusChanged: FileTimestamp
    /// Creation, when the file system records it.
    public var created: FileTimestamp?

    init(_ s: statx) {
        type = FileType(mode: s.stx_mode)
        size = Int64(bitPattern: s.stx_size)
        permissions = FilePermissions(rawValue: CInterop.Mode(s.stx_mode) & 0o7777)
        userID = s.stx_uid
        groupID = s.stx_gid
        linkCount = s.stx_nlink
        inode = s.stx_ino
        device = (s.stx_dev_major, s.stx_dev_minor)
        blockSize = s.stx_blksize
        allocatedBytes = Int64(bitPattern: s.stx_blocks &* 512)
        accessed = FileTimestamp(seconds: s.stx_atime.tv_sec, nanoseconds: s.stx_atime.tv_nsec)
        modified = FileTimestamp(seconds: s.stx_mtime.tv_sec, nanoseconds: s.stx_mtime.tv_nsec)
        statusChanged = FileTimestamp(seconds: s.stx_ctime.tv_sec, nanoseconds: s.stx_ctime.tv_nsec)
        created =
            s.stx_mask & UInt32(STATX_BTIME) != 0
            ? FileTimestamp(seconds: s.stx_btime.tv_sec, nanoseconds: s.stx_btime.tv_nsec) : nil
    }

    /// Whether every field is equal.
    public static func == (a: Self, b: Self) -> Bool {
        a.type == b.type && a.size == b.size && a.permissions == b.permissions && a.userID == b.userID
            && a.groupID == b.groupID && a.linkCount == b.linkCount && a.inode == b.inode
            && a.device == b.device && a.blockSize == b.blockSize && a.allocatedBytes == b.allocatedBytes
            && a.accessed == b.accessed && a.modified == b.modified && a.statusChanged == b.statusChanged
            && a.created == b.created
    }

    /// Hashes the identifying fields (inode, device, size, modification).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(inode)
        hasher.combine(device.major)
        hasher.combine(device.minor)
        hasher.combine(size)
        hasher.combine(modified)
    }
}

extension FileType {
    /// The type that a mode's `S_IFMT` bits give.
    init(mode: UInt16) {
        switch UInt32(mode) & 0o170000 {
        case 0o100000: self = .regular
        case 0o040000: self = .directory
        case 0o120000: self = .symbolicLink
        case 0o010000: self = .fifo
        case 0o140000: self = .socket
        case 0o020000: self = .characterDevice
        case 0o060000: self = .blockDevice
        default: self = .unknown
        }
    }
}
