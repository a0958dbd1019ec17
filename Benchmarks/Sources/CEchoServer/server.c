// c-echo-server PORT [THREADS]: the hand-written C reference for the echo
// scenario. Per thread, one liburing ring: multishot accept, multishot recv
// into a provided-buffer ring, and a send of each received chunk. With more
// than one thread, each has its own listening socket on the port
// (SO_REUSEPORT), so the kernel spreads connections, as `uring-echo
// --rings N` does. Ends on SIGINT or SIGTERM.
#define _GNU_SOURCE
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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

// Each thread's own ring and buffers.
static __thread struct io_uring ring;
static __thread struct io_uring_buf_ring *buffer_ring;
static __thread char *buffers;

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

static int listen_on(int port, int shared) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (shared) setsockopt(listener, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 4096)) {
        perror("c-echo-server: bind/listen");
        exit(1);
    }
    return listener;
}

/// One thread's event loop on its own ring, accepting from `argument`'s
/// listening socket.
static void *serve(void *argument) {
    int listener = (int)(long)argument;
    int one = 1;
    struct io_uring_params params = {0};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.flags |= IORING_SETUP_CQSIZE;
    params.cq_entries = 8192;
    if (io_uring_queue_init_params(1024, &ring, &params) < 0) { perror("c-echo-server: ring"); exit(1); }

    size_t ring_size = BUFFERS * sizeof(struct io_uring_buf);
    buffer_ring = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)buffer_ring, .ring_entries = BUFFERS, .bgid = GROUP};
    if (io_uring_register_buf_ring(&ring, &reg, 0)) { fprintf(stderr, "c-echo-server: buffer ring\n"); exit(1); }
    io_uring_buf_ring_init(buffer_ring);
    buffers = aligned_alloc(4096, (size_t)BUFFERS * BUFFER_SIZE);
    for (unsigned i = 0; i < BUFFERS; i++) give_back(i);

    struct io_uring_sqe *sqe = sqe_or_flush();
    io_uring_prep_multishot_accept(sqe, listener, NULL, NULL, SOCK_CLOEXEC);
    sqe->user_data = tag(KIND_ACCEPT, listener, 0);
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
    return NULL;
}


int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: c-echo-server PORT [THREADS]\n"); return 2; }
    int port = atoi(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1) threads = 1;
    signal(SIGPIPE, SIG_IGN);
    // Every listener is bound before the first line, so a client that
    // waits for it reaches all of them.
    int listeners[64];
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) listeners[i] = listen_on(port, threads > 1);
    // Only this thread takes SIGINT and SIGTERM; when it stops, the
    // process exits with the other threads.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    for (int i = 1; i < threads; i++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, serve, (void *)(long)listeners[i])) { perror("c-echo-server: thread"); return 1; }
    }
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    struct sigaction action = {0};
    action.sa_handler = on_signal;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    printf("listening on 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);
    serve((void *)(long)listeners[0]);
    return 0;
}
