// uring-cat: copies files (or standard input) to standard output through
// io_uring, like cat(1).
//
//     uring-cat FILE...      # "-" or no FILE reads standard input
//
// A file that cannot be read gets one line on standard error, the rest are
// still copied, and the exit status is 1.

import Glibc
import SystemPackage
import Uring

@main
struct UringCat {
    static func main() async {
        var paths = Array(CommandLine.arguments.dropFirst())
        if paths.isEmpty { paths = ["-"] }
        // A closed pipe on standard output becomes an EPIPE error instead of a
        // signal that kills the process mid-write.
        signal(SIGPIPE, SIG_IGN)
        // A closed standard output must be found before the ring opens its
        // descriptors: the ring's own would take number 1, and writes meant
        // for standard output would go to it.
        if fcntl(STDOUT_FILENO, F_GETFD) == -1 {
            report("write <stdout>: Bad file descriptor (EBADF)")
            exit(1)
        }
        var failed = false
        do {
            failed = try await RingActor.run { ring in
                let output = File(adopting: .standardOutput, path: "<stdout>", on: ring)
                var failed = false
                for path in paths {
                    do {
                        try await copy(path, to: output, on: ring)
                    } catch let error as UringError where error.operation == .write && error.path == "<stdout>" {
                        if error.errno != .brokenPipe { report("\(error)") }
                        failed = true
                        break
                    } catch {
                        report("\(error)")
                        failed = true
                    }
                }
                _ = try? output.takeDescriptor()  // standard output stays open
                return failed
            }
        } catch {
            report("\(error)")
            failed = true
        }
        exit(failed ? 1 : 0)
    }

    static func copy(_ path: String, to output: borrowing File, on ring: RingActor) async throws {
        if path == "-" {
            // A duplicate of descriptor 0, so standard input stays open.
            let input = try File.standardInput(on: ring)
            let position = max(0, lseek(0, 0, SEEK_CUR))
            for try await chunk in input.chunks(size: 128 * 1024, from: Int64(position)) {
                try await output.writeAll(chunk)
            }
            try await input.close()
            return
        }
        let input = try await File.open(FilePath(path), on: ring)
        for try await chunk in input.chunks(size: 128 * 1024) {
            try await output.writeAll(chunk)
        }
        try await input.close()
    }

    static func report(_ message: String) {
        let line = Array("uring-cat: \(message)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
