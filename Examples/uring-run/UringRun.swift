// uring-run: runs a command as a child process and waits for it through
// io_uring (waitid), forwarding signals to it meanwhile: SIGHUP, SIGINT,
// SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2 and SIGWINCH, the ones a wrapper such
// as a container's init passes on, so none of them kills uring-run and
// leaves the child running.
//
//     uring-run COMMAND [ARGUMENT...]
//
// Exits with the child's exit code, or 128 + the signal that killed it,
// like a shell; 127 when the command is not found and 126 when it is found
// but cannot be run. Prints how the child ended to standard error.

import Glibc
import Uring

@main
struct UringRun {
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard !arguments.isEmpty else { fail("usage: uring-run COMMAND [ARGUMENT...]") }
        do {
            let code = try await RingActor.run { ring -> Int32 in
                // Caught from here on: they reach the loop below, not us.
                let signals = try ring.signals(forwarded)
                let child = try spawn(arguments)
                let status = try await withThrowingTaskGroup(of: ExitStatus?.self) { group in
                    group.addTask { try await ring.waitForExit(child) }
                    group.addTask {
                        for try await signal in signals {
                            report("forwarding \(signal) to \(child)")
                            kill(child, signal.rawValue)
                        }
                        return nil
                    }
                    defer { group.cancelAll() }
                    while let next = try await group.next() {
                        if let status = next { return status }
                    }
                    fatalError("the wait ended without a status")
                }
                report("\(arguments[0]) \(status)")
                switch status {
                case .exited(let code): return code
                case .signaled(let signal, _): return 128 + signal.rawValue
                }
            }
            exit(code)
        } catch let error as SpawnError {
            report("\(error)")
            exit(error.exitStatus)
        } catch {
            fail("\(error)")
        }
    }
}

/// The signals passed on to the child.
let forwarded: Set<Signal> = [.hangUp, .interrupt, .quit, .terminate, .user1, .user2, .windowSizeChanged]

/// Starts `arguments[0]` (looked up in PATH) with the rest as its arguments.
func spawn(_ arguments: [String]) throws -> pid_t {
    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { for argument in argv { free(argument) } }
    // The child starts with no signals blocked, whatever this thread blocks.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t()
    sigemptyset(&none)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
    var pid: pid_t = 0
    let status = posix_spawnp(&pid, arguments[0], nil, &attributes, argv, environ)
    guard status == 0 else { throw SpawnError(command: arguments[0], code: status) }
    return pid
}

struct SpawnError: Error, CustomStringConvertible {
    let command: String
    let code: Int32
    var description: String { "cannot run '\(command)': \(String(cString: strerror(code)))" }
    /// A shell's status for a command that did not start: 127 when there is
    /// no such file, 126 when there is one that cannot be executed.
    var exitStatus: Int32 { code == ENOENT || code == ENOTDIR ? 127 : 126 }
}

func report(_ message: String) {
    var line = "uring-run: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    report(message)
    exit(127)
}
