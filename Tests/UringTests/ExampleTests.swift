import Foundation
import Glibc
import Testing

extension AllTests {
    @Suite("uring-cat example", .checksDescriptorLeaks)
    struct UringCatTests {
        var uringCat: String { productsDirectory + "/uring-cat" }

        @Test("output is byte-identical to cat for text, empty and large binary files")
        func matchesCat() throws {
            let scratch = Scratch()
            let text = scratch.write("text", Array("line one\nline two\n".utf8))
            let empty = scratch.write("empty", [])
            let binary = scratch.write("binary", pattern(count: 3 * 1024 * 1024 + 17))
            let arguments = [text.string, empty.string, binary.string, text.string]
            let ours = try run(uringCat, arguments)
            let theirs = try run("/bin/cat", arguments)
            #expect(ours.status == 0)
            #expect(ours.stderr.isEmpty)
            #expect(ours.stdout.count == theirs.stdout.count)
            #expect(ours.stdout == theirs.stdout)
        }

        @Test("standard output as a pipe, and standard input as a pipe, match cat")
        func pipes() throws {
            let scratch = Scratch()
            let binary = scratch.write("binary", pattern(count: 1_000_003, seed: 5))
            // sh runs both through a pipe into a file we compare.
            let ours = try run("/bin/sh", ["-c", "'\(uringCat)' '\(binary)' | cat > '\(scratch.path)/a'"])
            let viaStdin = try run("/bin/sh", ["-c", "cat '\(binary)' | '\(uringCat)' > '\(scratch.path)/b'"])
            let dash = try run("/bin/sh", ["-c", "'\(uringCat)' - < '\(binary)' > '\(scratch.path)/c'"])
            #expect(ours.status == 0 && viaStdin.status == 0 && dash.status == 0)
            let expected = try Data(contentsOf: URL(fileURLWithPath: binary.string))
            for name in ["a", "b", "c"] {
                let got = try Data(contentsOf: URL(fileURLWithPath: "\(scratch.path)/\(name)"))
                #expect(got == expected, "output \(name) differs")
            }
        }

        @Test("a missing file gives one line on stderr and status 1; the other files are still printed")
        func missingFile() throws {
            let scratch = Scratch()
            let first = scratch.write("first", Array("first\n".utf8))
            let last = scratch.write("last", Array("last\n".utf8))
            let missing = scratch.path + "/missing"
            // Under LeakSanitizer (CI), keep its suppression report off stderr.
            let lsan = "LSAN_OPTIONS=" + (ProcessInfo.processInfo.environment["LSAN_OPTIONS"].map { $0 + ":" } ?? "")
                + "print_suppressions=0"
            let result = try run(uringCat, [first.string, missing, last.string], environment: [lsan])
            #expect(result.status == 1)
            #expect(String(decoding: result.stdout, as: UTF8.self) == "first\nlast\n")
            let message = String(decoding: result.stderr, as: UTF8.self)
            #expect(message == "uring-cat: open '\(missing)': No such file or directory (ENOENT)\n")
        }
    }
}
