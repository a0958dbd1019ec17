#ifndef SWIFT_URING_CURING_H
#define SWIFT_URING_CURING_H


// liburing.h defines _XOPEN_SOURCE/_GNU_SOURCE before its own system includes.
// Clang modules then see two different definitions of fd_set and friends, so
// the system headers are pulled in here first, in one consistent way.
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <time.h>
#include <fcntl.h>
#include <sched.h>
#include <pthread.h>
#include <stdint.h>
// swift-system's CSystem module includes the kernel's <linux/io_uring.h>;
// liburing ships its own copy under the same include guard. Including the
// kernel's first makes both modules see one definition of every io_uring
// struct, which Clang then merges instead of reporting a conflict.
#include <linux/io_uring.h>
#include <linux/stat.h>
#include <liburing.h>

/// Open flags that <fcntl.h> hides without _GNU_SOURCE, which this header
/// must not define (it would change fd_set as Swift's Glibc module sees it).
#if defined(__aarch64__) || defined(__arm__)
static const int CU_O_DIRECT = 0200000;
#else
static const int CU_O_DIRECT = 040000;
#endif
static const int CU_O_SYNC = 04010000;
static const int CU_O_PATH = 010000000;
static const int CU_AT_EMPTY_PATH = 0x1000;

/// Flag values that Swift cannot import from the enum-typed macros.
static const unsigned char CU_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const unsigned char CU_IOSQE_IO_HARDLINK = IOSQE_IO_HARDLINK;

/// The probe entry for `index` (Swift cannot index the flexible array).
static inline const struct io_uring_probe_op *cu_probe_op(const struct io_uring_probe *probe, unsigned index) {
    return &probe->ops[index];
}

/// Hint to the CPU that the caller is in a spin-wait loop.
static inline void cu_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Monotonic time in nanoseconds (vDSO, no system call on common kernels).
static inline uint64_t cu_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/// Size in bytes of one SQE; 64 unless the ring uses SQE128 (we never do).
static inline unsigned cu_sqe_size(void) { return sizeof(struct io_uring_sqe); }

/// Allocates a probe large enough for every opcode, filled by the kernel.
/// Returns NULL with errno set on failure. Free with io_uring_free_probe.
struct io_uring_probe *cu_probe_ring(struct io_uring *ring);

/// Reads /proc/sys/kernel/io_uring_disabled: -1 if absent, else 0, 1 or 2.
int cu_io_uring_disabled_sysctl(void);

/// The number of CQEs the kernel dropped because the CQ ring was full.
static inline unsigned cu_cq_dropped(const struct io_uring *ring) {
    return IO_URING_READ_ONCE(*ring->cq.koverflow);
}

/// Whether the kernel holds completions that did not fit in the CQ ring.
static inline int cu_cq_has_overflow(const struct io_uring *ring) {
    return io_uring_cq_has_overflow(ring) ? 1 : 0;
}

/// Completions ready in the CQ ring (acquire-ordered read of the tail).
static inline unsigned cu_cq_ready(struct io_uring *ring) {
    return io_uring_cq_ready(ring);
}

/// The `i`-th unread completion (valid for i < cu_cq_ready()).
static inline struct io_uring_cqe *cu_cq_at(struct io_uring *ring, unsigned i) {
    return &ring->cq.cqes[(*ring->cq.khead + i) & ring->cq.ring_mask];
}

/// Marks `n` completions as read.
static inline void cu_cq_advance(struct io_uring *ring, unsigned n) {
    io_uring_cq_advance(ring, n);
}

/// Free SQ entries.
static inline unsigned cu_sq_space(struct io_uring *ring) {
    return io_uring_sq_space_left(ring);
}

/// Takes a free SQ entry and fills it with `image` (NULL if the SQ is full).
static inline int cu_sq_push(struct io_uring *ring, const struct io_uring_sqe *image, uint64_t user_data) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) return 0;
    *sqe = *image;
    sqe->user_data = user_data;
    return 1;
}

/// Enables a ring created with IORING_SETUP_R_DISABLED; the calling thread
/// becomes its single issuer. (liburing 2.3 declares io_uring_enable_rings
/// but does not export it.) Returns 0 or -errno.
int cu_enable_ring(struct io_uring *ring);

/// Names the calling thread (15 bytes at most); returns 0 or an errno.
int cu_thread_set_name(const char *name);

/// Starts a POSIX thread running `body(context)`; returns 0 or an errno.
int cu_thread_start(pthread_t *thread, void *(*body)(void *), void *context);

/// Under ThreadSanitizer, stop (begin) and restart (end) recording the calling
/// thread's memory accesses; synchronization is still recorded. Elsewhere
/// these do nothing.
void cu_tsan_ignore_accesses_begin(void);
void cu_tsan_ignore_accesses_end(void);

#endif
