import CUring
import Glibc
import SystemPackage

/// A child process, with its standard streams as pipes driven by the ring
/// where asked.
///
/// ```swift
/// let child = try ChildProcess.spawn("/usr/bin/sort", standardInput: .pipe, standardOutput: .pipe, on: ring)
/// if var input = child.takeStandardInput() {
///     try await input.writeAll(Array("b\na\n".utf8))
///     try await input.close()
/// }
/// for try await line in child.standardOutput!.lines {
///     print(line)
/// }
/// let status = try await child.wait()
/// ```
///
/// To run a program to its end and collect what it printed, use
/// ``run(_:arguments:environment:workingDirectory:input:maximumOutput:on:)``.
///
/// The child gets its three standard streams and no other descriptor of
/// this process (every descriptor from 3 up is closed in the child, not
/// only the close-on-exec ones). It starts with no signal blocked and every
/// signal's disposition at its default, whatever the spawning thread
/// blocks (ring threads block `SIGPIPE`) or this process ignores (`SIGPIPE`,
/// typically, in servers).
///
/// Wait for every child (``wait()``); one never waited for stays a zombie
/// once it ends, until this process ends. ``signal(_:)`` reaches the child
/// through a process descriptor (`pidfd`), so a signal sent after the child
/// was reaped fails with `ESRCH` instead of reaching another process that
/// took its number.
///
/// swift-subprocess (swiftlang/swift-subprocess) runs children on any
/// platform, with its own I/O threads. Use this type when the program already
/// runs on a ring: the pipes are read and written by the ring's thread with
/// the rest of its I/O, and the wait is one more ring request (`waitid`,
/// Linux 6.7, or a polled `pidfd` before it).
public final class ChildProcess: Sendable {
    /// The child's process ID.
    public let id: pid_t
    /// The ring that reads and writes its pipes and waits for it.
    public let ring: RingActor
    /// The program, as given to ``spawn(_:arguments:environment:workingDirectory:standardInput:standardOutput:standardError:on:)``.
    public let executable: String
    /// What the child writes to its standard output, as it arrives, when
    /// that was ``StandardStream/pipe``; otherwise `nil`. Iterate it once;
    /// it ends when the child (and any process it passed the pipe to)
    /// closes its end.
    public let standardOutput: ReceivedChunks?
    /// The same for standard error.
    public let standardError: ReceivedChunks?

    private let input: Locked<OwnedDescriptor?>
    private let processDescriptor: OwnedDescriptor?
    private let status = Locked<ExitStatus?>(nil)

    private init(
        id: pid_t, ring: RingActor, executable: String, input: OwnedDescriptor?, output: OwnedDescriptor?,
        error: OwnedDescriptor?, processDescriptor: OwnedDescriptor?
    ) {
        self.id = id
        self.ring = ring
        self.executable = executable
        self.input = Locked(input)
        let path = FilePath(executable)
        self.standardOutput = output.map {
            File(sharing: $0, path: path, on: ring).arrivals()
        }
        self.standardError = error.map {
            File(sharing: $0, path: path, on: ring).arrivals()
        }
        self.processDescriptor = processDescriptor
    }

    /// Where one of a child's standard streams goes.
    public enum StandardStream: Sendable, Hashable {
        /// The same stream as this process's.
        case inherit
        /// `/dev/null`: the child reads nothing, and what it writes is lost.
        case discard
        /// A pipe to this process, read or written through the ring.
        case pipe
    }

