// uring-run: runs a command as a child process (ChildProcess) and waits for
// it through io_uring (waitid, or a polled pidfd before Linux 6.7),
// forwarding signals to it meanwhile: SIGHUP, SIGINT,
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
                // The child starts with no signal blocked and every one at its
                // default, whatever this process blocks or ignores.
                let child = try ChildProcess.spawn(arguments[0], arguments: Array(arguments.dropFirst()), on: ring)
                let status = try await withThrowingTaskGroup(of: ExitStatus?.self) { group in
                    group.addTask { try await child.wait() }
                    group.addTask {
                        for try await signal in signals {
                            report("forwarding \(signal) to \(child.id)")
                            try? child.signal(signal)  // it may have just ended
                        }
                        return nil
                    }
                    defer { group.cancelAll() }
                    do {
                        while let next = try await group.next() {
                            if let status = next { return status }
                        }
                    } catch {
                        // The wait failed (the ring shut down): leave no child behind.
                        try? child.signal(Signal(rawValue: SIGKILL))
                        throw error
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
        } catch let error as UringError where error.operation == .spawn {
            // A shell's status for a command that did not start: 127 when
            // there is no such file, 126 when there is one that cannot run.
            report("cannot run '\(arguments[0])': \(error.errno)")
            exit(error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory ? 127 : 126)
        } catch {
            fail("\(error)")
        }
    }
}

/// The signals passed on to the child.
let forwarded: Set<Signal> = [.hangUp, .interrupt, .quit, .terminate, .user1, .user2, .windowSizeChanged]

func report(_ message: String) {
    var line = "uring-run: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    report(message)
    exit(127)
}
