// uring-echo-buffers PORT plain|bytebuffer: one echo server in two forms, for
// the `bytebuffer` scenario. `plain` echoes each received chunk as it is;
// `bytebuffer` receives the same chunks as SwiftNIO ByteBuffers (UringNIO)
// and sends those; `receive-into` receives into one reused ByteBuffer per
// connection (no copy, one receive request per chunk). Everything else is the same, so the ratio of their rates
// is the cost of the ByteBuffer form.

import Glibc
import NIOCore
import Uring
import UringNIO

let arguments = CommandLine.arguments.dropFirst()
guard let port = arguments.first.flatMap({ UInt16($0) }), let mode = arguments.dropFirst().first,
    ["plain", "bytebuffer", "receive-into"].contains(mode)
else {
    print("usage: uring-echo-buffers PORT plain|bytebuffer|receive-into")
    exit(2)
}

try await RingActor.run { ring in
    let listener = try await StreamListener.bind(to: .loopback(port: port), backlog: 4096, on: ring)
    try await listener.serve(maximumConnections: 10_000) { connection in
        switch mode {
        case "bytebuffer":
            for try await buffer in connection.received().byteBuffers() {
                try await connection.sendAll(buffer)
            }
        case "receive-into":
            // One ByteBuffer per connection, received into in place and reused.
            var buffer = ByteBufferAllocator().buffer(capacity: 16 * 1024)
            while try await connection.receive(into: &buffer, maximumCount: 16 * 1024) > 0 {
                try await connection.sendAll(buffer)
                buffer.clear()
            }
        default:
            for try await chunk in connection.received() {
                try await connection.sendAll(chunk)
            }
        }
    }
}
