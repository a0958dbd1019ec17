import Glibc
import SystemPackage
import Testing

@testable import Uring

extension AllTests {
    @Suite("Permissions and times", .checksDescriptorLeaks)
    struct PermissionsAndTimesTests {
        @Test("permissions and times set through a file and by path read back; nil leaves a time; errors name the path")
        func setAndReadBack() async throws {
            let scratch = Scratch()
            let path = scratch.write("data", [1, 2])
            try await RingActor.run { ring in
                let file = try await File.open(path, .readWrite, on: ring)
                try await file.setPermissions(FilePermissions(rawValue: 0o640))
                #expect(try await file.metadata().permissions.rawValue & 0o777 == 0o640)
                try await ring.setPermissions(FilePermissions(rawValue: 0o600), at: path)
                #expect(try await ring.metadata(at: path).permissions.rawValue & 0o777 == 0o600)

                let past = FileTimestamp(seconds: 1_000_000_000, nanoseconds: 250_000_000)
                let later = FileTimestamp(seconds: 1_500_000_000, nanoseconds: 0)
                try await file.setTimes(accessed: past, modified: later)
                var metadata = try await file.metadata()
                #expect(metadata.accessed == past && metadata.modified == later)
                // nil leaves the access time as it was.
                try await ring.setTimes(modified: past, at: path)
                metadata = try await ring.metadata(at: path)
                #expect(metadata.accessed == past && metadata.modified == past)
                try await file.close()

                // A link's own times, without touching its target's.
                try await ring.createSymbolicLink(at: scratch.file("link"), pointingTo: "data")
                try await ring.setTimes(accessed: later, modified: later, at: scratch.file("link"), followingSymlinks: false)
                #expect(try await ring.metadata(at: scratch.file("link"), followingSymlinks: false).modified == later)
                #expect(try await ring.metadata(at: path).modified == past)

                let missing = scratch.file("missing")
                do {
                    try await ring.setPermissions(FilePermissions(rawValue: 0o600), at: missing)
                    Issue.record("changed a missing file")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory)
                    #expect(error.operation == .setPermissions)
                    #expect(error.description.contains(missing.string), "\(error)")
                }
            }
        }
    }
}
