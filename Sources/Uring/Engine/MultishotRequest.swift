import CUring
import Glibc

/// What one completion of a multishot request means to its stream.
enum MultishotEvent<Element: Sendable> {
    /// An element for the consumer.
    case element(Element)
    /// Nothing for the consumer (the request may go on, or is re-armed).
    case nothing
    /// The stream is over, normally.
    case end
    /// The request stopped for want of a resource (buffers, descriptors):
    /// it stays down until `arrange`, given the stream, makes sure
    /// `resourcesReturned()` is called on it.
    case waitForResources(arrange: @Sendable (MultishotStream<Element>) -> Void)
    /// Nothing the stream itself knows: the common policy applies. An
    /// `ECANCELED` from a pause or a stop re-arms or ends the stream as it
    /// asked; any other error ends it with the error the context makes.
    case standard
}

extension RingCore {
    /// A stream fed by one multishot request, with the policy every such
    /// stream shares: `prepare` fills the request, `interpret` turns each
    /// completion into an event (``MultishotEvent/standard`` for errors it
    /// does not handle itself), and the request is re-armed whenever the
    /// kernel ends it without the stream being over. Errors are made by
    /// `context`.
    ///
    /// The request starts with the consumer's first `next()`.
    func multishotStream<Element: Sendable>(
        _ operation: UringOperation, about context: some ErrorContext = .none, highWater: Int,
        idleTimeout: Duration? = nil, keepAlive: (any AnyObject & Sendable)? = nil,
        prepare: @escaping @Sendable (inout io_uring_sqe) -> Void,
        interpret: @escaping @Sendable (_ result: Int32, _ flags: UInt32) -> MultishotEvent<Element>
    ) -> MultishotStream<Element> {
        let timeoutError = context.error(.timedOut, operation)
        return MultishotStream(core: self, highWater: highWater, timeoutError: timeoutError, idleTimeout: idleTimeout) {
            [self] stream in
            if !acceptsWork.load(ordering: .acquiring) {
                stream.finish(throwing: context.error(.shutDown, operation))
                return 0
            }
            return submitStream(keepAlive: keepAlive, handler: { [self] result, flags in
                let continues = flags & IORING_CQE_F_MORE != 0
                switch interpret(result, flags) {
                case .element(let element):
                    stream.deliver(element, requestContinues: continues)
                    if !continues { stream.requestEnded() }
                case .nothing:
                    if !continues { stream.requestEnded() }
                case .end:
                    stream.finish(throwing: nil)
                case .waitForResources(let arrange):
                    stream.waitForResources()
                    arrange(stream)
                case .standard:
                    if result >= 0 {
                        if !continues { stream.requestEnded() }
                    } else if result == -ECANCELED && acceptsWork.load(ordering: .acquiring) {
                        stream.requestEnded()  // paused for back-pressure, or stopped
                    } else {
                        stream.finish(throwing: error(for: result, operation, about: context))
                    }
                }
            }, prepare)
        }
    }
}

/// Owns one iterator's stream: makes it on the first `next()`, and stops it
/// (cancelling its request) when the iterator is dropped, so an abandoned
/// loop leaves nothing in the kernel. Once the stream has thrown, or making
/// it failed, `next()` returns nil.
final class StreamConsumer<Element: Sendable>: Sendable {
    private enum Phase {
        case notStarted
        case running(MultishotStream<Element>)
        case over
    }
    private let phase = Locked(Phase.notStarted)
    private let make: nonisolated(nonsending) @Sendable () async throws -> MultishotStream<Element>

    init(_ make: nonisolated(nonsending) @escaping @Sendable () async throws -> MultishotStream<Element>) {
        self.make = make
    }

    deinit {
        if case .running(let stream) = phase.withLock({ $0 }) { stream.stop() }
    }

    nonisolated(nonsending) func next() async throws -> Element? {
        let stream: MultishotStream<Element>
        switch phase.withLock({ $0 }) {
        case .running(let running):
            stream = running
        case .over:
            return nil
        case .notStarted:
            do {
                stream = try await make()
            } catch {
                phase.withLock { $0 = .over }
                throw error
            }
            phase.withLock { $0 = .running(stream) }
        }
        do {
            return try await stream.next()
        } catch {
            // Stopped here too: a `next()` that finds its task cancelled
            // throws before the stream stops itself, and a request left
            // armed would keep its descriptor open.
            stream.stop()
            phase.withLock { $0 = .over }
            throw error
        }
    }
}
