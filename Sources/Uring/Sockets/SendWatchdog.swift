import Glibc

/// Keeps a deadline for a send that no cancellation ends in time: a splice
/// waiting in a kernel worker for room in the socket, or a zero-copy send
/// whose bytes the kernel still holds. A kernel timer calls ``fire()`` on
/// the ring's thread at the deadline; unless the sender called
/// ``finish()`` first, the watchdog's action then runs, under a lock the
/// sender's ``finish()`` also takes, so the descriptor it acts on is still
/// open and still the sender's socket.
final class SendWatchdog: Sendable {
    /// Acts on the socket at the deadline; returns whether it changed it
    /// (shut it, reset it).
    private let action: @Sendable () -> Bool
    /// Finishing and firing each happen once, and only the first acts.
    private let state = Locked((finished: false, fired: false, acted: false))

    init(action: @escaping @Sendable () -> Bool) {
        self.action = action
    }

    /// The deadline passed.
    func fire() {
        state.withLock { state in
            guard !state.finished else { return }
            state.fired = true
            state.acted = action()
        }
    }

    /// Marks the send over; returns whether the watchdog fired first, and
    /// whether its action changed the socket.
    func finish() -> (fired: Bool, acted: Bool) {
        state.withLock { state in
            state.finished = true
            return (state.fired, state.acted)
        }
    }
}
