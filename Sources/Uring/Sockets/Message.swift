import CUring
import Glibc

/// A `msghdr` with one data vector, room for an address and for one
/// passed descriptor, kept at one address while a `sendmsg` or `recvmsg`
/// is in flight (it is the request's `keepAlive`).
final class MessageBox: @unchecked Sendable {
    // `@unchecked Sendable`: the kernel reads or writes these only while the
    // request is in flight; Swift touches them before submitting and after
    // the completion.
    let header: UnsafeMutablePointer<msghdr>
    let vector: UnsafeMutablePointer<iovec>
    let name = SocketAddressBox()
    let control: UnsafeMutableRawPointer
    /// The descriptor being sent: duplicated here, so it stays open (and
    /// means the same file) until the kernel has taken its own reference.
    private let sentDescriptor: OwnedDescriptor?

    /// A message of `count` bytes at `bytes`, to `address` if given.
    init(bytes: UnsafeMutableRawPointer, count: Int, address: SocketAddress?, sentDescriptor: OwnedDescriptor? = nil) {
        header = .allocate(capacity: 1)
        header.initialize(to: msghdr())
        vector = .allocate(capacity: 1)
        vector.initialize(to: iovec(iov_base: bytes, iov_len: count))
        control = .allocate(byteCount: Int(cu_rights_space()), alignment: 8)
        control.initializeMemory(as: UInt8.self, repeating: 0, count: Int(cu_rights_space()))
        self.sentDescriptor = sentDescriptor
        header.pointee.msg_iov = vector
        header.pointee.msg_iovlen = 1
        if let address {
            address.bytes.withUnsafeBytes {
                UnsafeMutableRawPointer(name.storage).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
            }
            header.pointee.msg_name = UnsafeMutableRawPointer(name.storage)
            header.pointee.msg_namelen = socklen_t(address.bytes.count)
        }
        if let sentDescriptor { cu_rights_pack(header, control, sentDescriptor.fd) }
    }

    /// A message that carries a duplicate of `fd` (`SCM_RIGHTS`).
    static func passing(_ fd: Int32, bytes: UnsafeMutableRawPointer, count: Int) throws -> MessageBox {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw UringError.system(.duplicate, Glibc.errno) }
        return MessageBox(bytes: bytes, count: count, address: nil, sentDescriptor: OwnedDescriptor(copy))
    }

    /// Room for a received message: its sender's address and one descriptor.
    static func forReceiving(into bytes: UnsafeMutableRawPointer, count: Int) -> MessageBox {
        let box = MessageBox(bytes: bytes, count: count, address: nil)
        box.header.pointee.msg_name = UnsafeMutableRawPointer(box.name.storage)
        box.header.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        box.header.pointee.msg_control = box.control
        box.header.pointee.msg_controllen = Int(cu_rights_space())
        return box
    }

    deinit {
        header.deallocate()
        vector.deallocate()
        control.deallocate()
    }

    /// The sender's address of a received message, if it had one.
    var senderAddress: SocketAddress? {
        let length = Int(header.pointee.msg_namelen)
        return length > 0 ? SocketAddress(storage: name.storage, length: length) : nil
    }

    /// Whether the kernel cut the message short (`MSG_TRUNC`).
    var truncated: Bool { header.pointee.msg_flags & Int32(MSG_TRUNC) != 0 }
}

extension SocketIO {
    nonisolated(nonsending) func sendMessage(_ box: MessageBox, to destination: SocketAddress?) async throws -> Int {
        try validate(.sendMessage, count: box.vector.pointee.iov_len)
        let errorAddress = destination ?? address
        let n = try await core.perform(.sendMessage, about: .address(errorAddress), keepAlive: box) {
            io_uring_prep_sendmsg(&$0, fd, box.header, UInt32(MSG_NOSIGNAL))
        }
        return Int(n)
    }

    nonisolated(nonsending) func receiveMessage(_ box: MessageBox) async throws -> Int {
        try validate(.receiveMessage, count: box.vector.pointee.iov_len)
        let n = try await core.perform(.receiveMessage, about: .address(address), keepAlive: box) {
            io_uring_prep_recvmsg(&$0, fd, box.header, UInt32(MSG_CMSG_CLOEXEC))
        }
        return Int(n)
    }
}
