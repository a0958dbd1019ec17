// A child process for the tests: denies io_uring_setup with a seccomp filter,
// then tries to use io_uring and prints what the library reported.
//
//     uring-sandbox-probe ring|shared|open PATH
//
// Exit status: 0 if io_uring worked anyway, 2 if the library reported
// `ringUnavailable`, 1 for any other error, 3 if seccomp could not be set up.

import CSeccomp
import Glibc
import SystemPackage
import Uring

let arguments = CommandLine.arguments
let mode = arguments.count > 1 ? arguments[1] : "ring"
let denied = cseccomp_deny_io_uring_setup(EPERM)
guard denied == 0 else {
    print("seccomp unavailable: \(denied)")
    exit(3)
}

func report(_ error: any Error) -> Never {
    guard let error = error as? UringError else {
        print("unexpected error: \(error)")
        exit(1)
    }
    print("kind: \(error.kind)")
    print("errno: \(error.errnoName)")
    print("message: \(error)")
    exit(error.kind == .ringUnavailable ? 2 : 1)
}

do {
    switch mode {
    case "shared":
        _ = try RingActor.shared
    case "open":
        let file = try await File.open(FilePath(arguments[2]))
        try await file.close()
    default:
        _ = try RingActor()
    }
    print("io_uring worked")
    exit(0)
} catch {
    report(error)
}
