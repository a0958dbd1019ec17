import Foundation
import Glibc
import SystemPackage
import Testing
import UringTesting

@testable import Uring

/// Every suite nests in this one, so tests run one at a time and counts of
/// process-wide resources (descriptors, threads) are exact; it holds the
/// descriptor checks' turn, so the integration suites (another top-level
/// suite) wait until it is done. A test that hangs fails by name after a
/// minute instead of stalling the run.
@Suite(.serialized, .timeLimit(.minutes(1)), .descriptorCountingTurn) enum AllTests {}

/// A directory of its own for one test, removed when the value goes away.
final class Scratch: @unchecked Sendable {
    let path: String

    init() {
        var template = Array("/tmp/uring-tests-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed: \(errno)")
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> FilePath { FilePath("\(path)/\(name)") }

    /// Writes `bytes` to a new file and returns its path.
    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) -> FilePath {
        let target = file(name)
        let created = FileManager.default.createFile(atPath: target.string, contents: Data(bytes))
        precondition(created, "could not create \(target)")
        return target
    }

    /// Descriptors of this process that point into this directory.
    var openDescriptors: Int { descriptors(matching: { $0.hasPrefix(path) }) }
}

/// The targets of this process's open descriptors that match `filter`.
func descriptors(matching filter: (String) -> Bool) -> Int {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    var count = 0
    for entry in entries {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/fd/\(entry)", &buffer, buffer.count - 1)
        if n > 0 && filter(String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)) { count += 1 }
    }
    return count
}

/// What descriptor `fd` refers to, such as `pipe:[1234]` or a path.
func descriptorTarget(_ fd: Int32) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// What every open descriptor refers to, for failure messages.
func openDescriptorTargets() -> [String] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    // A descriptor gone by the time it is read (the directory listing's own)
    // is left out.
    return entries.compactMap { Int32($0) }.sorted().compactMap { fd in
        descriptorTarget(fd).map { "\(fd): \($0)" }
    }
}

/// All open descriptors of this process.
func openDescriptorCount() -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count
}

/// Threads of this process whose name is `name`.
func threads(named name: String) -> Int {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.filter { task in
        let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
        return comm.trimmingCharacters(in: .whitespacesAndNewlines) == name
    }.count
}

/// Threads of this process whose name starts with `prefix` (a group's
/// rings are `uring-ring-0`, `uring-ring-1`, …).
func threads(namedWithPrefix prefix: String) -> Int {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.filter { task in
        let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
        return comm.hasPrefix(prefix)
    }.count
}

/// Waits (bounded, about 5 s) until the rings of earlier tests have ended
/// their threads, so process-wide descriptor counts are stable.
func waitForRingThreadsToEnd() async {
    // The first timer a process uses makes Dispatch open its own descriptors;
    // make that happen here, before anybody counts.
    try? await Task.sleep(for: .milliseconds(1))
    for _ in 0..<500 where threads(namedWithPrefix: "uring-ring") > 0 {
        try? await Task.sleep(for: .milliseconds(10))
    }
}

/// A deterministic pseudo-random byte pattern (xorshift), so failures repeat.
/// Written a word at a time through a pointer: the sanitizer builds check
/// every access, and a byte-at-a-time loop made large tests slow there.
func pattern(count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var state = seed | 1
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var i = 0
        while i < count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            var word = state.littleEndian
            let n = min(8, count - i)
            withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: i).copyMemory(from: $0.baseAddress!, byteCount: n) }
            i += n
        }
    }
    return bytes
}

/// FNV-1a over bytes.
struct Checksum {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func update(_ bytes: some Sequence<UInt8>) {
        // Contiguous bytes through a pointer (no per-byte iterator calls,
        // which the sanitizer builds make slow); anything else byte by byte.
        let done: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            var value = self.value
            for byte in buffer {
                value ^= UInt64(byte)
                value &*= 0x100_0000_01b3
            }
            self.value = value
        }
        if done != nil { return }
        for byte in bytes {
            value ^= UInt64(byte)
            value &*= 0x100_0000_01b3
        }
    }
    static func of(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var sum = Checksum()
        sum.update(bytes)
        return sum.value
    }
}

