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
#include <sched.h>
#include <spawn.h>

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

int cu_thread_start(pthread_t *thread, int cpu, void *(*body)(void *), void *context) {
    pthread_attr_t attr;
    int ret = pthread_attr_init(&attr);
    if (ret) return ret;
    // Jobs run on this thread, so give it a stack like the main thread's.
    pthread_attr_setstacksize(&attr, 8u << 20);
    if (cpu >= 0) {
        if (cpu >= CPU_SETSIZE) { pthread_attr_destroy(&attr); return EINVAL; }
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        // A CPU outside the process's mask makes pthread_create fail with EINVAL.
        ret = pthread_attr_setaffinity_np(&attr, sizeof set, &set);
        if (ret) { pthread_attr_destroy(&attr); return ret; }
    }
    // The ring thread starts with SIGPIPE blocked (it inherits this
    // thread's mask, changed just around the create): a write to a pipe
    // whose reader is gone, which the kernel may run on the ring thread,
    // then fails with EPIPE instead of killing the process.
    sigset_t pipe_only, saved;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
    ret = pthread_create(thread, &attr, body, context);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
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

static _Thread_local int cu_ring_thread_mark;

void cu_mark_ring_thread(void) { cu_ring_thread_mark = 1; }

int cu_is_a_ring_thread(void) { return cu_ring_thread_mark; }

int cu_thread_set_name_of(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
}

int cu_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

long cu_flistxattr(int fd, char *names, unsigned long size) {
    long ret = syscall(SYS_flistxattr, fd, names, size);
    return ret < 0 ? -errno : ret;
}

int cu_fremovexattr(int fd, const char *name) {
    long ret = syscall(SYS_fremovexattr, fd, name);
    return ret < 0 ? -errno : 0;
}

long cu_listxattr(const char *path, char *names, unsigned long size) {
    long ret = syscall(SYS_listxattr, path, names, size);
    return ret < 0 ? -errno : ret;
}

int cu_removexattr(const char *path, const char *name) {
    long ret = syscall(SYS_removexattr, path, name);
    return ret < 0 ? -errno : 0;
}

int cu_statx(int directory, const char *path, int flags, unsigned mask, struct statx *info) {
    long ret = syscall(SYS_statx, directory, path, flags, mask, info);
    return ret < 0 ? -errno : 0;
}

long cu_getdents64(int fd, void *buffer, unsigned long length) {
    long ret = syscall(SYS_getdents64, fd, buffer, length);
    return ret < 0 ? -errno : ret;
}

int cu_futex_wait_blocking(uint32_t *word, uint32_t expected) {
    long ret = syscall(SYS_futex, word, 128 /* FUTEX_WAIT | FUTEX_PRIVATE_FLAG */, expected, NULL, NULL, 0);
    return ret < 0 ? -errno : 0;
}

int cu_futex_wake(uint32_t *word, int count) {
    long ret = syscall(SYS_futex, word, 1 | 128 /* FUTEX_WAKE | FUTEX_PRIVATE_FLAG */, count, NULL, NULL, 0);
    return ret < 0 ? -errno : (int)ret;
}


int cu_pidfd_open(int pid) {
    long fd = syscall(434 /* SYS_pidfd_open */, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

int cu_waitid_pidfd(int pidfd, siginfo_t *info, int options) {
    // P_PIDFD (3) is Linux 5.4; glibc names it only from 2.36.
    return waitid((idtype_t)3, (id_t)pidfd, info, options) == 0 ? 0 : -errno;
}

int cu_pidfd_send_signal(int pidfd, int signal) {
    return syscall(424 /* SYS_pidfd_send_signal */, pidfd, signal, NULL, 0) == 0 ? 0 : -errno;
}

int cu_spawn_file_actions_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int cu_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int cu_usable_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    }
    return count;
}

int cu_usable_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int count = CPU_COUNT(&set);
    return count > 0 ? count : 1;
}
