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
#include <string.h>
#include <unistd.h>
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

/// Opcodes newer than the 6.1 headers (the probe decides at run time).
#define CU_IORING_OP_BIND 56
#define CU_IORING_OP_LISTEN 57

/// bind(2) as a request (kernel 6.11+; liburing 2.3 has no helper).
static inline void cu_prep_bind(struct io_uring_sqe *sqe, int fd, const struct sockaddr *addr, socklen_t length) {
    io_uring_prep_rw(CU_IORING_OP_BIND, sqe, fd, addr, 0, length);
}

/// listen(2) as a request (kernel 6.11+; liburing 2.3 has no helper).
static inline void cu_prep_listen(struct io_uring_sqe *sqe, int fd, int backlog) {
    io_uring_prep_rw(CU_IORING_OP_LISTEN, sqe, fd, 0, backlog, 0);
}

/// setsockopt(2) as a socket command (IORING_OP_URING_CMD with
/// SOCKET_URING_OP_SETSOCKOPT, kernel 6.7+). The 6.1 headers lack the named
/// SQE fields, so they are set through the members that share their place.
static inline void cu_prep_setsockopt(struct io_uring_sqe *sqe, int fd, int level, int name, const void *value, int length) {
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, 0, 0, 0);
    sqe->off = 3; /* cmd_op = SOCKET_URING_OP_SETSOCKOPT */
    sqe->addr = (uint64_t)(uint32_t)level | ((uint64_t)(uint32_t)name << 32);
    sqe->splice_fd_in = length; /* optlen */
    sqe->addr3 = (uint64_t)(uintptr_t)value; /* optval */
}

/// Bytes of control data that carry one descriptor (SCM_RIGHTS).
static inline unsigned cu_rights_space(void) { return CMSG_SPACE(sizeof(int)); }

/// Puts `fd` into `control` (cu_rights_space() bytes) as SCM_RIGHTS, and
/// points `message` at it.
static inline void cu_rights_pack(struct msghdr *message, void *control, int fd) {
    message->msg_control = control;
    message->msg_controllen = CMSG_SPACE(sizeof(int));
    struct cmsghdr *header = CMSG_FIRSTHDR(message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof(int));
}

/// The first descriptor a received message carries as SCM_RIGHTS, or -1.
/// Any further descriptors in the message are closed.
static inline int cu_rights_unpack(struct msghdr *message) {
    int found = -1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(message); header; header = CMSG_NXTHDR(message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
            if (found < 0) found = fd; else close(fd);
        }
    }
    return found;
}

/// Installs a handler for `signals` (an array of `count` numbers) that
/// writes each arriving signal's number, as one byte, into a pipe; returns a
/// new descriptor for the pipe's reading end, or -1 with errno. Unlike a
/// signalfd this works whatever threads already run with the signals
/// unblocked.
int cu_watch_signals(const int *signals, int count);

/// Marks a request to take its buffer from provided-buffer group `group`.
static inline void cu_sqe_select_buffer(struct io_uring_sqe *sqe, unsigned short group) {
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
}

/// Sets bits in the request's `ioprio` field (multishot flags of accept and recv).
static inline void cu_sqe_or_ioprio(struct io_uring_sqe *sqe, unsigned short bits) {
    sqe->ioprio |= bits;
}

/// A provided-buffer ring: `entries` (a power of two) descriptors in memory
/// shared with the kernel, registered as group `group`. Returns NULL and sets
/// errno on failure. (liburing 2.3 lacks io_uring_setup_buf_ring.)
struct io_uring_buf_ring *cu_setup_buf_ring(struct io_uring *ring, unsigned entries, unsigned short group);

/// Unregisters and unmaps a ring made by cu_setup_buf_ring. With `registered`
/// false (the io_uring is already closed) it only unmaps.
void cu_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries, unsigned short group, int registered);

/// Gives buffer `id` (at `address`, `length` bytes) back to the kernel.
static inline void cu_buf_ring_give(struct io_uring_buf_ring *br, unsigned entries, void *address, unsigned length, unsigned short id) {
    io_uring_buf_ring_add(br, address, length, id, io_uring_buf_ring_mask(entries), 0);
    io_uring_buf_ring_advance(br, 1);
}

/// The buffer id a completion carries (valid when IORING_CQE_F_BUFFER is set).
static inline unsigned short cu_cqe_buffer_id(unsigned flags) {
    return (unsigned short)(flags >> IORING_CQE_BUFFER_SHIFT);
}

/// Under ThreadSanitizer, stop (begin) and restart (end) recording the calling
/// thread's memory accesses; synchronization is still recorded. Elsewhere
/// these do nothing.
void cu_tsan_ignore_accesses_begin(void);
void cu_tsan_ignore_accesses_end(void);

#endif
