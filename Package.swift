// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]
/// A nonisolated async function runs on its caller's executor unless marked
/// `@concurrent` (SE-0461): in a task on a ring, calls and returns then need
/// no executor check, which for a task that prefers the ring's executor
/// takes the task's status lock.
let nonsendingByDefault = SwiftSetting.enableUpcomingFeature("NonisolatedNonsendingByDefault")
// The library returns spans that borrow its buffers (`@_lifetime`).
let library: [SwiftSetting] = strict + [.enableExperimentalFeature("Lifetimes"), nonsendingByDefault]

/// Integration modules are built only with their trait, and a package that
/// depends on swift-uring without them resolves swift-system alone: every
/// reference to another ecosystem's package is guarded by its trait.
func when(_ trait: String) -> TargetDependencyCondition? { .when(traits: [trait]) }

let package = Package(
    name: "swift-uring",
    products: [
        .library(name: "Uring", targets: ["Uring"]),
        .library(name: "UringTesting", targets: ["UringTesting"]),
        .library(name: "UringNIO", targets: ["UringNIO"]),
        .library(name: "UringServiceLifecycle", targets: ["UringServiceLifecycle"]),
        .library(name: "UringMetrics", targets: ["UringMetrics"]),
        .library(name: "UringLogging", targets: ["UringLogging"]),
        .executable(name: "uring-cat", targets: ["uring-cat"]),
        .executable(name: "uring-echo", targets: ["uring-echo"]),
        .executable(name: "uring-http", targets: ["uring-http"]),
        .executable(name: "uring-cp", targets: ["uring-cp"]),
        .executable(name: "uring-run", targets: ["uring-run"]),
    ],
    traits: [
        .trait(name: "NIO", description: "UringNIO: SwiftNIO's ByteBuffer on sockets and files."),
        .trait(
            name: "ServiceLifecycle",
            description: "UringServiceLifecycle: servers as services with graceful shutdown."),
        .trait(name: "Metrics", description: "UringMetrics: ring statistics as swift-metrics gauges."),
        .trait(name: "Logging", description: "UringLogging: the library's notable events to a swift-log Logger."),
        .default(enabledTraits: []),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // liburing 2.3 plus the few helpers Swift cannot express (macros, CPU pause).
        .target(
            name: "CUring",
            path: "Sources/CUring",
            linkerSettings: [.linkedLibrary("uring")]
        ),
        .target(
            name: "Uring",
            dependencies: [
                "CUring",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Sources/Uring",
            swiftSettings: library
        ),
        // Swift Testing traits for applications' suites (and this package's).
        .target(
            name: "UringTesting",
            dependencies: ["Uring", .product(name: "SystemPackage", package: "swift-system")],
            path: "Sources/UringTesting",
            swiftSettings: strict
        ),
        .target(
            name: "UringNIO",
            dependencies: [
                "Uring",
                .product(name: "NIOCore", package: "swift-nio", condition: when("NIO")),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Sources/UringNIO",
            swiftSettings: strict + [nonsendingByDefault]
        ),
        .target(
            name: "UringServiceLifecycle",
            dependencies: [
                "Uring",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: when("ServiceLifecycle")),
            ],
            path: "Sources/UringServiceLifecycle",
            swiftSettings: strict
        ),
        .target(
            name: "UringMetrics",
            dependencies: [
                "Uring",
                .product(name: "CoreMetrics", package: "swift-metrics", condition: when("Metrics")),
            ],
            path: "Sources/UringMetrics",
            swiftSettings: strict
        ),
        .target(
            name: "UringLogging",
            dependencies: [
                "Uring",
                .product(name: "Logging", package: "swift-log", condition: when("Logging")),
            ],
            path: "Sources/UringLogging",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "uring-cat",
            dependencies: ["Uring"],
            path: "Examples/uring-cat",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "uring-echo",
            dependencies: [
                "Uring",
                .product(name: "SystemPackage", package: "swift-system"),
                // Built with the trait, it runs under a ServiceGroup.
                .target(name: "UringServiceLifecycle", condition: when("ServiceLifecycle")),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: when("ServiceLifecycle")),
                .product(name: "Logging", package: "swift-log", condition: when("ServiceLifecycle")),
            ],
            path: "Examples/uring-echo",
            swiftSettings: strict + [nonsendingByDefault]
        ),
        .executableTarget(
            name: "uring-http",
            dependencies: [
                "Uring",
                .product(name: "SystemPackage", package: "swift-system"),
                // Built with the trait, it runs under a ServiceGroup.
                .target(name: "UringServiceLifecycle", condition: when("ServiceLifecycle")),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: when("ServiceLifecycle")),
                .product(name: "Logging", package: "swift-log", condition: when("ServiceLifecycle")),
            ],
            path: "Examples/uring-http",
            swiftSettings: strict + [nonsendingByDefault]
        ),
        .executableTarget(
            name: "uring-cp",
            dependencies: ["Uring", .product(name: "SystemPackage", package: "swift-system")],
            path: "Examples/uring-cp",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "uring-run",
            dependencies: ["Uring"],
            path: "Examples/uring-run",
            swiftSettings: strict
        ),
        // Test-only: installs a seccomp filter so a child process can check
        // how ring creation fails when io_uring is denied.
        .target(name: "CSeccomp", path: "Tests/CSeccomp"),
        .executableTarget(
            name: "uring-sandbox-probe",
            dependencies: ["Uring", "CSeccomp"],
            path: "Tests/UringSandboxProbe",
            swiftSettings: strict
        ),
        .testTarget(
            name: "UringTests",
            dependencies: [
                "Uring",
                "CUring",
                "UringTesting",
                "uring-sandbox-probe",
                "uring-cat",
                "uring-echo",
                "uring-http",
                "uring-cp",
                "uring-run",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            path: "Tests/UringTests",
            swiftSettings: strict
        ),
        // The integration modules' tests; each file compiles with its trait
        // (`swift test --enable-all-traits` runs them all).
        .testTarget(
            name: "UringIntegrationTests",
            dependencies: [
                "Uring",
                "UringTesting",
                .product(name: "SystemPackage", package: "swift-system"),
                .target(name: "UringNIO", condition: when("NIO")),
                .product(name: "NIOCore", package: "swift-nio", condition: when("NIO")),
                .target(name: "UringServiceLifecycle", condition: when("ServiceLifecycle")),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle", condition: when("ServiceLifecycle")),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle", condition: when("ServiceLifecycle")),
                .target(name: "UringMetrics", condition: when("Metrics")),
                .product(name: "MetricsTestKit", package: "swift-metrics", condition: when("Metrics")),
                .product(name: "CoreMetrics", package: "swift-metrics", condition: when("Metrics")),
                .target(name: "UringLogging", condition: when("Logging")),
                .product(name: "Logging", package: "swift-log", condition: when("Logging")),
            ],
            path: "Tests/UringIntegrationTests",
            swiftSettings: strict
        ),
    ]
)
