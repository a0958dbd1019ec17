import Foundation
import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Errors", .checksDescriptorLeaks)
    struct ErrorTests {
        @Test("a missing path: ENOENT, naming the operation and the path, nothing leaked")
        func missingPath() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            let path = scratch.file("does-not-exist")
            do {
                _ = try await File.open(path, on: ring)
                Issue.record("opened a missing file")
            } catch let error as UringError {
                #expect(error.kind == .system)
                #expect(error.errno == .noSuchFileOrDirectory)
                #expect(error.operation == .open)
                #expect(error.path == path)
                #expect(error.description == "open '\(path)': No such file or directory (ENOENT)")
            }
            #expect(scratch.openDescriptors == 0)
            #expect(ring.statistics.slotsInUse == 0)
            await ring.shutdown()
        }

        @Test("permission denied: EACCES")
        func permissionDenied() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            // Root passes permission bits, but sysfs refuses writes to
            // read-only attributes even to root, with EACCES.
            let path: FilePath
            if geteuid() == 0 {
                path = "/sys/kernel/uevent_seqnum"
            } else {
                path = scratch.write("locked", [1, 2, 3])
                chmod(path.string, 0)
            }
            await #expect {
                _ = try await File.open(path, .writeOnly, on: ring)
            } throws: { error in
                guard let error = error as? UringError else { return false }
                return error.errno == .permissionDenied && error.path == path
                    && error.description.contains("(EACCES)")
            }
            #expect(scratch.openDescriptors == 0)
            await ring.shutdown()
        }

        @Test("a directory where a file was expected: EISDIR on open for writing and on read")
        func isDirectory() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            let path = FilePath(scratch.path)
            await #expect {
                _ = try await File.open(path, .writeOnly, on: ring)
            } throws: { ($0 as? UringError)?.errno == .isDirectory }

            let directory = try await File.open(path, on: ring)
            var buffer = [UInt8](repeating: 0, count: 16)
            await #expect {
                _ = try await directory.read(into: &buffer, at: 0)
            } throws: { error in
                guard let error = error as? UringError else { return false }
                return error.errno == .isDirectory && error.operation == .read && error.path == path
            }
            try await directory.close()
            await ring.shutdown()
        }

        @Test("an empty buffer is refused before anything is submitted")
        func emptyBuffer() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            let file = try await File.open(scratch.file("e"), .readWrite, options: .create, on: ring)
            let submitted = ring.statistics.submitted
            var empty: [UInt8] = []
            await #expect {
                _ = try await file.read(into: &empty, at: 0)
            } throws: { ($0 as? UringError)?.kind == .invalidArgument }
            await #expect {
                _ = try await file.write(empty, at: 0)
            } throws: { error in
                guard let error = error as? UringError else { return false }
                return error.kind == .invalidArgument && error.description.contains("empty")
            }
            var aligned = AlignedBuffer(count: 0)
            await #expect(throws: UringError.self) { _ = try await file.read(into: &aligned, at: 0) }
            #expect(ring.statistics.submitted == submitted)
            try await file.close()
            await ring.shutdown()
        }

        @Test("negative and overflowing offsets are refused; a huge write offset fails in the kernel")
        func badOffsets() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            let path = scratch.file("o")
            let file = try await File.open(path, .readWrite, options: .create, on: ring)
            var buffer = [UInt8](repeating: 1, count: 8)
            for offset in [Int64(-1), -4096, .min] {
                await #expect {
                    _ = try await file.read(into: &buffer, at: offset)
                } throws: { error in
                    guard let error = error as? UringError else { return false }
                    return error.kind == .invalidArgument && error.description.contains("negative")
                        && error.path == path
                }
            }
            await #expect {
                _ = try await file.write(buffer, at: .max - 2)
            } throws: { ($0 as? UringError)?.kind == .invalidArgument }
            // Within Int64: past what ext4 allows (EFBIG), while tmpfs and
            // the rootfs of a test guest take it as a sparse write. Either
            // way the library reports what the kernel did.
            do {
                #expect(try await file.write(buffer, at: .max - 100) == 8)
                #expect(try await file.metadata().size == .max - 92, "a write the file system took")
            } catch let error as UringError {
                #expect(error.kind == .system && [.fileTooLarge, .invalidArgument].contains(error.errno), "\(error)")
            }
            #expect(try await file.read(into: &buffer, at: .max - 50) == 0)
            try await file.close()
            await ring.shutdown()
        }

        @Test("a descriptor closed behind the library's back gives EBADF, not a crash")
        func closedBehindOurBack() async throws {
            let scratch = Scratch()
            let ring = try RingActor()
            let fd = open(scratch.file("b").string, O_CREAT | O_RDWR, 0o600)
            #expect(fd >= 0)
            let file = File(adopting: FileDescriptor(rawValue: fd), on: ring)
            close(fd)
            var buffer = [UInt8](repeating: 0, count: 4)
            await #expect {
                _ = try await file.read(into: &buffer, at: 0)
            } throws: { ($0 as? UringError)?.errno == .badFileDescriptor }
            do {
                try await file.close()
                Issue.record("closing an already closed descriptor succeeded")
            } catch {
                #expect((error as? UringError)?.errno == .badFileDescriptor)
            }
            await ring.shutdown()
        }

        @Test("an operation the kernel lacks reports unsupported, naming the operation")
        func unsupportedOperation() async throws {
            let scratch = Scratch()
            var options = RingOptions()
            options.treatedAsUnsupported = [.metadata]
            let ring = try RingActor(options: options)
            #expect(!ring.isSupported(.metadata))
            let file = try await File.open(scratch.file("u"), .writeOnly, options: .create, on: ring)
            let submitted = ring.statistics.submitted
            await #expect {
                _ = try await file.metadata()
            } throws: { error in
                guard let error = error as? UringError else { return false }
                return error.kind == .unsupported && error.errno == .notSupported
                    && error.description.contains("does not support statx")
            }
            #expect(ring.statistics.submitted == submitted)
            try await file.close()
            await ring.shutdown()
        }

        @Test(
            "io_uring denied by seccomp: creating a ring throws ringUnavailable naming the cause",
            arguments: ["ring", "shared", "open"])
        func seccompDenied(mode: String) throws {
            let probe = productsDirectory + "/uring-sandbox-probe"
            let scratch = Scratch()
            let result = try run(probe, [mode, scratch.write("present", [1]).string])
            let output = String(decoding: result.stdout, as: UTF8.self)
            try #require(result.status != 3, "seccomp could not be installed here: \(output)")
            #expect(result.status == 2, "\(output)")
            #expect(output.contains("errno: EPERM"))
            #expect(output.contains("io_uring_setup was refused"))
            #expect(output.contains("message: io_uring_setup: io_uring is not available"))
        }
    }
}

