/*
 * The POSIX test port's pin, inline (mm/port.h, MM_PORT_INLINE; the host
 * builds pass this header's name). A thread bound to a CPU slot
 * (mm_port_bind_cpu; the benchmarks and some stress tests bind) owns it until
 * it unbinds, so its pin is one thread-local load, as a thread-local cache's
 * would be, and its unpin does nothing. Bound pins are not counted. Any other
 * thread takes the slot with an atomic exchange, out of line in
 * tests/host/mm_port_posix.c (below), which also checks that every unpin
 * matches its pin. The state is the word the pin loaded (the slot) or
 * MM_POSIX_UNBOUND: the unpin compares it with a constant, and the bound
 * pin makes up nothing. (A state of 1 for bound cost a constant in a
 * register and a test. An unpin that loaded the word again, after the
 * fast path's stores, ran the 16-byte pair at 7.6 ns in some runs and
 * 4.2 in others.)
 *
 * Included by mm/port.h after struct mm_pin, so it includes no mm/ header.
 */
#ifndef TESTS_HOST_MM_PORT_POSIX_PIN_H
#define TESTS_HOST_MM_PORT_POSIX_PIN_H

#include <stdbool.h>

/* This thread's slot while it is bound to one, else MM_POSIX_UNBOUND (the
 * slot itself, so that the pin need not adjust it; MM_PIN_NONE, so that
 * the fast paths' pin is the word itself). Local-exec: every user of this
 * port is an executable, so the load is one %fs-relative instruction
 * (GCC's default for PIE loaded the offset first). */
#define MM_POSIX_UNBOUND ((unsigned long)MM_PIN_NONE)
extern _Thread_local unsigned long mm_posix_bound_cpu
        __attribute__((tls_model("local-exec")));
/*
 * The unbound thread's pin and unpin (tests/host/mm_port_posix.c), called
 * through thunks that keep every register but %rax (general and SSE), so
 * that the compiler sees no call on the fast path and keeps its values in
 * caller-saved registers there, as it does around the kernel's pin. The
 * call skips the red zone, which the caller may use as a leaf.
 */
static inline __attribute__((always_inline)) struct mm_pin mm_port_pin(void)
{
	unsigned long b = mm_posix_bound_cpu;
	if (__builtin_expect(b != MM_POSIX_UNBOUND, 1))
		return (struct mm_pin){.state = b, .cpu = b};
	unsigned cpu;
	__asm__ volatile("lea -128(%%rsp), %%rsp\n\t"
	                 "call mm_posix_pin_thunk\n\t"
	                 "lea 128(%%rsp), %%rsp"
	                 : "=a"(cpu)
	                 :
	                 : "memory", "cc");
	return (struct mm_pin){.state = MM_POSIX_UNBOUND, .cpu = cpu};
}

static inline __attribute__((always_inline)) void mm_port_unpin(struct mm_pin p)
{
	if (__builtin_expect(p.state != MM_POSIX_UNBOUND, 1))
		return;
	unsigned long clobbered;
	__asm__ volatile("lea -128(%%rsp), %%rsp\n\t"
	                 "call mm_posix_unpin_thunk\n\t"
	                 "lea 128(%%rsp), %%rsp"
	                 : "=a"(clobbered)
	                 : "D"(p.cpu)
	                 : "memory", "cc");
	(void)clobbered;
}

/*
 * The fast paths' pin (mm/port.h): the word alone. A bound thread's is
 * its slot, which it owns, so there is nothing to end; an unbound
 * thread's is MM_PIN_NONE, whose magazines send the fast paths to their
 * slow ones, which pin with mm_port_pin. No test, no branch: the pair
 * 84 -> 74 instructions.
 */
#define MM_PORT_PIN_FAST
static inline __attribute__((always_inline)) struct mm_pin
mm_port_pin_fast(void)
{
	unsigned long b = mm_posix_bound_cpu;
	return (struct mm_pin){.state = b, .cpu = b};
}

static inline __attribute__((always_inline)) void
mm_port_unpin_fast(struct mm_pin p)
{
	(void)p;
}

#endif
