// uring-nop-count IMPL N: runs N awaited NOPs through swift-uring (IMPL
// "swift", mode (a)) or through C on liburing (IMPL "c"), and exits. The nop
// scenario runs it under callgrind to count instructions; it is a program of
// its own because valgrind cannot run uring-bench itself (its malloc
// interposer and Foundation).

import CBaseline
import Uring

let arguments = CommandLine.arguments
let count = arguments.count > 2 ? Int(arguments[2]) ?? 1000 : 1000
if arguments.count > 1 && arguments[1] == "c" {
    precondition(cbaseline_nops(UInt32(count), 1) > 0)
} else {
    var options = RingOptions()
    // Spinning would add instructions that buy nothing under valgrind.
    options.idleSpin = .zero
    options.callerSpin = .zero
    try await RingActor.run(options: options) { ring in
        for _ in 0..<count { try await ring.nop() }
    }
}
