// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]
// The library returns spans that borrow its buffers (`@_lifetime`).
let library: [SwiftSetting] = strict + [.enableExperimentalFeature("Lifetimes")]

let package = Package(
    name: "swift-uring",
    products: [
        .library(name: "Uring", targets: ["Uring"]),
        .executable(name: "uring-cat", targets: ["uring-cat"]),
        .executable(name: "uring-echo", targets: ["uring-echo"]),
        .executable(name: "uring-http", targets: ["uring-http"]),
        .executable(name: "uring-cp", targets: ["uring-cp"]),
        .executable(name: "uring-run", targets: ["uring-run"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
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
        .executableTarget(
            name: "uring-cat",
            dependencies: ["Uring"],
            path: "Examples/uring-cat",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "uring-echo",
            dependencies: ["Uring", .product(name: "SystemPackage", package: "swift-system")],
            path: "Examples/uring-echo",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "uring-http",
            dependencies: ["Uring", .product(name: "SystemPackage", package: "swift-system")],
            path: "Examples/uring-http",
            swiftSettings: strict
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
    ]
)
