#ifndef URING_BENCH_CBASELINE_H
#define URING_BENCH_CBASELINE_H
/// Runs `total` NOPs through a fresh liburing ring (SINGLE_ISSUER and
/// DEFER_TASKRUN, like the Swift ring), `batch` per io_uring_submit_and_wait,
/// and returns the elapsed nanoseconds, or a negative errno.
long long cbaseline_nops(unsigned total, unsigned batch);
/// Copies `source` to `target` (created or truncated) with copy_file_range(2)
/// until end of file; returns the bytes copied, or a negative errno.
long long cbaseline_copy_file_range(const char *source, const char *target);
/// `total` 4 KiB reads at random aligned offsets of `path` (`file_size`
/// bytes), `depth` kept in flight on one liburing ring; O_DIRECT if `direct`.
/// Returns the elapsed nanoseconds or a negative errno.
long long cbaseline_randread(const char *path, int direct, unsigned depth, unsigned total, long long file_size);
/// The same reads as blocking pread(2) calls from `threads` threads.
long long cbaseline_pread_threads(const char *path, int direct, unsigned threads, unsigned total, long long file_size);
/// Reads `path` from start to end in `chunk`-byte reads, `depth` in flight
/// on one liburing ring. Returns the elapsed nanoseconds or a negative errno.
long long cbaseline_seqread(const char *path, unsigned chunk, unsigned depth);
/// The sum of `count` bytes: the one "hash" every smallfiles reader uses,
/// so they differ only in how they read.
unsigned long long cbaseline_byte_sum(const void *bytes, long long count);
/// Reads each of `count` files to its end, `parallel` files at once on one
/// liburing ring, `chunk` bytes per read (a short read ends a file), and
/// sums every byte into `*checksum`. Returns the elapsed nanoseconds or a
/// negative errno.
long long cbaseline_smallfiles_uring(const char *const *paths, unsigned count, unsigned parallel, unsigned chunk,
                                     unsigned long long *checksum);
/// The same with blocking read(2) on one thread, one file after another.
long long cbaseline_smallfiles_read(const char *const *paths, unsigned count, unsigned chunk,
                                    unsigned long long *checksum);
/// The same with blocking read(2) on `threads` threads, each taking every
/// `threads`-th file: what all the machine's cores do when each reads and
/// sums its own files (a reference, not a peer).
long long cbaseline_smallfiles_read_threads(const char *const *paths, unsigned count, unsigned chunk,
                                            unsigned threads, unsigned long long *checksum);
/// `threads` threads, thread i pinned to `cpus[i]`, each with a ring of its
/// own doing `total / threads` of the work: awaited NOPs one per submit
/// (`reads` 0) or random 4 KiB page-cache reads of `path`, `depth` in flight
/// (`reads` 1). Returns the wall-clock nanoseconds until all are done, or a
/// negative errno.
/// Writes up to `capacity` CPU numbers this process may run on (its
/// affinity mask, as RingGroup reads it); returns how many.
int cbaseline_usable_cpus(int *cpus, int capacity);

/// Copies the process's CPU mask (its first thread's) into `mask`; returns
/// the bytes copied, or -1.
int cbaseline_process_cpus(unsigned char *mask, int capacity);

/// Gives every thread of the process whose CPU mask differs from `mask`
/// that mask again; returns how many it changed, or -1. Threads inherit the
/// mask of the thread that starts them, so a pool thread started by a
/// pinned ring thread stays on that ring's CPU, and so would whatever a
/// later scenario runs on it.
int cbaseline_restore_cpus(const unsigned char *mask, int length);

long long cbaseline_ring_threads(int reads, const char *path, unsigned threads, unsigned depth, unsigned total,
                                 long long file_size, const int *cpus);
/// Lists the tree under `root` depth first with getdents64, describing each
/// entry with statx (not following links) and entering directories; sets
/// `*entries` to the number of entries. Returns the elapsed nanoseconds or
/// a negative errno.
long long cbaseline_walk(const char *root, long long *entries);
#endif
