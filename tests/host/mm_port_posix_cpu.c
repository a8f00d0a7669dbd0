/*
 * tests/host/mm_port_posix_cpu.c: the POSIX port's CPUs (mm_port_posix.c
 * has the rest of the port). A thread says which CPU it is
 * (mm_port_set_cpu); a pin takes that CPU's slot exclusively, so threads
 * that say the same CPU take turns as a CPU's threads and interrupt
 * handlers would; a thread may bind a CPU for good (mm_port_bind_cpu),
 * after which its pins cost nothing (the benchmarks). The inline pin
 * (mm_port_posix_pin.h) calls the slow paths here through register-saving
 * thunks; mm_port_each_other_cpu visits the other slots one at a time.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdatomic.h>

#include "mm_port_posix.h"
#include "mm_port_posix_internal.h"

struct mm_posix_cpu_slot mm_posix_cpu_slots[MM_MAX_CPUS];

/* Waits for the CPU slot another thread holds. */
static __attribute__((noinline)) void pin_wait(unsigned cpu)
{
	do {
		while (atomic_load_explicit(&mm_posix_cpu_slots[cpu].busy,
		                            memory_order_relaxed))
			sched_yield();
	} while (atomic_exchange_explicit(&mm_posix_cpu_slots[cpu].busy, 1,
	                                  memory_order_acquire));
}

/* The unbound pin and unpin; called through the thunks below. */
unsigned mm_posix_pin_slow(void);
unsigned mm_posix_pin_slow(void)
{
	unsigned c = mm_posix_cpu_id;
	/* The outermost pin takes no mm lock's place (port.h): this one is
	 * a spin on the CPU's slot, which a lock's holder could wait for. */
	if (mm_posix_pin_depth == 0 && !cpu_bound)
		expect_no_lock("mm_port_pin (outermost)");
	mm_posix_chaos(); /* preempted before the pin */
	if (mm_posix_pin_depth++ == 0 && !cpu_bound &&
	    atomic_exchange_explicit(&mm_posix_cpu_slots[c].busy, 1,
	                             memory_order_acquire))
		pin_wait(c);
	mm_posix_chaos(); /* an interrupt while pinned */
	return c;
}

void mm_posix_unpin_slow(unsigned cpu);
void mm_posix_unpin_slow(unsigned cpu)
{
	if (mm_posix_pin_depth == 0 || cpu != mm_posix_cpu_id)
		mm_panic("mm_port_unpin without its pin");
	mm_posix_chaos();
	if (--mm_posix_pin_depth == 0 && !cpu_bound)
		atomic_store_explicit(&mm_posix_cpu_slots[mm_posix_cpu_id].busy,
		                      0, memory_order_release);
	mm_posix_chaos(); /* preempted, another thread on this CPU */
}

/*
 * mm_posix_pin_thunk and mm_posix_unpin_thunk call the two above keeping
 * every register but %rax: the other caller-saved general registers are
 * pushed, the stack aligned, and %xmm0-15 saved (the C callee and libc's
 * sched_yield may use them). The inline pin (mm_port_posix_pin.h) calls
 * them from asm, so its callers keep values in those registers across
 * the pin. The unpin's argument comes in %edi, as the C callee wants it.
 */
