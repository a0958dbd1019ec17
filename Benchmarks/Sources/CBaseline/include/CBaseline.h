#ifndef URING_BENCH_CBASELINE_H
#define URING_BENCH_CBASELINE_H
/// Runs `total` NOPs through a fresh liburing ring (SINGLE_ISSUER and
/// DEFER_TASKRUN, like the Swift ring), `batch` per io_uring_submit_and_wait,
/// and returns the elapsed nanoseconds, or a negative errno.
long long cbaseline_nops(unsigned total, unsigned batch);
#endif
