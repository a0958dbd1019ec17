import Foundation
import Glibc
import Testing
import Uring

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
        return try await waitForExit(after: "signal \(signal)")
    }

    /// Waits (up to 20 s) for the exit; returns the exit status.
    func waitForExit(after cause: String) async throws -> Int32 {
        var status: Int32 = 0
        for _ in 0..<2000 {
            if waitpid(pid, &status, WNOHANG) == pid {
                return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        Issue.record("the server did not stop within 20 s of \(cause)")
        return -1
    }

    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
}

extension AllTests {
    @Suite("Server examples", .checksDescriptorLeaks)
    struct ServerExampleTests {
        @Test("uring-echo echoes 4 MiB from a Python client, serves 50 at once, and stops cleanly on SIGINT")
        func echoExample() async throws {
            // No grace period: the idle client below must be cut off at once.
            let server = try ServerProcess(productsDirectory + "/uring-echo", ["--port", "0", "--graceful-seconds", "0"])
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
            // An open, idle connection must not keep the server from stopping;
            // the client waits for the server to close it.
            let idle = """
                import socket, sys
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                s.settimeout(50)
                s.recv(1)
                """
            async let idleClient = python(idle, ["\(port)"])
            try await Task.sleep(for: .milliseconds(200))
            let status = try await server.stop(with: SIGINT)
            #expect(status == 0, "status \(status), stderr: \(server.stderr)")
            _ = try await idleClient
        }

        #if ServiceLifecycle
        @Test("uring-echo under ServiceGroup: SIGTERM stops accepting, an open connection is still echoed, and it exits once that closes")
        func echoStopsGracefully() async throws {
            let server = try ServerProcess(productsDirectory + "/uring-echo", ["--port", "0", "--graceful-seconds", "600"])
            let port = try await server.waitUntilListening()
            let address = SocketAddress.loopback(port: port)
            try await RingActor.run { ring in
                let client = try await StreamConnection.connect(to: address, on: ring)
                try await client.sendAll(Array("before".utf8))
                #expect(try await client.receive(exactly: 6) == Array("before".utf8))
                kill(server.pid, SIGTERM)
                // New clients are refused once the signal has been handled.
                // (A connect that reached the listener's queue as it closed
                // is reset instead: that also says it has stopped.)
                while !Task.isCancelled {
                    do {
                        let early = try await StreamConnection.connect(to: address, on: ring)
                        try await early.close()
                        try await ring.sleep(for: .milliseconds(5))
                    } catch let error as UringError
                        where error.errno == .connectionRefused || error.errno == .connectionReset
                    {
                        break
                    }
                }
                try await client.sendAll(Array("during".utf8))
                #expect(try await client.receive(exactly: 6) == Array("during".utf8))
                var status: Int32 = 0
                #expect(waitpid(server.pid, &status, WNOHANG) == 0, "still running while a connection is open")
                try await client.close()
            }
            let status = try await server.waitForExit(after: "its last connection closed")
            #expect(status == 0, "status \(status), stderr: \(server.stderr.suffix(2000))")
        }
        #endif

        @Test("uring-echo under a descriptor limit: more clients than fit are all served in turn as idle ones time out, and the server stays up")
        func echoSurvivesDescriptorLimit() async throws {
            let server = try ServerProcess(
                "/bin/sh", ["-c", "ulimit -n 64; exec \"$0\" --port 0 --idle-seconds 1", productsDirectory + "/uring-echo"])
            let port = try await server.waitUntilListening()
            let client = #"""
                import socket, sys
                port = int(sys.argv[1])
                clients = []
                for i in range(100):
                    s = socket.create_connection(("127.0.0.1", port))
                    s.settimeout(50)
                    s.sendall(bytes([i % 256]))
                    clients.append(s)
                served = 0
                for i, s in enumerate(clients):
                    # Echoed once accepted; closed once idle for a second.
                    if s.recv(1) == bytes([i % 256]) and s.recv(1) == b"":
                        served += 1
                    s.close()
                print(served)
                """#
            let result = try await python(client, ["\(port)"])
            #expect(result.status == 0, "python: \(result.stderr)")
            #expect(result.stdout == "100\n", "stderr: \(result.stderr)")
            let status = try await server.stop()
            #expect(status == 0, "status \(status), stderr: \(server.stderr.suffix(2000))")
        }

        @Test("uring-echo and uring-http with --rings 2: a thread per ring, every client served, a clean stop", arguments: [
            ["uring-echo", "--rings", "2"], ["uring-echo", "--rings", "2", "--hand-off"], ["uring-http", "--rings", "2"],
        ])
        func examplesOnTwoRings(_ command: [String]) async throws {
            let root = Scratch()
            _ = root.write("index.html", Array("<h1>two rings</h1>\n".utf8))
            let extra = command[0] == "uring-http" ? ["--root", root.path] : []
            let server = try ServerProcess(productsDirectory + "/" + command[0], Array(command.dropFirst()) + ["--port", "0"] + extra)
            let port = try await server.waitUntilListening()
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(server.pid)/task")) ?? []).map {
                ((try? String(contentsOfFile: "/proc/\(server.pid)/task/\($0)/comm", encoding: .utf8)) ?? "")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            #expect(names.filter { $0.hasPrefix("uring-ring-") }.sorted() == ["uring-ring-0", "uring-ring-1"], "\(names)")
            let client = command[0] == "uring-http"
                ? """
                import http.client, sys, threading
                ok = []
                def get():
                    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
                    c.request("GET", "/index.html"); r = c.getresponse()
                    ok.append(r.status == 200 and r.read() == b"<h1>two rings</h1>\\n"); c.close()
                threads = [threading.Thread(target=get) for _ in range(20)]
                for t in threads: t.start()
                for t in threads: t.join()
                print(sum(ok))
                """
                : """
                import socket, sys, threading
                ok = []
                def echo(k):
                    data = bytes((i * k + 1) % 256 for i in range(5000))
                    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                    s.sendall(data); s.shutdown(socket.SHUT_WR)
                    got = bytearray()
                    while True:
                        chunk = s.recv(1 << 16)
                        if not chunk: break
                        got += chunk
                    s.close(); ok.append(got == data)
                threads = [threading.Thread(target=echo, args=(k,)) for k in range(20)]
                for t in threads: t.start()
                for t in threads: t.join()
                print(sum(ok))
                """
            let result = try await python(client, ["\(port)"])
            #expect(result.status == 0, "python: \(result.stderr)")
            #expect(result.stdout == "20\n", "server stderr: \(server.stderr)")
            let status = try await server.stop()
            #expect(status == 0, "status \(status), stderr: \(server.stderr)")
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

        @Test("uring-http against hostile requests: symlinks out of the root, FIFOs, smuggled bodies, bare LF, token lists, limits and timeouts")
        func httpHostile() async throws {
            let root = Scratch()
            _ = root.write("index.html", Array("<h1>hello</h1>\n".utf8))
            _ = root.write("real.txt", Array("real\n".utf8))
            let outside = Scratch()
            _ = outside.write("secret.txt", Array("secret\n".utf8))
            symlink(outside.path + "/secret.txt", root.path + "/escape.txt")
            symlink("/dev/zero", root.path + "/zero")
            symlink("real.txt", root.path + "/inside.txt")
            mkfifo(root.path + "/fifo", 0o644)
            let server = try ServerProcess(
                productsDirectory + "/uring-http",
                ["--port", "0", "--root", root.path, "--header-seconds", "1", "--keepalive-seconds", "1"])
            let port = try await server.waitUntilListening()
            let client = #"""
                import re, socket, sys
                port = int(sys.argv[1])
                def connect():
                    s = socket.create_connection(("127.0.0.1", port))
                    s.settimeout(30)
                    return s
                def read_all(s):
                    data = b""
                    while True:
                        chunk = s.recv(65536)
                        if not chunk: return data
                        data += chunk
                def statuses(data):
                    return [code.decode() for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
                def ask(raw):
                    s = connect(); s.sendall(raw); data = read_all(s); s.close(); return data
                def status(path):
                    return statuses(ask(b"GET " + path + b" HTTP/1.1\r\nConnection: close\r\n\r\n"))
                print("escape", status(b"/escape.txt"))
                print("device", status(b"/zero"))
                print("inside", status(b"/inside.txt"))
                print("fifo", status(b"/fifo"))
                print("nul", status(b"/real.txt%00"))
                print("dots", status(b"/%2e%2E/real.txt"))
                print("slashes", status(b"//real.txt?q=/x"))
                print("words", statuses(ask(b"GET / HTTP/1.1 extra\r\n\r\n")))
                # A POST whose body is a GET: one answer for the POST, then the real next request.
                smuggled = b"GET /escape.txt HTTP/1.1\r\n\r\n"
                print("smuggled", statuses(ask(
                    b"POST /real.txt HTTP/1.1\r\nContent-Length: " + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled
                    + b"GET /real.txt HTTP/1.1\r\nConnection: close\r\n\r\n")))
                print("chunked", statuses(ask(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")))
                print("huge-body", statuses(ask(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")))
                print("bare-lf", statuses(ask(b"GET / HTTP/1.1\nHost: x\n\n")))
                print("tokens", statuses(ask(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\nGET / HTTP/1.1\r\n\r\n")))
                s = connect()
                s.sendall(b"GET / HTTP/1.1\r\nConnection: xclosex\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                print("substring", statuses(read_all(s))); s.close()
                print("long-target", statuses(ask(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")))
                print("huge-head", statuses(ask(b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"b" * 1000 + b"\r\n" * 1 + (b"X-More: " + b"c" * 1000 + b"\r\n") * 40 + b"\r\n")))
                # Half a head, then silence: 408 once the header timeout passes.
                s = connect(); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                print("slow-head", statuses(read_all(s))); s.close()
                # A kept-alive connection that goes quiet is closed.
                s = connect(); s.sendall(b"GET / HTTP/1.1\r\n\r\n")
                print("idle", statuses(read_all(s))); s.close()
                print("after", status(b"/real.txt"))
                """#
            let result = try await python(client, ["\(port)"])
            #expect(result.status == 0, "python: \(result.stderr)")
            let lines = result.stdout.split(separator: "\n").map(String.init)
            #expect(lines == [
                "escape ['403']", "device ['403']", "inside ['200']", "fifo ['404']", "nul ['400']",
                "dots ['403']", "slashes ['200']", "words ['400']",
                "smuggled ['405', '200']", "chunked ['501']", "huge-body ['413']", "bare-lf ['400']",
                "tokens ['200']", "substring ['200', '200']", "long-target ['414']", "huge-head ['431']",
                "slow-head ['408']", "idle ['200']", "after ['200']",
            ], "\(result.stdout)\n\(result.stderr)")
            let status = try await server.stop()
            #expect(status == 0, "status \(status), stderr: \(server.stderr)")
        }
    }
}

extension StreamConnection {
    /// Receives exactly `count` bytes (fewer only if the peer closes first).
    func receive(exactly count: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < count {
            let chunk = try await receive(maximumCount: count - bytes.count)
            if chunk.isEmpty { break }
            bytes += chunk
        }
        return bytes
    }
}
