#ifndef SWIFT_URING_CSECCOMP_H
#define SWIFT_URING_CSECCOMP_H
/// Installs a seccomp filter on every thread of the process that makes
/// io_uring_setup fail with `error`. Returns 0, or -errno on failure.
int cseccomp_deny_io_uring_setup(int error);
#endif
