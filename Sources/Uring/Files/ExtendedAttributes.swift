import CUring
import Glibc
import SystemPackage

/// What setting an extended attribute may do to an existing one.
public enum ExtendedAttributeMode: Sendable, Hashable {
    /// Creates the attribute or replaces its value.
    case createOrReplace
    /// Creates it; fails with `EEXIST` if it exists (`XATTR_CREATE`).
    case create
    /// Replaces it; fails with `ENODATA` if it does not exist (`XATTR_REPLACE`).
    case replace

    var flags: Int32 {
        switch self {
        case .createOrReplace: 0
        case .create: 1  // XATTR_CREATE
        case .replace: 2  // XATTR_REPLACE
        }
    }
}

/// The request memory of one extended-attribute call: the name (and the
/// path, for a path call) as C strings and the value.
private final class AttributeRequest: Sendable {
    let name: KernelMemory<CChar>
    let value: KernelMemory<UInt8>
    let path: PathStorage?

    init(name: String, value: [UInt8]? = nil, capacity: Int = 0, path: FilePath? = nil) {
        let bytes = Array(name.utf8CString)
        let storedName = KernelMemory<CChar>(repeating: 0, count: bytes.count)
        for (index, byte) in bytes.enumerated() { storedName.pointer[index] = byte }
        let storedValue = KernelMemory<UInt8>(repeating: 0, count: max(value?.count ?? 0, capacity))
        for (index, byte) in (value ?? []).enumerated() { storedValue.pointer[index] = byte }
        self.name = storedName
        self.value = storedValue
        self.path = path.map(PathStorage.init)
    }

    var valueBytes: UnsafeMutablePointer<CChar> { UnsafeMutableRawPointer(value.pointer).assumingMemoryBound(to: CChar.self) }
}

extension DescriptorIO {
    /// The value of the attribute `name` (`fgetxattr` through the ring, or
    /// `getxattr` of `atPath` when given): tried with 256 bytes, then with
    /// the size the kernel reports (asked with an empty buffer).
    nonisolated(nonsending) func extendedAttribute(_ name: String, atPath: FilePath? = nil) async throws -> [UInt8] {
        var capacity = 256
        for _ in 0..<3 {
            let request = AttributeRequest(name: name, capacity: capacity, path: atPath)
            let operation: UringOperation = atPath == nil ? .getAttribute : .getAttributeAtPath
            do {
                let count = Int(try await core.perform(operation, about: .path(atPath ?? path), keepAlive: request) {
                    if let stored = request.path {
                        io_uring_prep_getxattr(&$0, request.name.pointer, request.valueBytes, stored.pointer, UInt32(capacity))
                    } else {
                        io_uring_prep_fgetxattr(&$0, fd, request.name.pointer, request.valueBytes, UInt32(capacity))
                    }
                })
                if capacity == 0 {
                    capacity = count  // the size; now read the value
                    if count == 0 { return [] }
                    continue
                }
                return Array(UnsafeBufferPointer(start: request.value.pointer, count: count))
            } catch let error as UringError where error.errno == Errno(rawValue: ERANGE) {
                capacity = 0  // too small: ask the size
            }
        }
        // The value kept growing between the calls.
        throw UringError.system(atPath == nil ? .getAttribute : .getAttributeAtPath, ERANGE, path: atPath ?? path)
    }

    /// Sets the attribute `name` to `value`.
    nonisolated(nonsending) func setExtendedAttribute(
        _ name: String, to value: [UInt8], mode: ExtendedAttributeMode, atPath: FilePath? = nil
    ) async throws {
        let request = AttributeRequest(name: name, value: value, path: atPath)
        let operation: UringOperation = atPath == nil ? .setAttribute : .setAttributeAtPath
        let flags = mode.flags
        _ = try await core.perform(operation, about: .path(atPath ?? path), keepAlive: request) {
            if let stored = request.path {
                io_uring_prep_setxattr(&$0, request.name.pointer, request.valueBytes, stored.pointer, flags, UInt32(value.count))
            } else {
                io_uring_prep_fsetxattr(&$0, fd, request.name.pointer, request.valueBytes, flags, UInt32(value.count))
            }
        }
    }
}

extension File {
    /// The value of the extended attribute `name`, such as `user.origin`
    /// (`fgetxattr`, through the ring).
    ///
    /// - Throws: ``UringError`` naming the file: `ENODATA` if the file has no
    ///   such attribute, `ENOTSUP` where the file system keeps none.
    public func extendedAttribute(_ name: String) async throws -> [UInt8] {
        try await io.extendedAttribute(name)
    }

