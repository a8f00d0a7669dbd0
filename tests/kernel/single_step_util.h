/* Single-stepping a call (RFLAGS.TF) for the kernel tests that interrupt
 * it at chosen instructions: the #DB hook (trap_set_debug_hook) runs after
 * every instruction until it clears TF in the frame or tracing stops. */
#ifndef TESTS_KERNEL_SINGLE_STEP_UTIL_H
#define TESTS_KERNEL_SINGLE_STEP_UTIL_H

#define RFLAGS_TF (1ull << 8)

/* Sets TF: the next instruction after popfq traps. */
static inline void single_step_on(void)
{
	__asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq" ::
	                         : "memory", "cc");
}

static inline void single_step_off(void)
{
	__asm__ volatile("pushfq\n\tandq $~0x100, (%%rsp)\n\tpopfq" ::
	                         : "memory", "cc");
}

#endif
