#include "CBaseline.h"
#include <liburing.h>
#include <time.h>

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
