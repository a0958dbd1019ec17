import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Child processes with piped I/O", .checksDescriptorLeaks)
    struct ChildProcessTests {
        @Test("run: exit code, standard output and standard error collected through the ring")
        func runCollects() async throws {
            try await RingActor.run { ring in
                let result = try await ChildProcess.run(
                    "/bin/sh", arguments: ["-c", "echo out; echo err >&2; exit 3"], on: ring)
                #expect(result.status == .exited(code: 3))
                #expect(result.standardOutputText == "out\n")
                #expect(result.standardErrorText == "err\n")
            }
        }

        @Test("run: 256 KiB through cat, written while the output is read (more than a pipe holds)")
        func runFeedsInput() async throws {
            try await RingActor.run { ring in
                let input = pattern(count: 256 * 1024)
                let result = try await ChildProcess.run("/usr/bin/cat", input: input, on: ring)
                #expect(result.status.isSuccess)
                #expect(result.standardOutput == input)
                #expect(result.standardError.isEmpty)
            }
        }

        @Test("run: a child that exits without reading its input is not an error (EPIPE, and no SIGPIPE kills us)")
        func unreadInput() async throws {
            try await RingActor.run { ring in
                let result = try await ChildProcess.run("/bin/true", input: pattern(count: 1 << 20), on: ring)
                #expect(result.status.isSuccess)
            }
        }

        @Test("run: the environment and working directory given, and a program found in PATH")
        func environmentAndDirectory() async throws {
            try await RingActor.run { ring in
                let scratch = Scratch()
                let result = try await ChildProcess.run(
                    "sh", arguments: ["-c", "echo \"$GREETING\"; pwd"],
                    environment: ["GREETING": "hello", "PATH": "/usr/bin:/bin"],
                    workingDirectory: FilePath(scratch.path), on: ring)
                #expect(result.standardOutputText == "hello\n\(scratch.path)\n", "stderr: \(result.standardErrorText)")
            }
        }

        @Test("spawn: standard input written and closed by the caller, output read as lines, then the wait")
        func spawnStreams() async throws {
            try await RingActor.run { ring in
                let child = try ChildProcess.spawn(
                    "/bin/sh", arguments: ["-c", "read line; echo \"got $line\"; echo more"],
                    standardInput: .pipe, standardOutput: .pipe, on: ring)
                #expect(child.standardError == nil, "inherited, not a pipe")
                guard let input = child.takeStandardInput() else {
                    Issue.record("no standard input pipe")
                    return
                }
                let takenAgain = child.takeStandardInput() != nil
                #expect(!takenAgain, "taken once")
                try await input.writeAll(Array("x\n".utf8))
                try await input.close()
                var lines: [String] = []
                for try await line in try #require(child.standardOutput).lines { lines.append(line) }
                #expect(lines == ["got x", "more"])
                #expect(try await child.wait() == .exited(code: 0))
                #expect(try await child.wait() == .exited(code: 0), "the same status again")
                #expect(child.exitStatus == .exited(code: 0))
            }
        }

        @Test("signal: SIGUSR1 ends a child although the spawning thread blocked it and the process ignored it; after the wait, ESRCH")
        func signals() async throws {
            try await RingActor.run { ring in
                // This thread blocks SIGUSR1 and the process ignores it while
                // the child is spawned; the child must start with it
                // unblocked and at its default all the same.
                var usr1 = sigset_t()
                sigemptyset(&usr1)
                sigaddset(&usr1, SIGUSR1)
                var savedMask = sigset_t()
                pthread_sigmask(SIG_BLOCK, &usr1, &savedMask)
                let savedAction = signal(SIGUSR1, SIG_IGN)
                let spawned = Result { () throws(UringError) -> ChildProcess in
                    try ChildProcess.spawn(
                        "/bin/sleep", arguments: ["60"], standardInput: .discard, standardOutput: .discard,
                        standardError: .discard, on: ring)
                }
                signal(SIGUSR1, savedAction)
                pthread_sigmask(SIG_SETMASK, &savedMask, nil)
                let child = try spawned.get()
                try child.signal(.user1)
                #expect(try await child.wait() == .signaled(.user1, coreDumped: false))
                do {
                    try child.signal(.user1)
                    Issue.record("a reaped child was signalled")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchProcess)
                    #expect(error.operation == .signalProcess)
                    #expect(error.path == "/bin/sleep")
                }
            }
        }

        @Test("a program that does not exist, in PATH or by path, and bad text: typed errors, nothing left open")
        func missingProgram() async throws {
            try await RingActor.run { ring in
                for program in ["/nonexistent/program", "no-such-program-\(getpid())"] {
                    do {
                        _ = try ChildProcess.spawn(program, standardOutput: .pipe, standardError: .pipe, on: ring)
                        Issue.record("\(program) started")
                    } catch let error as UringError {
                        #expect(error.errno == .noSuchFileOrDirectory)
                        #expect(error.operation == .spawn)
                        #expect(error.path == FilePath(program))
                        #expect("\(error)".contains(program))
                    }
                }
                #expect(throws: UringError.self) { _ = try ChildProcess.spawn("", on: ring) }
                #expect(throws: UringError.self) { _ = try ChildProcess.spawn("/bin/sh", arguments: ["a\0b"], on: ring) }
                await #expect(throws: UringError.self) {
                    _ = try await ChildProcess.run("/bin/true", workingDirectory: "/nonexistent/directory", on: ring)
                }
            }
        }

        @Test("run: output past maximumOutput, on either stream, fails with EFBIG naming the program, and the child is killed")
        func outputLimit() async throws {
            try await RingActor.run { ring in
                do {
                    _ = try await ChildProcess.run("/usr/bin/cat", arguments: ["/dev/zero"], maximumOutput: 100_000, on: ring)
                    Issue.record("endless output was collected")
                } catch let error as UringError {
                    #expect(error.errno == .fileTooLarge)
                    #expect(error.path == "/usr/bin/cat")
                }
                // The same on standard error, while standard output stays
                // open and quiet: the child is killed, not left blocked.
                do {
                    _ = try await ChildProcess.run("/bin/sh", arguments: ["-c", "cat /dev/zero >&2"], maximumOutput: 100_000, on: ring)
                    Issue.record("endless error output was collected")
                } catch let error as UringError {
                    #expect(error.errno == .fileTooLarge)
                }
                await settle(ring)
            }
        }

        @Test("run: cancelling the caller kills and reaps the child and throws CancellationError")
        func cancellation() async throws {
            try await RingActor.run { ring in
                let outcome = await cancelOnceInFlight(on: ring) {
                    do {
                        _ = try await ChildProcess.run("/bin/sleep", arguments: ["60"], on: ring)
                        return "finished"
                    } catch is CancellationError { return "cancelled" } catch { return "\(error)" }
                }
                #expect(outcome == "cancelled")
                // The child was killed and reaped: this process has no child
                // left (the suite's tests run one at a time and reap theirs).
                var status: Int32 = 0
                #expect(waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD, "a child is left")
                await settle(ring)
            }
        }
    }
}