extension AllTests {
    @Suite("Hostile environment", .checksDescriptorLeaks)
    struct HostileEnvironmentTests {
        var probe: String { productsDirectory + "/uring-sandbox-probe" }
        /// The probe ends with exit() while its objects are alive, on purpose;
        /// under AddressSanitizer that would read as leaks, so the child does
        /// not check (the library's leak checks are the test process's own).
        let quiet = ["ASAN_OPTIONS=detect_leaks=0"]

        @Test("RLIMIT_NOFILE reached: open fails with a typed EMFILE naming the path, and the ring keeps working")
        func descriptorLimit() throws {
            // A file of the test's own: /etc/hostname is missing in a test guest.
            let scratch = Scratch()
            let path = scratch.write("present", [1])
            let result = try run(probe, ["nofile", path.string], environment: quiet)
            let output = String(decoding: result.stdout + result.stderr, as: UTF8.self)
            try #require(result.status != 3, "could not set RLIMIT_NOFILE: \(output)")
            #expect(result.status == 0, "\(output)")
            #expect(output.contains("open '\(path)': Too many open files (EMFILE)"), "\(output)")
            #expect(output.contains("reopened after closing one"))
        }

        @Test("RLIMIT_MEMLOCK of zero: the ring is created, or creation fails with a clear memory error")
        func memlockLimit() throws {
            let result = try run(probe, ["memlock"], environment: quiet)
            let output = String(decoding: result.stdout + result.stderr, as: UTF8.self)
            try #require(result.status != 3, "could not set RLIMIT_MEMLOCK: \(output)")
            // Kernels since 5.12 charge rings to the memory cgroup, not to
            // RLIMIT_MEMLOCK; older ones refuse with ENOMEM.
            #expect(
                result.status == 0 || (result.status == 2 && output.contains("RLIMIT_MEMLOCK")),
                "\(output)")
        }
    }
}
