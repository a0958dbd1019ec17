#if Logging
import Logging
import Uring

extension RingOptions {
    /// Passes the ring's ``Uring/RingEvent``s to `logger`, each at the level
    /// its severity maps to (see ``Uring/RingEvent/logLevel``), with the
    /// event's details as metadata. It replaces any other
    /// ``Uring/RingOptions/onEvent`` handler.
    ///
    /// ```swift
    /// var options = RingOptions()
    /// options.logEvents(to: Logger(label: "server.uring"))
    /// let ring = try RingActor(options: options)
    /// ```
    ///
    /// The events are rare (a server short of descriptors or buffers, a ring
    /// that could not be created), but the handler runs on the ring's thread:
    /// give the logger a handler that does not block for long.
    public mutating func logEvents(to logger: Logger) {
        onEvent = { event in
            logger.log(level: event.logLevel, "\(event.description)", metadata: event.logMetadata)
        }
    }
}

extension RingEvent {
    /// The swift-log level of this event's severity: `notice`, `warning` or
    /// `error`.
    public var logLevel: Logger.Level {
        switch severity {
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        }
    }

    /// The event's kind and details as logging metadata, under keys that
    /// start with `uring.`.
    public var logMetadata: Logger.Metadata {
        switch self {
        case .acceptBackedOff(let address, let error, let retryAfter):
            var metadata: Logger.Metadata = [
                "uring.event": "acceptBackedOff", "uring.errno": "\(error.rawValue)",
                "uring.retry_after": "\(retryAfter)",
            ]
            if let address { metadata["uring.address"] = "\(address)" }
            return metadata
        case .receivePoolExhausted(let path, let address, let bufferCount):
            var metadata: Logger.Metadata = ["uring.event": "receivePoolExhausted", "uring.buffers": "\(bufferCount)"]
            if let path { metadata["uring.path"] = "\(path)" }
            if let address { metadata["uring.address"] = "\(address)" }
            return metadata
        case .ringCreationFailed(let error):
            return ["uring.event": "ringCreationFailed", "uring.errno": "\(error.errno.rawValue)"]
        case .descriptorClosedAfterShutdown(let descriptor, let path, let address):
            var metadata: Logger.Metadata = [
                "uring.event": "descriptorClosedAfterShutdown", "uring.descriptor": "\(descriptor.rawValue)",
            ]
            if let path { metadata["uring.path"] = "\(path)" }
            if let address { metadata["uring.address"] = "\(address)" }
            return metadata
        case .completionsDropped(let total):
            return ["uring.event": "completionsDropped", "uring.total": "\(total)"]
        }
    }
}
#endif