    /// Starts `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - executable: A path, or a name looked up in `PATH` when it has no `/`.
    ///   - arguments: The arguments after the program's name.
    ///   - environment: The child's environment; `nil` passes this process's.
    ///   - workingDirectory: Where the child starts; `nil` for this process's.
    ///   - standardInput: Where the child's standard input comes from.
    ///   - standardOutput: Where its standard output goes.
    ///   - standardError: Where its standard error goes.
    ///   - ring: The ring for the pipes and the wait.
    /// - Throws: ``UringError`` naming `posix_spawn` and the executable:
    ///   `ENOENT` when there is no such program (or working directory),
    ///   `EACCES` when it cannot be run, `EMFILE` when the pipes cannot be
    ///   made. Nothing is left open when it throws.
    public static func spawn(
        _ executable: String,
        arguments: [String] = [],
        environment: [String: String]? = nil,
        workingDirectory: FilePath? = nil,
        standardInput: StandardStream = .inherit,
        standardOutput: StandardStream = .inherit,
        standardError: StandardStream = .inherit,
        on ring: RingActor
    ) throws(UringError) -> ChildProcess {
        let path = FilePath(executable)
        let texts = [executable] + arguments + (environment.map { Array($0.keys) + Array($0.values) } ?? [])
        guard !executable.isEmpty, !texts.contains(where: { $0.utf8.contains(0) }) else {
            throw .invalid(.spawn, path: path, "the program, its arguments and environment must be non-empty text without NUL bytes")
        }
        let streams = [standardInput, standardOutput, standardError]
        // This process's ends of the pipes, and the child's, by stream.
        var parentEnds: [Int32] = [-1, -1, -1]
        var childEnds: [Int32] = [-1, -1, -1]
        var started = false
        defer {
            for fd in childEnds where fd >= 0 { Glibc.close(fd) }
            if !started { for fd in parentEnds where fd >= 0 { Glibc.close(fd) } }
        }
        for index in 0..<3 where streams[index] == .pipe {
            var ends: [Int32] = [-1, -1]
            guard cu_pipe(&ends) == 0 else { throw .system(.spawn, Glibc.errno, path: path) }
            // The child reads standard input's pipe and writes the others.
            parentEnds[index] = index == 0 ? ends[1] : ends[0]
            childEnds[index] = index == 0 ? ends[0] : ends[1]
            // A child end numbered 0 to 2 (this process closed its own
            // standard streams) could be overwritten by another stream's
            // action before its own dup2: move it above them.
            if childEnds[index] < 3 {
                let moved = fcntl(childEnds[index], F_DUPFD_CLOEXEC, 3)
                guard moved >= 0 else { throw .system(.spawn, Glibc.errno, path: path) }
                Glibc.close(childEnds[index])
                childEnds[index] = moved
            }
        }
        let pid = try launch(
            executable, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            streams: streams, childEnds: childEnds)
        started = true
        let opened = cu_pidfd_open(pid)
        func owned(_ fd: Int32) -> OwnedDescriptor? { fd >= 0 ? OwnedDescriptor(fd) : nil }
        return ChildProcess(
            id: pid, ring: ring, executable: executable, input: owned(parentEnds[0]), output: owned(parentEnds[1]),
            error: owned(parentEnds[2]), processDescriptor: owned(opened))
    }

    /// `posix_spawn` with the streams set up, every signal unblocked and at
    /// its default disposition.
    private static func launch(
        _ executable: String, arguments: [String], environment: [String: String]?, workingDirectory: FilePath?,
        streams: [StandardStream], childEnds: [Int32]
    ) throws(UringError) -> pid_t {
        let path = FilePath(executable)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (index, stream) in streams.enumerated() {
            switch stream {
            case .inherit: break
            case .discard:
                posix_spawn_file_actions_addopen(&actions, Int32(index), "/dev/null", index == 0 ? O_RDONLY : O_WRONLY, 0)
            case .pipe:
                posix_spawn_file_actions_adddup2(&actions, childEnds[index], Int32(index))
            }
        }
        // Nothing else of this process reaches the child, even descriptors
        // opened without close-on-exec by other code.
        cu_spawn_file_actions_addclosefrom(&actions, 3)
        if let workingDirectory {
            let added = workingDirectory.withPlatformString { cu_spawn_file_actions_addchdir(&actions, $0) }
            guard added == 0 else { throw .system(.spawn, added, path: workingDirectory) }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var every = sigset_t()
        sigfillset(&every)
        posix_spawnattr_setsigdefault(&attributes, &every)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { variables in
            variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        }
        defer { for variable in envp ?? [] { free(variable) } }
        var pid: pid_t = 0
        let status: Int32 =
            if let envp {
                executable.contains("/")
                    ? posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
                    : posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
            } else {
                executable.contains("/")
                    ? posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
                    : posix_spawnp(&pid, executable, &actions, &attributes, argv, environ)
            }
        guard status == 0 else { throw .system(.spawn, status, path: path) }
        return pid
    }

    /// Takes the writing end of the child's standard input, when it was
    /// ``StandardStream/pipe``, as a ``File`` of the caller's: write to it,
    /// then close it so the child sees the end of its input. Later calls
    /// return `nil`.
    public func takeStandardInput() -> File? {
        guard let descriptor = input.withLock({ input in
            defer { input = nil }
            return input
        }) else { return nil }
        return File(sharing: descriptor, path: FilePath(executable), on: ring)
    }

    /// Sends `signal` to the child.
    ///
    /// - Throws: ``UringError`` naming `pidfd_send_signal`: `ESRCH` once the
    ///   child has been waited for.
    public func signal(_ signal: Signal) throws(UringError) {
        let result: Int32
        if let processDescriptor {
            result = cu_pidfd_send_signal(processDescriptor.fd, signal.rawValue)
        } else {
            result = kill(id, signal.rawValue) == 0 ? 0 : -Glibc.errno
        }
        guard result == 0 else { throw .system(.signalProcess, -result, path: FilePath(executable)) }
    }

    /// Waits for the child to end, through the ring, and reaps it; once it
    /// has, returns the same status again.
    ///
    /// Cancelling the waiting task ends the wait with `CancellationError`;
    /// the child keeps running and can be waited for again. Wait from one
    /// task at a time: a second wait running alongside may fail with
    /// `ECHILD` when the first reaps the child.
    public func wait() async throws -> ExitStatus {
        if let known = status.withLock({ $0 }) { return known }
        let ended = try await ring.waitForExit(id)
        status.withLock { $0 = ended }
        return ended
    }

    /// The exit status, once ``wait()`` has returned it.
    public var exitStatus: ExitStatus? { status.withLock { $0 } }
}
