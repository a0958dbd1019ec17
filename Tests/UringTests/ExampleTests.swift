import Foundation
import Glibc
import SystemPackage
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
            let result = try run(uringCat, [first.string, missing, last.string])
            #expect(result.status == 1)
            #expect(String(decoding: result.stdout, as: UTF8.self) == "first\nlast\n")
            let message = String(decoding: result.stderr, as: UTF8.self)
            #expect(message == "uring-cat: open '\(missing)': No such file or directory (ENOENT)\n")
        }

        @Test("a closed standard output is reported as EBADF, not as an error of the ring's own descriptors")
        func closedStandardOutput() throws {
            let scratch = Scratch()
            let input = scratch.write("input", Array("text\n".utf8))
            let result = try run("/bin/sh", ["-c", "exec \"$0\" \"$1\" >&-", uringCat, input.string])
            #expect(result.status == 1)
            #expect(String(decoding: result.stderr, as: UTF8.self) == "uring-cat: write <stdout>: Bad file descriptor (EBADF)\n")
        }

        @Test("standard input is copied, and stays open for the rest of the program")
        func standardInput() throws {
            let scratch = Scratch()
            let input = scratch.write("input", pattern(count: 300_000, seed: 4))
            let result = try run(uringCat, ["-"], stdinPath: input.string)
            #expect(result.status == 0)
            #expect(Array(result.stdout) == pattern(count: 300_000, seed: 4))
        }
    }
}

extension AllTests {
    @Suite("uring-cp and uring-run examples", .checksDescriptorLeaks)
    struct CopyAndRunExampleTests {
        @Test("uring-cp copies byte for byte, keeps permissions, and fails clearly on a missing source")
        func copies() throws {
            let scratch = Scratch()
            let source = scratch.write("source", pattern(count: 5 << 20 | 333, seed: 9))
            chmod(source.string, 0o640)
            let result = try run(productsDirectory + "/uring-cp", [source.string, scratch.path + "/copy"])
            #expect(result.status == 0, "\(String(decoding: result.stderr, as: UTF8.self))")
            #expect(result.stderr.isEmpty, "no progress line when stderr is not a terminal")
            let original = try Data(contentsOf: URL(fileURLWithPath: source.string))
            let copy = try Data(contentsOf: URL(fileURLWithPath: scratch.path + "/copy"))
            #expect(copy == original)
            var info = stat()
            stat(scratch.path + "/copy", &info)
            #expect(info.st_mode & 0o777 == 0o640)

            let missing = scratch.path + "/missing"
            let failed = try run(productsDirectory + "/uring-cp", [missing, scratch.path + "/never"])
            #expect(failed.status == 1)
            #expect(
                String(decoding: failed.stderr, as: UTF8.self)
                    == "uring-cp: open '\(missing)': No such file or directory (ENOENT)\n")
        }

