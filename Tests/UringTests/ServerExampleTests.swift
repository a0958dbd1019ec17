import Foundation
import Glibc
import Testing

/// A server example started as a child process, with its output in files.
struct ServerProcess {
    let pid: pid_t
    let scratch = Scratch()
    var stdoutPath: String { scratch.path + "/stdout" }
    var stderrPath: String { scratch.path + "/stderr" }

    init(_ executable: String, _ arguments: [String]) throws {
        pid = try spawn(
            executable, arguments, stdin: "/dev/null", stdout: scratch.path + "/stdout",
            stderr: scratch.path + "/stderr")
    }

    /// Waits (up to 20 s) for the "listening on H:P" line; returns the port.
    func waitUntilListening() async throws -> UInt16 {
        for _ in 0..<2000 {
            let output = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
            if let line = output.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }),
                let port = line.split(separator: ":").last.flatMap({ UInt16($0) })
            {
                return port
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                Issue.record("the server exited early: \(stderr)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("the server never printed 'listening on'")
        throw CancellationError()
    }

    /// Sends `signal` and waits for the exit; returns the exit status.
    func stop(with signal: Int32 = SIGTERM) async throws -> Int32 {
        kill(pid, signal)
        var status: Int32 = 0
        for _ in 0..<2000 {
            if waitpid(pid, &status, WNOHANG) == pid {
                return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        Issue.record("the server did not stop within 20 s of signal \(signal)")
        return -1
    }

    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
}

extension AllTests {
    @Suite("Server examples", .checksDescriptorLeaks)
    struct ServerExampleTests {
        @Test("uring-echo echoes 4 MiB from a Python client, serves 50 at once, and stops cleanly on SIGINT")
        func echoExample() async throws {
            let server = try ServerProcess(productsDirectory + "/uring-echo", ["--port", "0"])
            let port = try await server.waitUntilListening()
            let client = """
                import socket, sys, threading, hashlib
                port = int(sys.argv[1])
                def echo(n, seed):
                    data = bytes((i * seed + 1) % 256 for i in range(n))
                    s = socket.create_connection(("127.0.0.1", port))
                    def send():
                        s.sendall(data)
                        s.shutdown(socket.SHUT_WR)
                    t = threading.Thread(target=send); t.start()
                    got = bytearray()
                    while True:
                        chunk = s.recv(1 << 16)
                        if not chunk: break
                        got += chunk
                    t.join(); s.close()
                    return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
                results = []
                threads = [threading.Thread(target=lambda k=k: results.append(echo(20000 + k, k + 3))) for k in range(50)]
                for t in threads: t.start()
                for t in threads: t.join()
                print(echo(4 << 20, 7), sum(results))
                """
            let result = try await python(client, ["\(port)"])
            #expect(result.status == 0, "python: \(result.stderr)")
            #expect(result.stdout == "True 50\n")
            // An open, idle connection must not keep the server from stopping.
            let idle = """
                import socket, sys, time
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                time.sleep(0.5)
                """
            async let idleClient = python(idle, ["\(port)"])
            try await Task.sleep(for: .milliseconds(200))
            let status = try await server.stop(with: SIGINT)
            #expect(status == 0, "status \(status), stderr: \(server.stderr)")
            _ = try await idleClient
        }

        @Test("uring-http serves curl: identical bodies (small, exactly its buffer, large), HEAD, keep-alive, 404, 400, and '..' refused")
        func httpExample() async throws {
            let root = Scratch()
            let body = pattern(count: 1_500_000, seed: 11)
            _ = root.write("data.bin", body)
            _ = root.write("index.html", Array("<h1>hello</h1>\n".utf8))
            // The server learns a small file's size from its first read, which
            // fills its 64 KiB buffer exactly here, so it must ask for the size.
            let exact = pattern(count: 64 * 1024, seed: 12)
            _ = root.write("exact.bin", exact)
            mkdir(root.path + "/folder", 0o755)
            let outside = Scratch()
            _ = outside.write("secret.txt", Array("secret\n".utf8))
            let server = try ServerProcess(productsDirectory + "/uring-http", ["--port", "0", "--root", root.path])
            let port = try await server.waitUntilListening()
            let base = "http://127.0.0.1:\(port)"
            let curl = "/usr/bin/curl"
            let out = Scratch()

            // A large binary body, byte for byte, and the index on the same
            // connection (curl reuses it for two URLs).
            let get = try await Task.detached {
                try run(curl, ["-sS", "-o", out.path + "/data", "-w", "%{http_code} %{num_connects}\\n",
                               "\(base)/data.bin", "-o", out.path + "/index", "\(base)/"])
            }.value
            #expect(get.status == 0, "\(String(decoding: get.stderr, as: UTF8.self))")
            #expect(String(decoding: get.stdout, as: UTF8.self) == "200 1\n200 0\n")
            #expect(try Data(contentsOf: URL(fileURLWithPath: out.path + "/data")) == Data(body))
            #expect(try String(contentsOfFile: out.path + "/index", encoding: .utf8) == "<h1>hello</h1>\n")

            let exactGet = try await Task.detached {
                try run(curl, ["-sS", "-o", out.path + "/exact", "-w", "%{http_code}", "\(base)/exact.bin"])
            }.value
            #expect(String(decoding: exactGet.stdout, as: UTF8.self) == "200")
            #expect(try Data(contentsOf: URL(fileURLWithPath: out.path + "/exact")) == Data(exact))

            let head = try await Task.detached { try run(curl, ["-sS", "-I", "\(base)/data.bin"]) }.value
            let headers = String(decoding: head.stdout, as: UTF8.self)
            #expect(headers.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(headers.contains("Content-Length: \(body.count)\r\n"))
            #expect(headers.contains("Content-Type: application/octet-stream\r\n"))
            let smallHead = try await Task.detached {
                try run(curl, ["-sS", "-I", "-H", "Connection: close", "\(base)/index.html"])
            }.value
            let smallHeaders = String(decoding: smallHead.stdout, as: UTF8.self)
            #expect(smallHeaders.contains("Content-Length: 15\r\n"), "\(smallHeaders)")
            #expect(smallHeaders.contains("Content-Type: text/html; charset=utf-8\r\n"))
            #expect(smallHeaders.contains("Connection: close\r\n"))

            let missing = try await Task.detached {
                try run(curl, ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/nope.txt"])
            }.value
            #expect(String(decoding: missing.stdout, as: UTF8.self) == "404")
            let folder = try await Task.detached {
                try run(curl, ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "\(base)/folder"])
            }.value
            #expect(String(decoding: folder.stdout, as: UTF8.self) == "404")

            // '..' that would leave the root: curl would normalise it, so send it raw.
            let climb = try await Task.detached {
                try run(curl, ["-sS", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                               "\(base)/../\(outside.path.split(separator: "/").last!)/secret.txt"])
            }.value
            #expect(String(decoding: climb.stdout, as: UTF8.self) == "403")

            let raw = """
                import socket, sys
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                s.sendall(b"NONSENSE\\r\\n\\r\\n")
                print(s.recv(4096).split(b"\\r\\n")[0].decode())
                """
            let bad = try await python(raw, ["\(port)"])
            #expect(bad.stdout == "HTTP/1.1 400 Bad Request\n", "python: \(bad.stderr)")

            let status = try await server.stop()
            #expect(status == 0, "status \(status), stderr: \(server.stderr)")
        }
    }
}
