// echo-load PORT CONNECTIONS SIZE SECONDS [CPU|-] [SLOW]: the one load client
// of the echo scenario, the same for every server. Each connection sends SIZE
// bytes, waits until all SIZE come back, and repeats (ping-pong) for SECONDS.
// SLOW more connections (default 0) are hostile: they send 64 KiB blocks as
// fast as the server takes them and never read a byte back, so the server's
// echo to them stalls. Only the well-behaved connections are measured.
// Prints "messages=N seconds=S p50_us=X p99_us=Y errors=E".
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

struct connection {
    int fd;
    size_t sent, received;
    long long started;
};

enum { BUCKETS = 200000 };  // latency histogram: 1 µs buckets up to 200 ms
static unsigned long long histogram[BUCKETS];

static double percentile(unsigned long long total, double fraction) {
    unsigned long long want = (unsigned long long)(fraction * (double)total), seen = 0;
    for (int i = 0; i < BUCKETS; i++) {
        seen += histogram[i];
        if (seen > want) return i;
    }
    return BUCKETS;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: echo-load PORT CONNECTIONS SIZE SECONDS [CPU]\n"); return 2; }
    int port = atoi(argv[1]), count = atoi(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    double seconds = atof(argv[4]);
    int slow = argc > 6 ? atoi(argv[6]) : 0;
    if (argc > 5 && strcmp(argv[5], "-") != 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(argv[5]), &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    char *out = malloc(size), *in = malloc(size);
    memset(out, 'x', size);
    struct connection *connections = calloc((size_t)(count + slow), sizeof *connections);
    char *block = malloc(65536);
    memset(block, 'y', 65536);
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < count + slow; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) { perror("echo-load: connect"); return 1; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        connections[i].fd = fd;
        struct epoll_event event = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = (unsigned)i};
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
    }
    long long start = now_ns(), end = start + (long long)(seconds * 1e9);
    unsigned long long messages = 0, errors = 0;
    for (int i = 0; i < count; i++) connections[i].started = now_ns();
    struct epoll_event events[512];
    int running = 1;
    while (running) {
        int n = epoll_wait(epoll, events, 512, 100);
        long long now = now_ns();
        if (now >= end) running = 0;
        for (int e = 0; e < n; e++) {
            struct connection *c = &connections[events[e].data.u32];
            if (events[e].data.u32 >= (unsigned)count) {
                // A slow reader: send until the kernel refuses, read nothing.
                while (send(c->fd, block, 65536, MSG_NOSIGNAL) > 0) {}
                continue;
            }
            for (;;) {
                if (c->sent < size) {
                    ssize_t w = send(c->fd, out + c->sent, size - c->sent, MSG_NOSIGNAL);
                    if (w > 0) { c->sent += (size_t)w; continue; }
                    if (w < 0 && errno != EAGAIN) { errors++; break; }
                }
                ssize_t r = recv(c->fd, in, size, 0);
                if (r > 0) {
                    c->received += (size_t)r;
                    if (c->received >= size) {
                        long long t = now_ns();
                        long long us = (t - c->started) / 1000;
                        histogram[us < BUCKETS ? us : BUCKETS - 1]++;
                        messages++;
                        c->sent = c->received = 0;
                        c->started = t;
                        if (!running) break;
                    }
                    continue;
                }
                if (r == 0 || (r < 0 && errno != EAGAIN)) errors++;
                break;
            }
        }
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    printf("messages=%llu seconds=%.3f p50_us=%.0f p99_us=%.0f errors=%llu\n", messages, elapsed,
           percentile(messages, 0.50), percentile(messages, 0.99), errors);
    return errors ? 1 : 0;
}
