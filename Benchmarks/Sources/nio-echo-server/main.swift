// nio-echo-server PORT: the SwiftNIO peer of the echo scenario, NIOPosix with
// one event loop (swift-uring also serves from one ring thread).

import NIOCore
import NIOPosix

final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

let port = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 9000
// The second argument is the number of event loops (default 1).
let loops = Int(CommandLine.arguments.dropFirst(2).first ?? "") ?? 1
let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
let channel = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
    }
    .bind(host: "127.0.0.1", port: port)
    .wait()
print("listening on 127.0.0.1:\(port)")
try channel.closeFuture.wait()
