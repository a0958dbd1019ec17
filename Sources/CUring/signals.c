// Process-wide signal delivery for `Signals`: a handler that turns each
// signal into a byte on the pipes of the watchers that asked for it. Kept
// apart from the liburing shim, as it has nothing to do with the ring.
#define _GNU_SOURCE
#include "CUringSignals.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

// Signal watchers: a fixed table the handler reads without locks. A slot is
// live while its mask is non-zero; `cu_signal_busy` counts handlers running,
// so unwatching can wait for them before closing a pipe they may write to.
#define CU_WATCHERS 32
static int cu_watch_fd[CU_WATCHERS] = {[0 ... CU_WATCHERS - 1] = -1};
static unsigned long long cu_watch_mask[CU_WATCHERS];
static int cu_signal_busy;
static struct sigaction cu_saved_action[65];
static int cu_saved[65];
static pthread_mutex_t cu_signal_lock = PTHREAD_MUTEX_INITIALIZER;

static void cu_on_signal(int number) {
    int saved = errno;
    __atomic_fetch_add(&cu_signal_busy, 1, __ATOMIC_SEQ_CST);
    unsigned long long bit = 1ull << (number - 1);
    unsigned char byte = (unsigned char)number;
    for (int i = 0; i < CU_WATCHERS; i++) {
        if (!(__atomic_load_n(&cu_watch_mask[i], __ATOMIC_SEQ_CST) & bit)) continue;
        int fd = __atomic_load_n(&cu_watch_fd[i], __ATOMIC_SEQ_CST);
        if (fd >= 0) {
            ssize_t ignored = write(fd, &byte, 1);  // async-signal-safe; a full pipe drops the byte
            (void)ignored;
        }
    }
    __atomic_fetch_sub(&cu_signal_busy, 1, __ATOMIC_SEQ_CST);
    errno = saved;
}

static int cu_signal_watched_elsewhere(int number, int except) {
    unsigned long long bit = 1ull << (number - 1);
    for (int i = 0; i < CU_WATCHERS; i++) {
        if (i != except && (__atomic_load_n(&cu_watch_mask[i], __ATOMIC_SEQ_CST) & bit)) return 1;
    }
    return 0;
}

int cu_signals_watch(const int *signals, int count, int *slot) {
    unsigned long long mask = 0;
    for (int i = 0; i < count; i++) {
        int number = signals[i];
        if (number < 1 || number > 64 || number == SIGKILL || number == SIGSTOP) { errno = EINVAL; return -1; }
        mask |= 1ull << (number - 1);
    }
    if (mask == 0) { errno = EINVAL; return -1; }
    pthread_mutex_lock(&cu_signal_lock);
    int found = -1;
    for (int i = 0; i < CU_WATCHERS; i++) {
        if (__atomic_load_n(&cu_watch_mask[i], __ATOMIC_SEQ_CST) == 0) { found = i; break; }
    }
    if (found < 0) { pthread_mutex_unlock(&cu_signal_lock); errno = EMFILE; return -1; }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) { pthread_mutex_unlock(&cu_signal_lock); return -1; }
    // The handler must never block; the reader's end blocks, as ring reads expect.
    fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
    __atomic_store_n(&cu_watch_fd[found], fds[1], __ATOMIC_SEQ_CST);
    __atomic_store_n(&cu_watch_mask[found], mask, __ATOMIC_SEQ_CST);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = cu_on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int number = 1; number <= 64; number++) {
        if (!(mask & (1ull << (number - 1))) || cu_saved[number]) continue;
        if (sigaction(number, &action, &cu_saved_action[number]) != 0) {
            int code = errno;
            pthread_mutex_unlock(&cu_signal_lock);
            cu_signals_unwatch(found);
            close(fds[0]);
            errno = code;
            return -1;
        }
        cu_saved[number] = 1;
    }
    pthread_mutex_unlock(&cu_signal_lock);
    *slot = found;
    return fds[0];
}

void cu_signals_unwatch(int slot) {
    if (slot < 0 || slot >= CU_WATCHERS) return;
    pthread_mutex_lock(&cu_signal_lock);
    unsigned long long mask = __atomic_load_n(&cu_watch_mask[slot], __ATOMIC_SEQ_CST);
    for (int number = 1; number <= 64; number++) {
        if (!(mask & (1ull << (number - 1))) || !cu_saved[number]) continue;
        if (cu_signal_watched_elsewhere(number, slot)) continue;
        sigaction(number, &cu_saved_action[number], NULL);
        cu_saved[number] = 0;
    }
    int fd = __atomic_exchange_n(&cu_watch_fd[slot], -1, __ATOMIC_SEQ_CST);
    // A handler that read the old descriptor has raised the busy count
    // before reading it; wait for it, so the descriptor is not reused under it.
    while (__atomic_load_n(&cu_signal_busy, __ATOMIC_SEQ_CST) != 0) sched_yield();
    if (fd >= 0) close(fd);
    __atomic_store_n(&cu_watch_mask[slot], 0, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&cu_signal_lock);
}
