// uring-cp: copies a file through io_uring (splice through a pipe, in the
// kernel), with a progress line when standard error is a terminal.
//
//     uring-cp SOURCE DESTINATION
//
// Exits 0 on success; on failure prints the error, naming the operation and
// path, and exits 1.

import Glibc
import SystemPackage
import Uring

@main
struct UringCp {
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard arguments.count == 2 else {
            fail("usage: uring-cp SOURCE DESTINATION")
        }
        let showProgress = isatty(2) == 1
        do {
            try await RingActor.run { ring in
                var lastShown = -1
                let copied = try await File.copy(
                    from: FilePath(arguments[0]), to: FilePath(arguments[1]), on: ring
                ) { done, total in
                    guard showProgress else { return }
                    let percent = total > 0 ? Int(min(100, done * 100 / total)) : 100
                    if percent == lastShown { return }
                    lastShown = percent
                    report("\r\(percent)% \(megabytes(done)) of \(megabytes(total))", newline: false)
                }
                if showProgress { report("\r100% \(megabytes(copied)) copied") }
            }
        } catch {
            if showProgress { report("") }
            fail("\(error)")
        }
    }
}

func megabytes(_ bytes: Int64) -> String {
    let tenths = bytes * 10 / (1 << 20)
    return "\(tenths / 10).\(tenths % 10) MiB"
}

func report(_ message: String, newline: Bool = true) {
    var line = message + (newline ? "\n" : "")
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    report("uring-cp: \(message)")
    exit(1)
}
