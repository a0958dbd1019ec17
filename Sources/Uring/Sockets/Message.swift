import CUring
import Glibc

/// A `msghdr` with its data vectors, room for an address and its control
/// data, kept at one address while a `sendmsg` or `recvmsg` is in flight
/// (it is the request's `keepAlive`).
final class MessageBox: @unchecked Sendable {
    // `@unchecked Sendable`: the kernel reads or writes these only while the
    // request is in flight; Swift touches them before submitting and after
    // the completion.
    let header: UnsafeMutablePointer<msghdr>
    let vectors: UnsafeMutablePointer<iovec>
    let vectorCount: Int
    /// The bytes the vectors cover.
    let byteCount: Int
    let name = SocketAddressBox()
    private let control: UnsafeMutableRawPointer?
    /// Descriptors this box keeps open until the kernel has taken its own
    /// references: duplicates, so they mean the same file whatever the
    /// caller does with its own meanwhile.
    private let keptDescriptors: [OwnedDescriptor]

    /// A message over `vectors`, to `address` if given, carrying `control`
    /// (each `SCM_RIGHTS` descriptor in it must be open until the send ends).
    init(
        vectors source: [iovec], to address: SocketAddress? = nil, control messages: [ControlMessage] = [],
        keeping kept: [OwnedDescriptor] = []
    ) {
        (header, vectors) = Self.allocate(source)
        vectorCount = source.count
        byteCount = source.reduce(0) { $0 + $1.iov_len }
        keptDescriptors = kept
        let space = messages.reduce(0) { $0 + cu_cmsg_space($1.data.count) }
        control = space > 0 ? UnsafeMutableRawPointer.allocate(byteCount: space, alignment: 8) : nil
        if let address {
            let storage = UnsafeMutableRawPointer(name.storage)
            address.bytes.withUnsafeBytes { storage.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            header.pointee.msg_name = storage
            header.pointee.msg_namelen = socklen_t(address.bytes.count)
        }
        if let control {
            control.initializeMemory(as: UInt8.self, repeating: 0, count: space)
            header.pointee.msg_control = control
            header.pointee.msg_controllen = space
            var entry = cu_cmsg_first(header)
            for message in messages {
                guard let current = entry else { break }
                current.pointee.cmsg_len = cu_cmsg_len(message.data.count)
                current.pointee.cmsg_level = message.level
                current.pointee.cmsg_type = message.type
                message.data.withUnsafeBytes { bytes in
                    if let base = bytes.baseAddress, let target = cu_cmsg_data(current) {
                        UnsafeMutableRawPointer(target).copyMemory(from: base, byteCount: bytes.count)
                    }
                }
                entry = cu_cmsg_next(header, current)
            }
        }
    }

    /// A message of `count` bytes at `bytes`, to `address` if given.
    convenience init(bytes: UnsafeMutableRawPointer, count: Int, address: SocketAddress?) {
        self.init(vectors: [iovec(iov_base: bytes, iov_len: count)], to: address)
    }

    /// A message that carries a duplicate of `fd` (`SCM_RIGHTS`).
    static func passing(_ fd: Int32, bytes: UnsafeMutableRawPointer, count: Int) throws -> MessageBox {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw UringError.system(.duplicate, Glibc.errno) }
        return MessageBox(
            vectors: [iovec(iov_base: bytes, iov_len: count)],
            control: [ControlMessage(level: SOL_SOCKET, type: Int32(SCM_RIGHTS), value: copy)],
            keeping: [OwnedDescriptor(copy)])
    }

    /// Room for a received message in `vectors`: its sender's address (when
    /// `withSender`) and `controlCapacity` bytes of control data.
    init(receivingInto source: [iovec], controlCapacity: Int, withSender: Bool = true) {
        (header, vectors) = Self.allocate(source)
        vectorCount = source.count
        byteCount = source.reduce(0) { $0 + $1.iov_len }
        keptDescriptors = []
        if withSender {
            header.pointee.msg_name = UnsafeMutableRawPointer(name.storage)
            header.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        }
        if controlCapacity > 0 {
            let control = UnsafeMutableRawPointer.allocate(byteCount: controlCapacity, alignment: 8)
            control.initializeMemory(as: UInt8.self, repeating: 0, count: controlCapacity)
            header.pointee.msg_control = control
            header.pointee.msg_controllen = controlCapacity
            self.control = control
        } else {
            self.control = nil
        }
    }

    /// Room for `count` bytes at `bytes`, the sender's address and one
    /// passed descriptor.
    convenience init(receivingInto bytes: UnsafeMutableRawPointer, count: Int, withSender: Bool = true) {
        self.init(
            receivingInto: [iovec(iov_base: bytes, iov_len: count)], controlCapacity: cu_cmsg_space(4),
            withSender: withSender)
    }

