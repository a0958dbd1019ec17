import Glibc

/// What this process holds open, read from `/proc/self`, without Foundation.
enum ProcessResources {
    /// What each open descriptor refers to (`pipe:[1234]`, a path, …), sorted.
    ///
    /// Timer descriptors are left out: this library makes none (its timers
    /// are io_uring timeouts), while the Swift runtime's timer support makes
    /// one the first time a process sleeps with `Task.sleep` or runs a test
    /// with a time limit, and keeps it for the life of the process.
    static func descriptorTargets() -> [String] {
        entries(of: "/proc/self/fd").compactMap { name -> String? in
            guard let target = readLink("/proc/self/fd/\(name)"), target != "anon_inode:[timerfd]" else { return nil }
            return target
        }.sorted()
    }

    /// How many of the process's threads have a name that starts with `prefix`.
    static func threads(namedWithPrefix prefix: String) -> Int {
        entries(of: "/proc/self/task").filter { task in
            contents(of: "/proc/self/task/\(task)/comm").hasPrefix(prefix)
        }.count
    }

    /// The running kernel's release, as `uname -r` prints it.
    static var kernelRelease: String {
        var names = utsname()
        uname(&names)
        return withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    private static func entries(of directory: String) -> [String] {
        guard let stream = opendir(directory) else { return [] }
        defer { closedir(stream) }
        // The directory's own descriptor is among those listed; it is named
        // by the stream, so leave it out.
        let own = String(dirfd(stream))
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." && !(directory == "/proc/self/fd" && name == own) {
                names.append(name)
            }
        }
        return names
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func contents(of path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buffer, buffer.count)
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
    }
}
