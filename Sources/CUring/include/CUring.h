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
#include <sys/wait.h>
#include <spawn.h>
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
#include <linux/openat2.h>
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
/// O_TMPFILE, which includes O_DIRECTORY (x86-64 and arm64 agree).
static const int CU_O_TMPFILE = 020200000;
static const int CU_AT_EMPTY_PATH = 0x1000;

/// Flag values that Swift cannot import from the enum-typed macros.
static const unsigned char CU_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const unsigned char CU_IOSQE_ASYNC = IOSQE_ASYNC;
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

/// Takes `count` free SQ entries at once (the caller checked that there is
/// room: see cu_sq_space) and returns the first one's position, for
/// cu_sq_entry.
static inline unsigned cu_sq_reserve(struct io_uring *ring, unsigned count) {
    unsigned first = ring->sq.sqe_tail;
    ring->sq.sqe_tail = first + count;
    return first;
}

/// The SQ entry at `position` (from cu_sq_reserve), zeroed, to be prepared
/// in place.
static inline struct io_uring_sqe *cu_sq_entry(struct io_uring *ring, unsigned position) {
    unsigned shift = (ring->flags & IORING_SETUP_SQE128) ? 1 : 0;
    struct io_uring_sqe *sqe = &ring->sq.sqes[(position & ring->sq.ring_mask) << shift];
    memset(sqe, 0, sizeof *sqe);
    return sqe;
}

/// Fills `count` free SQ entries from `images`, the i-th with `user_data` =
/// `base | i << shift`; the caller checked that there is room. Returns how
/// many were pushed.
static inline unsigned cu_sq_push_batch(struct io_uring *ring, const struct io_uring_sqe *images, unsigned count,
                                        uint64_t base, unsigned shift) {
    for (unsigned i = 0; i < count; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        if (!sqe) return i;
        *sqe = images[i];
        sqe->user_data = base | ((uint64_t)i << shift);
    }
    return count;
}

/// Enables a ring created with IORING_SETUP_R_DISABLED; the calling thread
/// becomes its single issuer. (liburing 2.3 declares io_uring_enable_rings
/// but does not export it.) Returns 0 or -errno.
int cu_enable_ring(struct io_uring *ring);

/// Names the calling thread (15 bytes at most); returns 0 or an errno.
int cu_thread_set_name(const char *name);
/// Marks the calling thread as some ring's thread, for good.
void cu_mark_ring_thread(void);
/// Whether the calling thread is some ring's thread (any ring's).
int cu_is_a_ring_thread(void);
/// Names another thread (at most 15 bytes are kept).
int cu_thread_set_name_of(pthread_t thread, const char *name);

/// Starts a POSIX thread running `body(context)`; returns 0 or an errno.
/// Starts a thread with an 8 MiB stack; `cpu` >= 0 pins it to that CPU.
int cu_thread_start(pthread_t *thread, int cpu, void *(*body)(void *), void *context);
/// The number of CPUs this process may run on (its affinity mask), at least 1.
int cu_usable_cpu_count(void);
/// Writes up to `capacity` CPU numbers this process may run on; returns how many.
int cu_usable_cpus(int *cpus, int capacity);

/// Opcodes newer than the 6.1 headers (the probe decides at run time).
#define CU_IORING_OP_BIND 56
#define CU_IORING_OP_LISTEN 57

/// bind(2) as a request (kernel 6.11+; liburing 2.3 has no helper).
static inline void cu_prep_bind(struct io_uring_sqe *sqe, int fd, const struct sockaddr *addr, socklen_t length) {
    io_uring_prep_rw(CU_IORING_OP_BIND, sqe, fd, addr, 0, length);
}