/// The seed for randomized tests: `URING_TEST_SEED` if set (to replay a
/// reported failure), else a fresh random one. Tests print the seed they used.
func testSeed() -> UInt64 {
    if let text = ProcessInfo.processInfo.environment["URING_TEST_SEED"], let seed = UInt64(text) {
        return seed
    }
    return UInt64.random(in: 0...UInt64.max)
}

/// A pipe as two raw descriptors (read end, write end), close-on-exec.
func makePipe() -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    let result = pipe(&fds)
    precondition(result == 0, "pipe2 failed: \(errno)")
    return (fds[0], fds[1])
}

/// The directory holding the test binary and the package's other products.
var productsDirectory: String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
    return (exe as NSString).deletingLastPathComponent
}

/// Runs a program to completion and returns its status, stdout and stderr.
/// Output goes through files, so a chatty child can never block on a pipe.
/// Uses posix_spawn directly: Foundation's Process would open run-loop
/// descriptors in this process that the leak checks would then see.
func run(
    _ executable: String, _ arguments: [String], stdinPath: String? = nil, environment extra: [String] = []
) throws -> (
    status: Int32, stdout: Data, stderr: Data
) {
    let scratch = Scratch()
    let outPath = scratch.path + "/stdout"
    let errPath = scratch.path + "/stderr"
    let pid = try spawn(
        executable, arguments, stdin: stdinPath ?? "/dev/null", stdout: outPath, stderr: errPath, environment: extra)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    // WIFEXITED / WEXITSTATUS, which Swift does not import (they are macros).
    let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (
        exitStatus,
        try Data(contentsOf: URL(fileURLWithPath: outPath)),
        try Data(contentsOf: URL(fileURLWithPath: errPath))
    )
}

/// Starts a program with its standard streams on the given paths and this
/// process's environment (`extra` replacing same-named entries); returns
/// its process id.
func spawn(
    _ executable: String, _ arguments: [String], stdin: String, stdout: String, stderr: String,
    environment extra: [String] = []
) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for arg in argv { free(arg) } }
    // Under LeakSanitizer (CI's ASan run) a child prints a report of the
    // suppressions it used on exit, but only when one matched, so a test
    // comparing stderr would fail now and then; keep that report off.
    let lsan = "LSAN_OPTIONS=" + (ProcessInfo.processInfo.environment["LSAN_OPTIONS"].map { $0 + ":" } ?? "")
        + "print_suppressions=0"
    let extra = [lsan] + extra
    let overridden = Set(extra.map { $0.prefix(while: { $0 != "=" }) + "=" })
    var environment: [UnsafeMutablePointer<CChar>?] = []
    var index = 0
    while let entry = environ[index] {
        let text = String(cString: entry)
        if !overridden.contains(where: { text.hasPrefix($0) }) { environment.append(strdup(entry)) }
        index += 1
    }
    environment += extra.map { strdup($0) } + [nil]
    defer { for entry in environment { free(entry) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environment)
    guard spawned == 0 else { throw Errno(rawValue: spawned) }
    return pid
}

/// Runs `operation` in a child task, cancels it once the ring has a request
/// in the kernel, and returns what the child reported.
func cancelOnceInFlight(
    on ring: RingActor, _ operation: @escaping @Sendable () async -> String
) async -> String {
    await withTaskGroup(of: String.self) { group in
        group.addTask(operation: operation)
        while ring.statistics.inFlight == 0 && !Task.isCancelled { await Task.yield() }
        group.cancelAll()
        return await group.next()!
    }
}

// Suites check descriptors with UringTesting's `.checksDescriptorLeaks`,
// and skip on kernels that lack an operation with its `.requires(_:_:)`.

/// RLIMIT_NOFILE, for tests that need many descriptors.
enum DescriptorLimit {
    static var hard: Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return Int(clamping: limit.rlim_max)
    }

    /// Raises the soft limit to the hard one; returns the limits to restore.
    static func raiseToHard() -> rlimit {
        var saved = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
        var raised = saved
        raised.rlim_cur = saved.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
        return saved
    }

    static func restore(_ saved: rlimit) {
        var saved = saved
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved)
    }
}