        @Test("uring-cp: no set-ID bits, holes kept, /proc and device sources copied by reads, a bad source leaves the destination alone, ENOSPC named")
        func copySafety() throws {
            let scratch = Scratch()
            let cp = productsDirectory + "/uring-cp"
            func stat(_ path: String) -> Glibc.stat {
                var info = Glibc.stat()
                _ = lstat(path, &info)
                return info
            }
            // Set-user-ID and set-group-ID bits are not copied.
            let program = scratch.write("program", pattern(count: 1000, seed: 1))
            chmod(program.string, 0o6755)
            #expect(try run(cp, [program.string, scratch.path + "/program-copy"]).status == 0)
            #expect(stat(scratch.path + "/program-copy").st_mode & 0o7777 == 0o755)

            // A sparse file stays sparse.
            let sparse = scratch.path + "/sparse"
            let fd = open(sparse, O_CREAT | O_WRONLY, 0o644)
            let data = pattern(count: 4096, seed: 2)
            _ = ftruncate(fd, 16 << 20)
            _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, 8 << 20) }
            close(fd)
            #expect(try run(cp, [sparse, scratch.path + "/sparse-copy"]).status == 0)
            let copy = stat(scratch.path + "/sparse-copy")
            #expect(copy.st_size == 16 << 20)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: scratch.path + "/sparse-copy"))
            #expect(Array(bytes[(8 << 20)..<((8 << 20) + 4096)]) == data)
            #expect(Checksum.of(bytes) == Checksum.of([UInt8](repeating: 0, count: 8 << 20) + data + [UInt8](repeating: 0, count: (8 << 20) - 4096)))
            if stat(sparse).st_blocks * 512 < 1 << 20 {
                #expect(copy.st_blocks * 512 < 1 << 20, "the copy allocated \(copy.st_blocks * 512) bytes for 4 KiB of data")
            }

            // A /proc file (size 0, not spliceable) is copied by reads and writes.
            let proc = try run(cp, ["/proc/version", scratch.path + "/version"])
            #expect(proc.status == 0, "\(String(decoding: proc.stderr, as: UTF8.self))")
            #expect(try String(contentsOfFile: scratch.path + "/version", encoding: .utf8)
                == (try String(contentsOfFile: "/proc/version", encoding: .utf8)))

            // A source that opens but cannot be read leaves the destination as it was.
            let kept = scratch.write("kept", Array("keep me\n".utf8))
            let unreadable = try run(cp, ["/proc/self/mem", kept.string])
            #expect(unreadable.status == 1)
            #expect(try String(contentsOfFile: kept.string, encoding: .utf8) == "keep me\n")

            // A full device is reported as such.
            let full = try run(cp, [program.string, "/dev/full"])
            #expect(full.status == 1)
            #expect(String(decoding: full.stderr, as: UTF8.self).contains("No space left on device (ENOSPC)"),
                "\(String(decoding: full.stderr, as: UTF8.self))")
        }

        @Test("uring-run returns the child's exit code, 126 and 127 like a shell, and forwards SIGINT, SIGHUP and SIGUSR1")
        func runs() throws {
            let exited = try run(productsDirectory + "/uring-run", ["/bin/sh", "-c", "exit 7"])
            #expect(exited.status == 7)
            #expect(String(decoding: exited.stderr, as: UTF8.self) == "uring-run: /bin/sh exited with code 7\n")

            let scratch = Scratch()
            let notExecutable = scratch.write("not-executable", Array("#!/bin/sh\n".utf8))
            chmod(notExecutable.string, 0o644)
            #expect(try run(productsDirectory + "/uring-run", [notExecutable.string]).status == 126)
            #expect(try run(productsDirectory + "/uring-run", [scratch.path + "/missing"]).status == 127)

            for (signal, name) in [(SIGINT, "SIGINT"), (SIGHUP, "SIGHUP"), (SIGUSR1, "SIGUSR1")] {
                let errPath = scratch.path + "/stderr"
                let runner = try spawn(
                    productsDirectory + "/uring-run", ["sleep", "60"], stdin: "/dev/null", stdout: "/dev/null",
                    stderr: errPath)
                // The child exists only after the signals are caught.
                func hasChild() -> Bool {
                    // Each thread lists the children it started; the ring thread spawns.
                    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(runner)/task")) ?? []
                    return tasks.contains { task in
                        let children = try? String(contentsOfFile: "/proc/\(runner)/task/\(task)/children", encoding: .utf8)
                        return !(children ?? "").isEmpty
                    }
                }
                var waited = 0
                while !hasChild() && waited < 10_000 {
                    usleep(1000)
                    waited += 1
                }
                #expect(hasChild(), "uring-run started no child in 10 s")
                kill(runner, signal)
                var status: Int32 = 0
                while waitpid(runner, &status, 0) < 0 && errno == EINTR {}
                #expect((status >> 8) & 0xff == 128 + signal, "128 + \(name); raw status \(status)")
                let message = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
                #expect(message.contains("forwarding \(name)") && message.contains("killed by \(name)"), "\(message)")
            }
        }
    }
}