    /// Sets the extended attribute `name` to `value` (`fsetxattr`, through
    /// the ring). Names outside the `user.` namespace need privileges.
    public func setExtendedAttribute(
        _ name: String, to value: [UInt8], mode: ExtendedAttributeMode = .createOrReplace
    ) async throws {
        try await io.setExtendedAttribute(name, to: value, mode: mode)
    }

    /// The names of the file's extended attributes (`flistxattr`). io_uring
    /// has no operation for it, so the call is made off the ring's thread.
    public func extendedAttributeNames() async throws -> [String] {
        let (fd, path) = (descriptor.rawValue, self.path)
        return try await offRingThread { () throws(UringError) -> [String] in
            try attributeNames(.listAttributes, path: path) { cu_flistxattr(fd, $0, $1) }
        }
    }

    /// Removes the extended attribute `name` (`fremovexattr`, off the ring's
    /// thread: io_uring has no operation for it).
    ///
    /// - Throws: ``UringError`` naming the file: `ENODATA` if there is no
    ///   such attribute.
    public func removeExtendedAttribute(_ name: String) async throws {
        let (fd, path) = (descriptor.rawValue, self.path)
        try await offRingThread { () throws in
            let status = cu_fremovexattr(fd, name)
            if status != 0 { throw UringError.system(.removeAttribute, -status, path: path) }
        }
    }
}

extension RingActor {
    /// The value of the extended attribute `name` of the file at `path`,
    /// following a symbolic link (`getxattr`, through the ring).
    public nonisolated(nonsending) func extendedAttribute(_ name: String, at path: FilePath) async throws -> [UInt8] {
        if path.isEmpty { throw UringError.invalid(.getAttributeAtPath, path: path, "the path is empty") }
        return try await DescriptorIO(core: core, fd: AT_FDCWD, path: path).extendedAttribute(name, atPath: path)
    }

    /// Sets the extended attribute `name` of the file at `path` (`setxattr`,
    /// through the ring).
    public nonisolated(nonsending) func setExtendedAttribute(
        _ name: String, to value: [UInt8], at path: FilePath, mode: ExtendedAttributeMode = .createOrReplace
    ) async throws {
        if path.isEmpty { throw UringError.invalid(.setAttributeAtPath, path: path, "the path is empty") }
        try await DescriptorIO(core: core, fd: AT_FDCWD, path: path).setExtendedAttribute(name, to: value, mode: mode, atPath: path)
    }

    /// The names of the extended attributes of the file at `path`, following
    /// a symbolic link (`listxattr`, off the ring's thread: io_uring has no
    /// operation for it).
    public nonisolated(nonsending) func extendedAttributeNames(at path: FilePath) async throws -> [String] {
        if path.isEmpty { throw UringError.invalid(.listAttributesAtPath, path: path, "the path is empty") }
        return try await offRingThread { () throws(UringError) -> [String] in
            let names = path.withPlatformString { cPath in
                Result { () throws(UringError) in
                    try attributeNames(.listAttributesAtPath, path: path) { cu_listxattr(cPath, $0, $1) }
                }
            }
            return try names.get()
        }
    }

    /// Removes the extended attribute `name` of the file at `path`,
    /// following a symbolic link (`removexattr`, off the ring's thread).
    ///
    /// - Throws: ``UringError`` naming `path`: `ENODATA` if there is no such
    ///   attribute.
    public nonisolated(nonsending) func removeExtendedAttribute(_ name: String, at path: FilePath) async throws {
        if path.isEmpty { throw UringError.invalid(.removeAttributeAtPath, path: path, "the path is empty") }
        try await offRingThread { () throws in
            let status = path.withPlatformString { cu_removexattr($0, name) }
            if status != 0 { throw UringError.system(.removeAttributeAtPath, -status, path: path) }
        }
    }
}

/// The names a `listxattr`-style call returns: `list(buffer, size)` gives the
/// bytes written, or a negative errno; asked first with no buffer for the
/// size, and asked again (up to three times) if it grew past the room.
private func attributeNames(
    _ operation: UringOperation, path: FilePath?, _ list: (UnsafeMutablePointer<CChar>?, UInt) -> Int
) throws(UringError) -> [String] {
    for _ in 0..<3 {
        let size = list(nil, 0)
        if size < 0 { throw UringError.system(operation, Int32(-size), path: path) }
        if size == 0 { return [] }
        // Room for names added since the size was asked.
        var buffer = [CChar](repeating: 0, count: size + 256)
        let filled = buffer.withUnsafeMutableBufferPointer { list($0.baseAddress, UInt($0.count)) }
        if filled == -Int(ERANGE) { continue }  // more names came than room: ask again
        if filled < 0 { throw UringError.system(operation, Int32(-filled), path: path) }
        return buffer[..<filled].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }
    // The list kept growing between the calls.
    throw UringError.system(operation, ERANGE, path: path)
}
