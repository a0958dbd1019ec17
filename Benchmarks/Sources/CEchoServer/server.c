// c-echo-server PORT: the hand-written C reference for the echo scenario.
// One liburing ring: multishot accept, multishot recv into a provided-buffer
// ring, and a send of each received chunk. Ends on SIGINT or SIGTERM.
#define _GNU_SOURCE
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUFFERS = 1024, BUFFER_SIZE = 16384, GROUP = 7 };
enum { KIND_ACCEPT = 1, KIND_RECV = 2, KIND_SEND = 3 };

static volatile sig_atomic_t stopping;
static void on_signal(int number) { (void)number; stopping = 1; }

static struct io_uring ring;
static struct io_uring_buf_ring *buffer_ring;
static char *buffers;

static inline unsigned long long tag(int kind, int fd, unsigned buffer) {
    return ((unsigned long long)kind << 56) | ((unsigned long long)buffer << 32) | (unsigned)fd;
}

static struct io_uring_sqe *sqe_or_flush(void) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static void arm_recv(int fd) {
    struct io_uring_sqe *sqe = sqe_or_flush();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = GROUP;
    sqe->user_data = tag(KIND_RECV, fd, 0);
}

static void give_back(unsigned id) {
    io_uring_buf_ring_add(buffer_ring, buffers + (size_t)id * BUFFER_SIZE, BUFFER_SIZE, id,
                          io_uring_buf_ring_mask(BUFFERS), 0);
    io_uring_buf_ring_advance(buffer_ring, 1);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: c-echo-server PORT\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction action = {0};
    action.sa_handler = on_signal;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 4096)) {
        perror("c-echo-server: bind/listen");
        return 1;
    }
    struct io_uring_params params = {0};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.flags |= IORING_SETUP_CQSIZE;
    params.cq_entries = 8192;
    if (io_uring_queue_init_params(1024, &ring, &params) < 0) { perror("c-echo-server: ring"); return 1; }

    size_t ring_size = BUFFERS * sizeof(struct io_uring_buf);
    buffer_ring = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)buffer_ring, .ring_entries = BUFFERS, .bgid = GROUP};
    if (io_uring_register_buf_ring(&ring, &reg, 0)) { fprintf(stderr, "c-echo-server: buffer ring\n"); return 1; }
    io_uring_buf_ring_init(buffer_ring);
    buffers = aligned_alloc(4096, (size_t)BUFFERS * BUFFER_SIZE);
    for (unsigned i = 0; i < BUFFERS; i++) give_back(i);

    struct io_uring_sqe *sqe = sqe_or_flush();
    io_uring_prep_multishot_accept(sqe, listener, NULL, NULL, SOCK_CLOEXEC);
    sqe->user_data = tag(KIND_ACCEPT, listener, 0);
    printf("listening on 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);

    while (!stopping) {
        int ret = io_uring_submit_and_wait(&ring, 1);
        if (ret < 0 && ret != -EINTR) break;
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            int kind = (int)(cqe->user_data >> 56);
            int fd = (int)(cqe->user_data & 0xffffffff);
            int more = cqe->flags & IORING_CQE_F_MORE;
            if (kind == KIND_ACCEPT) {
                if (cqe->res >= 0) {
                    setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    arm_recv(cqe->res);
                }
                if (!more) {
                    sqe = sqe_or_flush();
                    io_uring_prep_multishot_accept(sqe, listener, NULL, NULL, SOCK_CLOEXEC);
                    sqe->user_data = tag(KIND_ACCEPT, listener, 0);
                }
            } else if (kind == KIND_RECV) {
                if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
                    unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                    sqe = sqe_or_flush();
                    io_uring_prep_send(sqe, fd, buffers + (size_t)id * BUFFER_SIZE, (size_t)cqe->res, MSG_WAITALL);
                    sqe->user_data = tag(KIND_SEND, fd, id);
                    if (!more) arm_recv(fd);
                } else if (cqe->res == -ENOBUFS) {
                    arm_recv(fd);
                } else if (!more) {
                    close(fd);  // the peer closed, or an error
                }
            } else if (kind == KIND_SEND) {
                give_back((unsigned)((cqe->user_data >> 32) & 0xffffff));
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
    io_uring_queue_exit(&ring);
    close(listener);
    return 0;
}
