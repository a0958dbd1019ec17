// swift-tools-version: 6.1
// uring-bench: swift-uring against its peers, side by side in one run.
// A package of its own, so the library's users never build the peers.
//
//     cd Benchmarks && swift run -c release uring-bench all [--quick]
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "uring-benchmarks",
    dependencies: [
        // With UringNIO, for the bytebuffer scenario.
        .package(name: "swift-uring", path: "..", traits: ["NIO"]),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // The hand-written C references on liburing, and the blocking peers.
        .target(
            name: "CBaseline",
            path: "Sources/CBaseline",
            linkerSettings: [.linkedLibrary("uring"), .linkedLibrary("pthread")]
        ),
        // Counts heap allocations process-wide (interposed malloc).
        .target(name: "CMallocCounter", path: "Sources/CMallocCounter"),
        .executableTarget(
            name: "uring-bench",
            dependencies: [
                .product(name: "Uring", package: "swift-uring"),
                "CBaseline",
                "CMallocCounter",
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Sources/uring-bench",
            swiftSettings: strict
        ),
        // The echo scenario: a C liburing server, the SwiftNIO server, and
        // the one C load client used against every server.
        .executableTarget(
            name: "c-echo-server",
            path: "Sources/CEchoServer",
            linkerSettings: [.linkedLibrary("uring")]
        ),
        .executableTarget(name: "echo-load", path: "Sources/CEchoLoad"),
        .executableTarget(
            name: "nio-echo-server",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/nio-echo-server",
            swiftSettings: strict
        ),
        // The http scenario's Hummingbird peer: its FileMiddleware.
        .executableTarget(
            name: "hummingbird-static",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/hummingbird-static",
            swiftSettings: strict
        ),
        // The bytebuffer scenario's server: the same echo with and without
        // SwiftNIO ByteBuffers.
        .executableTarget(
            name: "uring-echo-buffers",
            dependencies: [
                .product(name: "Uring", package: "swift-uring"),
                .product(name: "UringNIO", package: "swift-uring"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/uring-echo-buffers",
            swiftSettings: strict
        ),
        // N awaited NOPs and nothing else, for callgrind's instruction counts.
        .executableTarget(
            name: "uring-nop-count",
            dependencies: [.product(name: "Uring", package: "swift-uring"), "CBaseline"],
            path: "Sources/uring-nop-count",
            swiftSettings: strict
        ),
    ]
)
