import Glibc
import SystemPackage

/// How a child run by ``ChildProcess/run(_:arguments:environment:workingDirectory:input:maximumOutput:on:)``
/// ended, and what it printed.
public struct ProcessOutput: Sendable, Hashable {
    /// How it ended.
    public var status: ExitStatus
    /// Everything it wrote to its standard output.
    public var standardOutput: [UInt8]
    /// Everything it wrote to its standard error.
    public var standardError: [UInt8]

    /// The standard output as UTF-8 text (invalid bytes replaced).
    public var standardOutputText: String { String(decoding: standardOutput, as: UTF8.self) }
    /// The standard error as UTF-8 text (invalid bytes replaced).
    public var standardErrorText: String { String(decoding: standardError, as: UTF8.self) }
}

extension ChildProcess {
    /// Runs `executable` to its end, feeding it `input` and collecting its
    /// standard output and standard error, all through the ring.
    ///
    /// ```swift
    /// let result = try await ChildProcess.run("git", arguments: ["rev-parse", "HEAD"], on: ring)
    /// guard result.status.isSuccess else { throw Failure(result.standardErrorText) }
    /// ```
    ///
    /// The input is written while the output is read, so a child that
    /// writes before it has read everything does not block. A child that
    /// exits without reading all its input is not an error.
    ///
    /// Cancelling the calling task kills the child (`SIGKILL`), reaps it and
    /// throws `CancellationError`; so does any failure, which is then thrown:
    /// no child, descriptor or task outlives the call.
    ///
    /// - Parameters:
    ///   - executable: A path, or a name looked up in `PATH` when it has no `/`.
    ///   - arguments: The arguments after the program's name.
    ///   - environment: The child's environment; `nil` passes this process's.
    ///   - workingDirectory: Where the child starts; `nil` for this process's.
    ///   - input: Standard input's bytes; `nil` gives the child `/dev/null`.
    ///   - maximumOutput: The most bytes kept of each output stream; past it
    ///     the child is killed and the call fails with `EFBIG`.
    ///   - ring: The ring for the pipes and the wait.
    public static func run(
        _ executable: String,
        arguments: [String] = [],
        environment: [String: String]? = nil,
        workingDirectory: FilePath? = nil,
        input: [UInt8]? = nil,
        maximumOutput: Int = 64 << 20,
        on ring: RingActor
    ) async throws -> ProcessOutput {
        let child = try spawn(
            executable, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
            standardInput: input == nil ? .discard : .pipe, standardOutput: .pipe, standardError: .pipe, on: ring)
        do {
            var result = ProcessOutput(status: .exited(code: 0), standardOutput: [], standardError: [])
            try await withThrowingTaskGroup(of: Part.self) { parts in
                parts.addTask { try await child.feed(input); return .fed }
                parts.addTask { .output(try await child.collect(child.standardOutput, limit: maximumOutput)) }
                parts.addTask { .errors(try await child.collect(child.standardError, limit: maximumOutput)) }
                do {
                    // Whichever part fails first ends the others: the child
                    // is killed at once, so it cannot block writing to a
                    // pipe that nobody reads any more.
                    while let part = try await parts.next() {
                        switch part {
                        case .fed: break
                        case .output(let bytes): result.standardOutput = bytes
                        case .errors(let bytes): result.standardError = bytes
                        }
                    }
                } catch {
                    try? child.signal(Signal(rawValue: SIGKILL))
                    parts.cancelAll()
                    throw error
                }
            }
            result.status = try await child.wait()
            return result
        } catch {
            await child.killAndReap()
            throw error
        }
    }

    /// One finished part of ``run(_:arguments:environment:workingDirectory:input:maximumOutput:on:)``.
    private enum Part: Sendable {
        case fed
        case output([UInt8])
        case errors([UInt8])
    }

    /// Writes `input` to the child's standard input and closes it; a child
    /// that stopped reading (`EPIPE`) is fine.
    private func feed(_ input: [UInt8]?) async throws {
        guard let input, let file = takeStandardInput() else { return }
        do {
            try await file.writeAll(input)
        } catch let error as UringError where error.errno == .brokenPipe {
            // The child closed its standard input without reading it all.
        } catch {
            try? await file.close()
            throw error
        }
        try await file.close()
    }

    /// Everything `chunks` gives, up to `limit` bytes.
    private func collect(_ chunks: ReceivedChunks?, limit: Int) async throws -> [UInt8] {
        guard let chunks else { return [] }
        var bytes: [UInt8] = []
        for try await chunk in chunks {
            guard bytes.count + chunk.count <= limit else {
                throw UringError(
                    .system, operation: .read, errno: .fileTooLarge, path: FilePath(executable),
                    detail: "the child wrote more than maximumOutput (\(limit) bytes)")
            }
            bytes.append(contentsOf: chunk)
        }
        return bytes
    }

    /// Kills the child and reaps it, even in a cancelled task: the wait runs
    /// in a task of its own, which the caller's cancellation does not reach.
    func killAndReap() async {
        guard exitStatus == nil else { return }
        try? signal(Signal(rawValue: SIGKILL))
        let ring = ring
        let id = id
        _ = await Task { try? await ring.waitForExit(id) }.value
    }
}
