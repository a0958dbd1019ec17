#ifndef URING_BENCH_MALLOC_COUNTER_H
#define URING_BENCH_MALLOC_COUNTER_H
/// Heap allocations made by the whole process so far (malloc, calloc,
/// realloc, posix_memalign, aligned_alloc and memalign), counted by the
/// interposed allocator functions linked into uring-bench.
unsigned long long cmc_allocations(void);
#endif
