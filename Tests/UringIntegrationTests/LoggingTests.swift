#if Logging
import Glibc
import Logging
import SystemPackage
import Testing
import Uring
import UringLogging

/// A log handler that keeps what it is given.
struct CapturingLogHandler: LogHandler {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    let entries: Locked<[Entry]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        entries.withLock {
            $0.append(Entry(level: event.level, message: "\(event.message)", metadata: event.metadata ?? [:]))
        }
    }
}

extension Integrations {
    @Suite("UringLogging: the library's events reach a swift-log Logger")
    struct LoggingTests {
        @Test("a ring that cannot be created logs an error with its errno, and still throws")
        func creationFailure() throws {
            let entries = Locked<[CapturingLogHandler.Entry]>([])
            var options = RingOptions()
            options.logEvents(to: Logger(label: "test") { _ in CapturingLogHandler(entries: entries) })
            options.processor = 1 << 20  // no such CPU
            #expect(throws: UringError.self) { _ = try RingActor(options: options) }
            let logged = entries.withLock { $0 }
            #expect(logged.count == 1)
            #expect(logged.first?.level == .error)
            #expect(logged.first?.metadata["uring.event"] == "ringCreationFailed")
            #expect(logged.first?.message.contains("could not be created") == true)
        }

        @Test("a descriptor closed after its ring shut down is logged as a notice naming it")
        func closedAfterShutdown() async throws {
            let entries = Locked<[CapturingLogHandler.Entry]>([])
            var options = RingOptions()
            options.logEvents(to: Logger(label: "test") { _ in CapturingLogHandler(entries: entries) })
            let ring = try RingActor(options: options)
            let file = try await File.open("/proc/self/stat", on: ring)
            let descriptor = file.withUnsafeDescriptor { $0.rawValue }
            await ring.shutdown()
            try await file.close()
            let logged = entries.withLock { $0 }
            #expect(logged.count == 1)
            #expect(logged.first?.level == .notice)
            #expect(logged.first?.metadata["uring.descriptor"] == "\(descriptor)")
            #expect(logged.first?.metadata["uring.path"] == "/proc/self/stat")
        }

        @Test("every event maps to a level by its severity, with its details as metadata")
        func mapping() throws {
            let address = try SocketAddress(ip: "127.0.0.1", port: 8080)
            let backOff = RingEvent.acceptBackedOff(address: address, error: .tooManyOpenFiles, retryAfter: .milliseconds(20))
            #expect(backOff.logLevel == .warning)
            #expect(backOff.logMetadata["uring.address"] == "127.0.0.1:8080")
            #expect(backOff.logMetadata["uring.errno"] == "\(Errno.tooManyOpenFiles.rawValue)")
            #expect(backOff.description.contains("127.0.0.1:8080"))
            let pool = RingEvent.receivePoolExhausted(path: "/run/fifo", address: nil, bufferCount: 64)
            #expect(pool.logLevel == .warning)
            #expect(pool.logMetadata["uring.buffers"] == "64")
            #expect(pool.logMetadata["uring.path"] == "/run/fifo")
            #expect(pool.description.contains("'/run/fifo'"))
            #expect(RingEvent.completionsDropped(total: 3).logLevel == .error)
        }
    }
}
#endif
