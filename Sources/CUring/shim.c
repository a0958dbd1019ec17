#define _GNU_SOURCE
#include "CUring.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <signal.h>

struct io_uring_probe *cu_probe_ring(struct io_uring *ring) {
    size_t len = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = calloc(1, len);
    if (!probe) { errno = ENOMEM; return NULL; }
    int ret = io_uring_register_probe(ring, probe, 256);
    if (ret < 0) { free(probe); errno = -ret; return NULL; }
    return probe;
}

int cu_io_uring_disabled_sysctl(void) {
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (!f) return -1;
    int value = -1;
    if (fscanf(f, "%d", &value) != 1) value = -1;
    fclose(f);
    return value;
}

int cu_thread_start(pthread_t *thread, void *(*body)(void *), void *context) {
    pthread_attr_t attr;
    int ret = pthread_attr_init(&attr);
    if (ret) return ret;
    // Jobs run on this thread, so give it a stack like the main thread's.
    pthread_attr_setstacksize(&attr, 8u << 20);
    ret = pthread_create(thread, &attr, body, context);
    pthread_attr_destroy(&attr);
    return ret;
}

int cu_enable_ring(struct io_uring *ring) {
    int ret = (int)syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return ret < 0 ? -errno : ret;
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CU_THREAD_SANITIZER 1
#endif
#endif

#ifdef CU_THREAD_SANITIZER
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
void cu_tsan_ignore_accesses_begin(void) { __tsan_ignore_thread_begin(); }
void cu_tsan_ignore_accesses_end(void) { __tsan_ignore_thread_end(); }
#else
void cu_tsan_ignore_accesses_begin(void) {}
void cu_tsan_ignore_accesses_end(void) {}
#endif

struct io_uring_buf_ring *cu_setup_buf_ring(struct io_uring *ring, unsigned entries, unsigned short group) {
    size_t length = (size_t)entries * sizeof(struct io_uring_buf);
    void *memory = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (memory == MAP_FAILED) return NULL;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)memory;
    reg.ring_entries = entries;
    reg.bgid = group;
    int ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret < 0) {
        munmap(memory, length);
        errno = -ret;
        return NULL;
    }
    struct io_uring_buf_ring *br = memory;
    io_uring_buf_ring_init(br);
    return br;
}

void cu_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries, unsigned short group, int registered) {
    if (registered) io_uring_unregister_buf_ring(ring, group);
    munmap(br, (size_t)entries * sizeof(struct io_uring_buf));
}

int cu_thread_set_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int cu_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cu_futex_wait_blocking(uint32_t *word, uint32_t expected) {
    long ret = syscall(SYS_futex, word, 128 /* FUTEX_WAIT | FUTEX_PRIVATE_FLAG */, expected, NULL, NULL, 0);
    return ret < 0 ? -errno : 0;
}

int cu_futex_wake(uint32_t *word, int count) {
    long ret = syscall(SYS_futex, word, 1 | 128 /* FUTEX_WAKE | FUTEX_PRIVATE_FLAG */, count, NULL, NULL, 0);
    return ret < 0 ? -errno : (int)ret;
}

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
