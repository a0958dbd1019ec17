// A child process for the tests: puts itself in a hostile environment, then
// uses io_uring and prints what the library reported.
//
//     uring-sandbox-probe ring|shared|open PATH   io_uring_setup denied by seccomp
//     uring-sandbox-probe nofile PATH             RLIMIT_NOFILE nearly reached
//     uring-sandbox-probe memlock                 RLIMIT_MEMLOCK set to zero
//
// Exit status: 0 when the library behaved as the mode expects, 2 if it
// reported `ringUnavailable`, 1 for anything else, 3 if the environment could
// not be set up.

import CSeccomp
import Glibc
import SystemPackage
import Uring

let arguments = CommandLine.arguments
let mode = arguments.count > 1 ? arguments[1] : "ring"

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

/// The highest descriptor number in use (RLIMIT_NOFILE bounds numbers, not
/// counts, and a parent may pass down high-numbered descriptors).
func highestDescriptor() -> Int {
    var highest = 2
    if let dir = opendir("/proc/self/fd") {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let fd = Int(name) { highest = max(highest, fd) }
        }
        closedir(dir)
    }
    return highest
}

switch mode {
case "nofile":
    let ring: RingActor
    do { ring = try RingActor() } catch { report(error) }
    // Room for a few more descriptors, counting from the highest in use.
    let ceiling = rlim_t(highestDescriptor() + 4)
    var limit = rlimit(rlim_cur: ceiling, rlim_max: ceiling)
    guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
        print("setrlimit failed: \(errno)")
        exit(3)
    }
    let path = FilePath(arguments[2])
    var opened: [FileDescriptor] = []
    while true {
        do {
            let file = try await File.open(path, on: ring)
            opened.append(try file.takeDescriptor())
            if opened.count > Int(ceiling) { print("the limit was not enforced"); exit(1) }
        } catch let error as UringError where error.errno == .tooManyOpenFiles {
            print("opened \(opened.count), then: \(error)")
            break
        } catch {
            report(error)
        }
    }
    // Closing one makes room again, and the ring still works.
    try? opened.removeLast().close()
    do {
        let file = try await File.open(path, on: ring)
        try await file.close()
        print("reopened after closing one")
    } catch {
        report(error)
    }
    for fd in opened { try? fd.close() }
    await ring.shutdown()
    exit(0)

case "memlock":
    var limit = rlimit(rlim_cur: 0, rlim_max: 0)
    guard setrlimit(__rlimit_resource_t(8) /* RLIMIT_MEMLOCK */, &limit) == 0 else {
        print("setrlimit failed: \(errno)")
        exit(3)
    }
    do {
        let ring = try RingActor(options: RingOptions(entries: 4096))
        try await ring.nop()
        print("ring created and used with RLIMIT_MEMLOCK 0 (the kernel does not charge rings to it)")
        await ring.shutdown()
        exit(0)
    } catch {
        report(error)
    }

default:
    let denied = cseccomp_deny_io_uring_setup(EPERM)
    guard denied == 0 else {
        print("seccomp unavailable: \(denied)")
        exit(3)
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
}
