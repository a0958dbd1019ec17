// A cancellation hook for Swift tasks without the standard library's
// wrapper: see CUringCancellation.h, and `TaskCancellationHook.swift` for
// why. The two runtime functions are exported by libswift_Concurrency; the
// standard library's own Swift declarations of them are internal, and
// declaring them again in Swift (`@_silgen_name`) draws the compiler's
// warning that runtime symbols are reserved. C states their calling
// convention exactly instead: both use the Swift convention, and the
// handler receives its context in the Swift context register.
#include "CUringCancellation.h"

#include <stddef.h>

typedef void (*cu_runtime_cancel_handler)(void *__attribute__((swift_context)) context) __attribute__((swiftcall));

extern __attribute__((swiftcall)) void *swift_task_addCancellationHandler(
    cu_runtime_cancel_handler handler, void *context);
extern __attribute__((swiftcall)) void swift_task_removeCancellationHandler(void *record);

static __attribute__((swiftcall)) void cu_fire_cancel_hook(void *__attribute__((swift_context)) context) {
    struct cu_cancel_hook *hook = context;
    hook->fire(hook->target, hook->value);
}

void *cu_task_add_cancel_hook(struct cu_cancel_hook *hook) {
    return swift_task_addCancellationHandler(cu_fire_cancel_hook, hook);
}

void cu_task_remove_cancel_hook(void *record) {
    if (record != NULL) swift_task_removeCancellationHandler(record);
}
