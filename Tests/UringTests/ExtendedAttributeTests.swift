import Glibc
import SystemPackage
import Testing

@testable import Uring

/// Whether the file system under /tmp keeps `user.` extended attributes
/// (tmpfs before Linux 6.6 does not, nor the 6.1 guest's root).
func userAttributesSupported() async -> Bool {
    let scratch = Scratch()
    let path = scratch.write("probe", [])
    guard let ring = try? RingActor() else { return false }
    defer { Task { await ring.shutdown() } }
    guard let file = try? await File.open(path, .readWrite, on: ring) else { return false }
    let supported: Bool
    do {
        try await file.setExtendedAttribute("user.probe", to: [1])
        supported = true
    } catch {
        supported = false
    }
    try? await file.close()
    return supported
}

extension AllTests {
    @Suite("Extended attributes", .checksDescriptorLeaks)
    struct ExtendedAttributeTests {
        @Test(
            "set, read (also past the first 256-byte try), list and remove through a file and by path; errors name the file",
            .enabled("the file system of /tmp keeps no user extended attributes") { await userAttributesSupported() })
        func attributes() async throws {
            let scratch = Scratch()
            let path = scratch.write("tagged", [1])
            try await RingActor.run { ring in
                let file = try await File.open(path, .readWrite, on: ring)
                try await file.setExtendedAttribute("user.origin", to: Array("https://example.org".utf8))
                #expect(try await file.extendedAttribute("user.origin") == Array("https://example.org".utf8))
                // A value longer than the first try's 256 bytes (ext4 keeps
                // values of up to about one block).
                let large = pattern(count: 2000, seed: 8)
                try await file.setExtendedAttribute("user.large", to: large)
                #expect(try await file.extendedAttribute("user.large") == large)
                #expect(Set(try await file.extendedAttributeNames()).isSuperset(of: ["user.origin", "user.large"]))
                // By path, and the create and replace modes.
                #expect(try await ring.extendedAttribute("user.origin", at: path) == Array("https://example.org".utf8))
                try await ring.setExtendedAttribute("user.mode", to: [2], at: path, mode: .create)
                do {
                    try await ring.setExtendedAttribute("user.mode", to: [3], at: path, mode: .create)
                    Issue.record("created an existing attribute")
                } catch let error as UringError {
                    #expect(error.errno == .fileExists)
                    #expect(error.description.contains(path.string), "\(error)")
                }
                try await file.removeExtendedAttribute("user.mode")
                do {
                    _ = try await file.extendedAttribute("user.mode")
                    Issue.record("read a removed attribute")
                } catch let error as UringError {
                    #expect(error.errno == Errno(rawValue: ENODATA))
                    #expect(error.operation == .getAttribute)
                    #expect(error.description.contains(path.string), "\(error)")
                }
                do {
                    try await file.removeExtendedAttribute("user.mode")
                    Issue.record("removed a missing attribute")
                } catch let error as UringError {
                    #expect(error.errno == Errno(rawValue: ENODATA))
                }
                // Listing and removing by path.
                #expect(Set(try await ring.extendedAttributeNames(at: path)).isSuperset(of: ["user.origin", "user.large"]))
                try await ring.removeExtendedAttribute("user.large", at: path)
                #expect(!(try await ring.extendedAttributeNames(at: path)).contains("user.large"))
                do {
                    try await ring.removeExtendedAttribute("user.large", at: path)
                    Issue.record("removed a missing attribute by path")
                } catch let error as UringError {
                    #expect(error.errno == Errno(rawValue: ENODATA))
                    #expect(error.operation == .removeAttributeAtPath)
                    #expect(error.path == path, "\(error)")
                }
                let missing = scratch.file("missing")
                do {
                    _ = try await ring.extendedAttributeNames(at: missing)
                    Issue.record("listed the attributes of a missing file")
                } catch let error as UringError {
                    #expect(error.errno == .noSuchFileOrDirectory)
                    #expect(error.operation == .listAttributesAtPath)
                    #expect(error.path == missing, "\(error)")
                }
                try await file.close()
            }
        }
    }
}