#define PIN_THUNK(name, target)                                     \
	__asm__(".text\n"                                           \
	        ".globl " #name "\n"                                \
	        ".type " #name ", @function\n" #name ":\n"          \
	        "	push %rbp\n"                                      \
	        "	mov %rsp, %rbp\n"                                 \
	        "	push %rcx\n	push %rdx\n	push %rsi\n	push "        \
	        "%rdi\n"                                            \
	        "	push %r8\n	push %r9\n	push %r10\n	push "          \
	        "%r11\n"                                            \
	        "	and $-16, %rsp\n"                                 \
	        "	sub $256, %rsp\n"                                 \
	        "	movdqu %xmm0, 0(%rsp)\n	movdqu %xmm1, 16(%rsp)\n" \
	        "	movdqu %xmm2, 32(%rsp)\n	movdqu %xmm3, "          \
	        "48(%rsp)\n"                                        \
	        "	movdqu %xmm4, 64(%rsp)\n	movdqu %xmm5, "          \
	        "80(%rsp)\n"                                        \
	        "	movdqu %xmm6, 96(%rsp)\n	movdqu %xmm7, "          \
	        "112(%rsp)\n"                                       \
	        "	movdqu %xmm8, 128(%rsp)\n	movdqu %xmm9, "         \
	        "144(%rsp)\n"                                       \
	        "	movdqu %xmm10, 160(%rsp)\n	movdqu %xmm11, "       \
	        "176(%rsp)\n"                                       \
	        "	movdqu %xmm12, 192(%rsp)\n	movdqu %xmm13, "       \
	        "208(%rsp)\n"                                       \
	        "	movdqu %xmm14, 224(%rsp)\n	movdqu %xmm15, "       \
	        "240(%rsp)\n"                                       \
	        "	call " #target "\n"                         \
	        "	movdqu 0(%rsp), %xmm0\n	movdqu 16(%rsp), %xmm1\n" \
	        "	movdqu 32(%rsp), %xmm2\n	movdqu 48(%rsp), "       \
	        "%xmm3\n"                                           \
	        "	movdqu 64(%rsp), %xmm4\n	movdqu 80(%rsp), "       \
	        "%xmm5\n"                                           \
	        "	movdqu 96(%rsp), %xmm6\n	movdqu 112(%rsp), "      \
	        "%xmm7\n"                                           \
	        "	movdqu 128(%rsp), %xmm8\n	movdqu 144(%rsp), "     \
	        "%xmm9\n"                                           \
	        "	movdqu 160(%rsp), %xmm10\n	movdqu 176(%rsp), "    \
	        "%xmm11\n"                                          \
	        "	movdqu 192(%rsp), %xmm12\n	movdqu 208(%rsp), "    \
	        "%xmm13\n"                                          \
	        "	movdqu 224(%rsp), %xmm14\n	movdqu 240(%rsp), "    \
	        "%xmm15\n"                                          \
	        "	lea -64(%rbp), %rsp\n"                            \
	        "	pop %r11\n	pop %r10\n	pop %r9\n	pop "             \
	        "%r8\n"                                             \
	        "	pop %rdi\n	pop %rsi\n	pop %rdx\n	pop "            \
	        "%rcx\n"                                            \
	        "	pop %rbp\n"                                       \
	        "	ret\n"                                            \
	        ".size " #name ", . - " #name "\n")

PIN_THUNK(mm_posix_pin_thunk, mm_posix_pin_slow);
PIN_THUNK(mm_posix_unpin_thunk, mm_posix_unpin_slow);

void mm_port_bind_cpu(unsigned cpu)
{
	if (mm_posix_pin_depth || cpu_bound)
		mm_panic("mm_port_bind_cpu(%u) while pinned or bound to CPU %u",
		         cpu, mm_posix_cpu_id);
	mm_posix_cpu_id = cpu % MM_MAX_CPUS;
	/* Before the slot: mm_port_each_other_cpu, which may be waiting
	 * for it, sees that it will not come back. */
	atomic_store_explicit(&mm_posix_cpu_slots[mm_posix_cpu_id].bound, true,
	                      memory_order_seq_cst);
	if (atomic_exchange_explicit(&mm_posix_cpu_slots[mm_posix_cpu_id].busy,
	                             1, memory_order_acquire))
		pin_wait(mm_posix_cpu_id);
	mm_posix_bound_cpu = mm_posix_cpu_id;
}

void mm_port_unbind_cpu(void)
{
	if (mm_posix_pin_depth || !cpu_bound)
		mm_panic("mm_port_unbind_cpu while pinned or not bound");
	mm_posix_bound_cpu = MM_POSIX_UNBOUND;
	atomic_store_explicit(&mm_posix_cpu_slots[mm_posix_cpu_id].busy, 0,
	                      memory_order_release);
	atomic_store_explicit(&mm_posix_cpu_slots[mm_posix_cpu_id].bound, false,
	                      memory_order_release);
}

static _Atomic bool each_other_refused;

void mm_port_refuse_each_other_cpu(bool refuse)
{
	atomic_store(&each_other_refused, refuse);
}

/* Takes slot cpu as a pin would, unless a thread is bound to it (and so
 * holds it for good): false then. */
static bool slot_take_unbound(unsigned cpu)
{
	for (;;) {
		if (atomic_load_explicit(&mm_posix_cpu_slots[cpu].bound,
		                         memory_order_seq_cst))
			return false;
		if (!atomic_exchange_explicit(&mm_posix_cpu_slots[cpu].busy, 1,
		                              memory_order_acquire))
			return true;
		sched_yield();
	}
}

/*
 * Every other slot in turn, held as a pin holds it, so no thread is in
 * that CPU's cache meanwhile. A slot a bound thread holds is passed by (a
 * bound thread's fast path does not take its slot, so nothing says when
 * it is out of its cache), and the call returns false for it: mm/ then
 * knows that CPU's caches were not flushed or checked. One slot at a time:
 * nothing is held while a slot is waited for, so no thread waits on this
 * one in turn.
 */
bool mm_port_each_other_cpu(void (*fn)(unsigned cpu, void *arg), void *arg)
{
	mm_posix_expect_can_sleep("mm_port_each_other_cpu");
	if (atomic_load(&each_other_refused))
		return false;
	bool all = true;
	for (unsigned c = 0; c < MM_MAX_CPUS; c++) {
		if (c == mm_posix_cpu_id)
			continue;
		if (!slot_take_unbound(c)) {
			all = false;
			continue;
		}
		mm_posix_chaos();
		fn(c, arg);
		atomic_store_explicit(&mm_posix_cpu_slots[c].busy, 0,
		                      memory_order_release);
		mm_posix_chaos();
	}
	return all;
}
