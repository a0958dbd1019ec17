#define _GNU_SOURCE
#include "CBaseline.h"
#include <liburing.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long cbaseline_nops(unsigned total, unsigned batch) {
    struct io_uring ring;
    struct io_uring_params params = {0};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int ret = io_uring_queue_init_params(256, &ring, &params);
    if (ret < 0) return ret;
    long long start = now_ns();
    unsigned done = 0;
    while (done < total) {
        unsigned n = total - done < batch ? total - done : batch;
        for (unsigned i = 0; i < n; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_nop(sqe);
            sqe->user_data = i;
        }
        ret = io_uring_submit_and_wait(&ring, n);
        if (ret < 0) { io_uring_queue_exit(&ring); return ret; }
        unsigned seen = 0;
        while (seen < n) {
            struct io_uring_cqe *cqe;
            unsigned head, count = 0;
            io_uring_for_each_cqe(&ring, head, cqe) { count++; }
            if (count == 0) { io_uring_wait_cqe(&ring, &cqe); continue; }
            io_uring_cq_advance(&ring, count);
            seen += count;
        }
        done += n;
    }
    long long elapsed = now_ns() - start;
    io_uring_queue_exit(&ring);
    return elapsed;
}

long long cbaseline_copy_file_range(const char *source, const char *target) {
    int input = open(source, O_RDONLY | O_CLOEXEC);
    if (input < 0) return -errno;
    int output = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (output < 0) { int code = errno; close(input); return -code; }
    long long total = 0;
    for (;;) {
        ssize_t n = copy_file_range(input, NULL, output, NULL, 1 << 30, 0);
        if (n < 0) { int code = errno; close(input); close(output); return -code; }
        if (n == 0) break;
        total += n;
    }
    close(input);
    if (close(output) != 0) return -errno;
    return total;
}