    /// A zeroed header pointing at a copy of `source`.
    private static func allocate(_ source: [iovec]) -> (UnsafeMutablePointer<msghdr>, UnsafeMutablePointer<iovec>) {
        let header = UnsafeMutablePointer<msghdr>.allocate(capacity: 1)
        header.initialize(to: msghdr())
        let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: max(1, source.count))
        vectors.initialize(to: iovec())
        for (i, vector) in source.enumerated() { (vectors + i).initialize(to: vector) }
        header.pointee.msg_iov = vectors
        header.pointee.msg_iovlen = source.count
        return (header, vectors)
    }

    deinit {
        header.deallocate()
        vectors.deinitialize(count: max(1, vectorCount))
        vectors.deallocate()
        control?.deallocate()
    }

    /// The sender's address of a received message, if it had one.
    var senderAddress: SocketAddress? {
        let length = Int(header.pointee.msg_namelen)
        return header.pointee.msg_name != nil && length > 0 ? SocketAddress(storage: name.storage, length: length) : nil
    }

    /// Whether the kernel cut the message short (`MSG_TRUNC`).
    var truncated: Bool { header.pointee.msg_flags & Int32(MSG_TRUNC) != 0 }

    /// Whether control data was lost for want of room (`MSG_CTRUNC`).
    var controlTruncated: Bool { header.pointee.msg_flags & Int32(MSG_CTRUNC) != 0 }

    /// The control messages the kernel wrote, with the descriptors passed
    /// (`SCM_RIGHTS`) taken out and owned. Call once, after the completion.
    func receivedControl() -> (messages: [ControlMessage], descriptors: [OwnedDescriptor]) {
        var messages: [ControlMessage] = []
        var descriptors: [OwnedDescriptor] = []
        guard header.pointee.msg_control != nil, header.pointee.msg_controllen > 0 else { return ([], []) }
        var entry = cu_cmsg_first(header)
        while let current = entry {
            let length = Int(current.pointee.cmsg_len) - cu_cmsg_len(0)
            if length < 0 { break }
            let data = UnsafeRawBufferPointer(start: cu_cmsg_data(current), count: length)
            // SCM_RIGHTS, and SCM_PIDFD (4, Linux 6.5), carry descriptors
            // now installed in this process: owned, so never leaked.
            let type = current.pointee.cmsg_type
            if current.pointee.cmsg_level == SOL_SOCKET && (type == Int32(SCM_RIGHTS) || type == 4) {
                for i in 0..<(length / MemoryLayout<Int32>.size) {
                    descriptors.append(OwnedDescriptor(data.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
                }
            } else {
                messages.append(
                    ControlMessage(level: current.pointee.cmsg_level, type: current.pointee.cmsg_type, data: Array(data)))
            }
            entry = cu_cmsg_next(header, current)
        }
        return (messages, descriptors)
    }

    /// The first descriptor passed, now the caller's; any others are closed.
    func receivedDescriptor() -> Int32? {
        let passed = receivedControl().descriptors
        return passed.first?.detach()
    }
}

extension SocketIO {
    /// Checks the room asked for control messages.
    static func validate(controlCapacity: Int, address: SocketAddress?) throws(UringError) {
        if controlCapacity < 0 || controlCapacity > 64 * 1024 {
            throw UringError.invalid(.receiveMessage, "controlCapacity \(controlCapacity) must be from 0 to 65536").about(address)
        }
    }

    /// Checks a message's buffers: at least one byte, at most
    /// `DescriptorIO.maximumVectors` buffers.
    func validate(_ operation: UringOperation, _ box: MessageBox) throws {
        try validate(operation, count: box.byteCount)
        if box.vectorCount > DescriptorIO.maximumVectors {
            throw UringError.invalid(
                operation, "\(box.vectorCount) buffers in one message; the kernel takes at most \(DescriptorIO.maximumVectors)"
            ).about(address)
        }
    }

    nonisolated(nonsending) func sendMessage(_ box: MessageBox, to destination: SocketAddress?) async throws -> Int {
        try validate(.sendMessage, box)
        let errorAddress = destination ?? address
        let n = try await core.perform(.sendMessage, about: .address(errorAddress), keepAlive: box) {
            io_uring_prep_sendmsg(&$0, fd, box.header, UInt32(MSG_NOSIGNAL))
        }
        return Int(n)
    }

    nonisolated(nonsending) func receiveMessage(_ box: MessageBox) async throws -> Int {
        try validate(.receiveMessage, box)
        let n = try await core.perform(.receiveMessage, about: .address(address), keepAlive: box) {
            io_uring_prep_recvmsg(&$0, fd, box.header, UInt32(MSG_CMSG_CLOEXEC))
        }
        return Int(n)
    }

    /// Sends `box` without copying its bytes into the kernel (`SENDMSG_ZC`);
    /// returns after the kernel's notification that it no longer reads them.
    nonisolated(nonsending) func sendMessageZeroCopy(_ box: MessageBox, to destination: SocketAddress?) async throws -> Int {
        try validate(.sendMessageZeroCopy, box)
        return try await zeroCopy(.sendMessageZeroCopy, about: destination ?? address, keepAlive: box) {
            io_uring_prep_sendmsg_zc(&$0, fd, box.header, UInt32(MSG_NOSIGNAL))
        }
    }
}
