#ifndef URING_BENCH_CBASELINE_H
#define URING_BENCH_CBASELINE_H
/// Runs `total` NOPs through a fresh liburing ring (SINGLE_ISSUER and
/// DEFER_TASKRUN, like the Swift ring), `batch` per io_uring_submit_and_wait,
/// and returns the elapsed nanoseconds, or a negative errno.
long long cbaseline_nops(unsigned total, unsigned batch);
/// Copies `source` to `target` (created or truncated) with copy_file_range(2)
/// until end of file; returns the bytes copied, or a negative errno.
long long cbaseline_copy_file_range(const char *source, const char *target);
#endif