/// IORING_OP_FTRUNCATE (Linux 6.9), which liburing 2.3 has no helper for.
static inline void cu_prep_ftruncate(struct io_uring_sqe *sqe, int fd, long long length) {
    io_uring_prep_rw(55 /* IORING_OP_FTRUNCATE */, sqe, fd, 0, 0, (unsigned long long)length);
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

/// getsockopt(2) as a socket command (SOCKET_URING_OP_GETSOCKOPT, kernel
/// 6.7+, SOL_SOCKET options only); the result is the option's length.
static inline void cu_prep_getsockopt(struct io_uring_sqe *sqe, int fd, int level, int name, void *value, int length) {
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, 0, 0, 0);
    sqe->off = 2; /* cmd_op = SOCKET_URING_OP_GETSOCKOPT */
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


/// Bytes a control message with `length` bytes of data takes in a control
/// buffer (CMSG_SPACE), and the value of its header's length (CMSG_LEN).
static inline size_t cu_cmsg_space(size_t length) { return CMSG_SPACE(length); }
static inline size_t cu_cmsg_len(size_t length) { return CMSG_LEN(length); }

/// Walks a message's control messages: the first header, the one after
/// `header`, or NULL at the end (CMSG_FIRSTHDR, CMSG_NXTHDR).
static inline struct cmsghdr *cu_cmsg_first(struct msghdr *message) { return CMSG_FIRSTHDR(message); }
static inline struct cmsghdr *cu_cmsg_next(struct msghdr *message, struct cmsghdr *header) {
    return CMSG_NXTHDR(message, header);
}
/// The data of a control message (CMSG_DATA).
static inline unsigned char *cu_cmsg_data(struct cmsghdr *header) { return CMSG_DATA(header); }


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

/// Opcodes and flags newer than the 6.1 headers liburing 2.3 builds with.
#define CU_IORING_OP_READ_MULTISHOT 49
#define CU_IORING_OP_WAITID 50
#define CU_IORING_OP_FUTEX_WAIT 51
#define CU_IORING_OP_FUTEX_WAKE 52
#define CU_IORING_OP_FIXED_FD_INSTALL 54
static const unsigned CU_IORING_TIMEOUT_MULTISHOT = 1U << 6;
static const unsigned CU_IORING_TIMEOUT_ABS = IORING_TIMEOUT_ABS;
static const unsigned char CU_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const unsigned CU_FILE_INDEX_ALLOC = IORING_FILE_INDEX_ALLOC;

/// A repeating timeout: one completion per `interval` (with F_MORE) until
/// cancelled (kernel 6.4+).
static inline void cu_prep_repeating_timeout(struct io_uring_sqe *sqe, struct __kernel_timespec *interval) {
    io_uring_prep_timeout(sqe, interval, 0, CU_IORING_TIMEOUT_MULTISHOT);
}

/// A multishot read that takes buffers from provided-buffer group `group`
/// (kernel 6.7+; liburing 2.3 has no helper). Only for pollable files:
/// pipes, sockets, ttys, eventfds.
static inline void cu_prep_read_multishot(struct io_uring_sqe *sqe, int fd, unsigned short group) {
    io_uring_prep_rw(CU_IORING_OP_READ_MULTISHOT, sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
}

/// futex2 flags for a 32-bit futex private to this process.
static const unsigned CU_FUTEX2_U32_PRIVATE = 0x02 | 128;

/// Waits while `*word == expected` (kernel 6.7+).
static inline void cu_prep_futex_wait(struct io_uring_sqe *sqe, uint32_t *word, uint32_t expected) {
    io_uring_prep_rw(CU_IORING_OP_FUTEX_WAIT, sqe, (int)CU_FUTEX2_U32_PRIVATE, word, 0, expected);
    sqe->addr3 = 0xffffffffull; /* FUTEX_BITSET_MATCH_ANY */
}

/// Wakes at most `count` waiters on `word` (kernel 6.7+).
static inline void cu_prep_futex_wake(struct io_uring_sqe *sqe, uint32_t *word, uint32_t count) {
    io_uring_prep_rw(CU_IORING_OP_FUTEX_WAKE, sqe, (int)CU_FUTEX2_U32_PRIVATE, word, 0, count);
    sqe->addr3 = 0xffffffffull;
}

/// Blocks the calling thread while `*word == expected` (futex(2)); returns
/// 0, or -errno (EAGAIN when the word already differs, EINTR).
int cu_futex_wait_blocking(uint32_t *word, uint32_t expected);
/// Wakes at most `count` waiters on `word` (futex(2)); returns how many.
int cu_futex_wake(uint32_t *word, int count);

/// Sequentially consistent atomics on a futex word shared with the kernel.
static inline uint32_t cu_atomic_load32(uint32_t *word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }
static inline uint32_t cu_atomic_add32(uint32_t *word, uint32_t value) { return __atomic_fetch_add(word, value, __ATOMIC_SEQ_CST); }
static inline int cu_atomic_cas32(uint32_t *word, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(word, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/// waitid(2) as a request (kernel 6.7+): `idtype` P_PID, `options` WEXITED.
static inline void cu_prep_waitid(struct io_uring_sqe *sqe, int idtype, int id, siginfo_t *info, int options) {
    io_uring_prep_rw(CU_IORING_OP_WAITID, sqe, id, NULL, (unsigned)idtype, 0);
    sqe->file_index = (unsigned)options;
    sqe->addr2 = (uint64_t)(uintptr_t)info;
}

/// How a child ended, from a waitid result: its pid, CLD_* code and status.
static inline int cu_siginfo_pid(const siginfo_t *info) { return info->si_pid; }
static inline int cu_siginfo_code(const siginfo_t *info) { return info->si_code; }
static inline int cu_siginfo_status(const siginfo_t *info) { return info->si_status; }

/// Installs registered file `slot` as a normal descriptor, close-on-exec
/// (kernel 6.8+).
static inline void cu_prep_fixed_fd_install(struct io_uring_sqe *sqe, int slot) {
    io_uring_prep_rw(CU_IORING_OP_FIXED_FD_INSTALL, sqe, slot, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
}

/// Marks a request's descriptor as a registered-file slot.
static inline void cu_sqe_use_fixed_file(struct io_uring_sqe *sqe) { sqe->flags |= IOSQE_FIXED_FILE; }

/// Opens into a registered-file slot (`slot`, or CU_FILE_INDEX_ALLOC for any
/// free one, whose index is then the result).
static inline void cu_prep_open_direct(struct io_uring_sqe *sqe, int dfd, const char *path, int flags, mode_t mode, unsigned slot) {
    // A direct descriptor has no descriptor number, so close-on-exec means
    // nothing for it, and the kernel refuses the flag.
    io_uring_prep_openat(sqe, dfd, path, flags & ~O_CLOEXEC, mode);
    sqe->file_index = slot == IORING_FILE_INDEX_ALLOC ? IORING_FILE_INDEX_ALLOC : slot + 1;
}

/// Posts a completion with `res` = `value` and `user_data` = `data` on the
/// ring behind `ring_fd`.
static inline void cu_prep_msg_ring_data(struct io_uring_sqe *sqe, int ring_fd, unsigned value, uint64_t data) {
    io_uring_prep_msg_ring(sqe, ring_fd, value, data, 0);
}

/// Sends registered file `source` of this ring into slot `target` (or any
/// free slot, with CU_FILE_INDEX_ALLOC) of the ring behind `ring_fd`, which
/// then completes with `user_data` = `data` and `res` = the slot.
static inline void cu_prep_msg_ring_fd(struct io_uring_sqe *sqe, int ring_fd, int source, unsigned target, uint64_t data) {
    io_uring_prep_rw(IORING_OP_MSG_RING, sqe, ring_fd, (void *)(uintptr_t)IORING_MSG_SEND_FD, 0, data);
    sqe->addr3 = (uint64_t)source;
    sqe->file_index = target == IORING_FILE_INDEX_ALLOC ? IORING_FILE_INDEX_ALLOC : target + 1;
}

/// A descriptor for process `pid` (pidfd_open, 5.3; readable once it has
/// exited), or -errno.
int cu_pidfd_open(int pid);
/// waitid(P_PIDFD, pidfd, info, options): 0 or -errno.
int cu_waitid_pidfd(int pidfd, siginfo_t *info, int options);
/// pidfd_send_signal(pidfd, signal, NULL, 0) (5.1): 0 or -errno.
int cu_pidfd_send_signal(int pidfd, int signal);
/// posix_spawn_file_actions_addchdir_np (glibc 2.29), which Swift's Glibc
/// module does not show: the child changes to `path` before it runs.
int cu_spawn_file_actions_addchdir(posix_spawn_file_actions_t *actions, const char *path);
/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34): the child closes
/// every descriptor from `from` up.
int cu_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from);

/// pipe2(fds, O_CLOEXEC); 0 or -1 with errno (hidden without _GNU_SOURCE).
int cu_pipe(int fds[2]);
/// getdents64(2): fills `buffer` with `struct linux_dirent64` records; returns
/// the bytes filled, 0 at the end, or a negative errno.
long cu_getdents64(int fd, void *buffer, unsigned long length);
/// statx(2) as a system call; returns 0 or a negative errno.
int cu_statx(int directory, const char *path, int flags, unsigned mask, struct statx *info);
/// flistxattr(2): the names, each NUL-terminated; returns the bytes, or a negative errno.
long cu_flistxattr(int fd, char *names, unsigned long size);
/// fremovexattr(2); returns 0 or a negative errno.
int cu_fremovexattr(int fd, const char *name);
/// listxattr(2), following a final symbolic link: the names, each
/// NUL-terminated; returns the bytes, or a negative errno.
long cu_listxattr(const char *path, char *names, unsigned long size);
/// removexattr(2), following a final symbolic link; returns 0 or a negative errno.
int cu_removexattr(const char *path, const char *name);

/// Under ThreadSanitizer, stop (begin) and restart (end) recording the calling
/// thread's memory accesses; synchronization is still recorded. Elsewhere
/// these do nothing.
void cu_tsan_ignore_accesses_begin(void);
void cu_tsan_ignore_accesses_end(void);

#endif
