import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Typed socket options", .checksDescriptorLeaks)
    struct SocketOptionTests {
        @Test("set and read back on a TCP connection, a listener and a UDP socket, through the ring or (forced) the system calls", arguments: [false, true])
        func roundTrips(forcedFallback: Bool) async throws {
            var options = RingOptions()
            if forcedFallback { options.treatedAsUnsupported = [.socketOption] }
            let ring = try RingActor(options: options)
            let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
            #expect(try await listener.option(.reuseAddress) == true)
            #expect(try await listener.option(.reusePort) == false)
            // Both flags set each way and read back, on a UDP socket.
            let udp = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
            for on in [true, false] {
                try await udp.setOption(.reuseAddress, to: on)
                #expect(try await udp.option(.reuseAddress) == on)
                try await udp.setOption(.reusePort, to: on)
                #expect(try await udp.option(.reusePort) == on)
            }
            try await udp.close()
            let connection = try await StreamConnection.connect(to: listener.localAddress, on: ring)

            for on in [true, false] {
                try await connection.setOption(.noDelay, to: on)
                #expect(try await connection.option(.noDelay) == on)
            }
            try await connection.setOption(.keepAlive, to: true)
            #expect(try await connection.option(.keepAlive) == true)
            try await connection.setOption(.keepAliveIdle, to: .seconds(60))
            #expect(try await connection.option(.keepAliveIdle) == .seconds(60))
            try await connection.setOption(.keepAliveInterval, to: .seconds(7))
            #expect(try await connection.option(.keepAliveInterval) == .seconds(7))
            try await connection.setOption(.keepAliveCount, to: 4)
            #expect(try await connection.option(.keepAliveCount) == 4)
            // The kernel doubles a buffer size for its bookkeeping (and caps
            // it at net.core.rmem_max).
            try await connection.setOption(.receiveBufferSize, to: 4096)
            #expect(try await connection.option(.receiveBufferSize) == 8192)
            #expect(try await connection.option(.linger) == nil)
            try await connection.setOption(.linger, to: .seconds(3))
            #expect(try await connection.option(.linger) == .seconds(3))
            try await connection.setOption(.linger, to: nil)
            #expect(try await connection.option(.linger) == nil)
            // A fraction of a second rounds up: half a second must not become
            // zero, which would reset the connection on close.
            try await connection.setOption(.linger, to: .milliseconds(500))
            #expect(try await connection.option(.linger) == .seconds(1))
            try await connection.setOption(.linger, to: nil)

            let datagram = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
            try await datagram.setOption(.broadcast, to: true)
            #expect(try await datagram.option(.broadcast) == true)

            try await datagram.close()
            try await connection.close()
            try await listener.close()
            await ring.shutdown()
        }

        @Test(
            "the ring's socket commands themselves set and read an option (no fallback)",
            .requires(.socketOption, "IORING_OP_URING_CMD"),
            .enabled(if: RingCore.kernelIsAtLeast(6, 7), "socket commands need Linux 6.7"))
        func throughTheRing() async throws {
            try await RingActor.run { ring in
                let listener = try await StreamListener.bind(to: .loopback(port: 0), on: ring)
                let connection = try await StreamConnection.connect(to: listener.localAddress, on: ring)
                let io = connection.io
                try await io.setOptionThroughRing(SocketOption.keepAlive, KernelMemory<(Int32, Int32)>((1, 0)), length: 4)
                #expect(try await io.optionThroughRing(SocketOption.keepAlive) == true)
                try await io.setOptionThroughRing(SocketOption.linger, KernelMemory<(Int32, Int32)>((1, 4)), length: 8)
                #expect(try await io.optionThroughRing(SocketOption.linger) == .seconds(4))
                #expect(try await connection.option(.keepAlive) == true)
                try await connection.close()
                try await listener.close()
            }
        }

        @Test("errors name the option and the address: a negative size, and a TCP option on a UDP socket")
        func errors() async throws {
            try await RingActor.run { ring in
                let datagram = try await DatagramSocket.bind(to: .loopback(port: 0), on: ring)
                do {
                    try await datagram.setOption(.sendBufferSize, to: -1)
                    Issue.record("a negative buffer size was set")
                } catch let error as UringError {
                    #expect(error.kind == .invalidArgument)
                    #expect(error.description.contains("SO_SNDBUF") && error.description.contains("127.0.0.1"), "\(error)")
                }
                do {
                    try await datagram.setOption(.keepAliveIdle, to: .seconds(5))
                    Issue.record("set a TCP option on a UDP socket")
                } catch let error as UringError {
                    #expect(error.operation == .socketOption)
                    #expect(error.description.contains("TCP_KEEPIDLE") && error.description.contains("127.0.0.1"), "\(error)")
                }
                try await datagram.close()
            }
        }
    }
}
