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

static int cu_signal_pipe[2] = {-1, -1};
static pthread_mutex_t cu_signal_lock = PTHREAD_MUTEX_INITIALIZER;

static void cu_on_signal(int number) {
    int saved = errno;
    unsigned char byte = (unsigned char)number;
    ssize_t ignored = write(cu_signal_pipe[1], &byte, 1);  // async-signal-safe
    (void)ignored;
    errno = saved;
}

int cu_watch_signals(const int *signals, int count) {
    pthread_mutex_lock(&cu_signal_lock);
    if (cu_signal_pipe[0] < 0 && pipe2(cu_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        pthread_mutex_unlock(&cu_signal_lock);
        return -1;
    }
    // The reading end must block: reads go through the ring and should wait.
    int flags = fcntl(cu_signal_pipe[0], F_GETFL);
    fcntl(cu_signal_pipe[0], F_SETFL, flags & ~O_NONBLOCK);
    pthread_mutex_unlock(&cu_signal_lock);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = cu_on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int i = 0; i < count; i++) {
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
    }
    return fcntl(cu_signal_pipe[0], F_DUPFD_CLOEXEC, 0);
}
