/// A place in one of a ring's registered tables: a slot of its file table
/// (``RegisteredFile/index``) or a buffer of a registered set
/// (``RegisteredBuffer/index``). Requests name it instead of a descriptor
/// or an address, which spares the kernel a lookup.
public struct RegisteredIndex: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// The position, from 0.
    public let position: Int

    /// The place at `position`, for a ``LinkedChain`` step that opens into
    /// a chosen slot and the steps that use it.
    public init(_ position: Int) {
        self.position = position
    }

    /// The place at a literal position: `chain.read(from: 0, count: 10, at: 0)`.
    public init(integerLiteral position: Int) {
        self.position = position
    }

    /// Orders by position.
    public static func < (lhs: RegisteredIndex, rhs: RegisteredIndex) -> Bool { lhs.position < rhs.position }

    /// `#` and the position, such as `#3`.
    public var description: String { "#\(position)" }
}
