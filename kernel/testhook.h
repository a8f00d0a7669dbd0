/*
 * Test hooks: a function pointer at a race window in kernel code, which a
 * test sets to widen the window (a delay, a rendezvous with another CPU,
 * an event injected between two steps), so that a race shows on every run
 * instead of once in a while. Modelled on the Go runtime's testing hooks.
 *
 * A hook is declared in its module's _testing.h, defined with
 * TEST_HOOK_DEFINE next to the code it instruments, and called with
 * TEST_HOOK(hook, arg); arg says where the hook is (an address, a CPU id),
 * so a test can ignore calls that are not its own. The hooks exist only
 * when the kernel is built with KTEST_HOOKS=1 (the Makefile's default, as
 * every kernel carries its tests); otherwise TEST_HOOK compiles to nothing
 * and the tests that need a hook are left out.
 *
 * A hook runs in the context of the code that calls it, often with
 * interrupts off or a lock held: it may spin, but must not sleep or take
 * locks of the instrumented code.
 */
#ifndef KERNEL_TESTHOOK_H
#define KERNEL_TESTHOOK_H

#include <stdatomic.h>
#include <stdint.h>

#ifndef KTEST_HOOKS
#define KTEST_HOOKS 0
#endif

typedef void (*test_hook_fn)(uintptr_t arg);

#if KTEST_HOOKS
#define TEST_HOOK_DEFINE(hook) _Atomic test_hook_fn hook
#define TEST_HOOK(hook, arg)   test_hook_call_(&(hook), (arg))

static inline void test_hook_call_(_Atomic test_hook_fn *hook, uintptr_t arg)
{
	test_hook_fn fn = atomic_load_explicit(hook, memory_order_acquire);
	if (fn)
		fn(arg);
}
#else
#define TEST_HOOK_DEFINE(hook) extern _Atomic test_hook_fn hook
#define TEST_HOOK(hook, arg)   ((void)(arg))
#endif

#endif
