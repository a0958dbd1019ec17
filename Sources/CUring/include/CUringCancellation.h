#ifndef CURING_CANCELLATION_H
#define CURING_CANCELLATION_H

#include <stdint.h>

/// What a task's cancellation calls while a hook is registered:
/// `fire(target, value)`. The memory must stay valid and unchanged until
/// the hook is removed.
struct cu_cancel_hook {
    void (*_Nonnull fire)(void *_Nullable target, uint64_t value);
    void *_Nullable target;
    uint64_t value;
};

/// Registers `hook` with the current task, through the concurrency
/// runtime's own cancellation-record entry point (the one the standard
/// library's `withTaskCancellationHandler` uses). Call from an async
/// function only. The record comes from the task's stack-ordered
/// allocator: whatever the task allocates after this must be freed before
/// the record is removed, and nothing it allocated before may be freed
/// until then. Returns NULL if the task was already cancelled: the hook
/// has then run, on this thread, and nothing is registered.
void *_Nullable cu_task_add_cancel_hook(struct cu_cancel_hook *_Nonnull hook);

/// Removes a hook registered by `cu_task_add_cancel_hook`; once this
/// returns the hook is not running and will not run. Accepts NULL.
void cu_task_remove_cancel_hook(void *_Nullable record);

#endif
