/*
 * The exception path: each kind of fault reaches the handler with the
 * right vector, error code and RIP, and the expected-fault hook resumes
 * the test with its registers intact.
 */
#include "arch/x86_64/layout.h"
#include "arch/x86_64/trap.h"
#include "arch/x86_64/trap_testing.h"
#include "kernel/percpu.h"
#include "kernel/ktest.h"
#include "kernel/string.h"

KTEST(trap, invalid_opcode_is_caught)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		__asm__ volatile("ud2");
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "ud2 did not trap");
		return;
	}
	KEXPECT_EQ(fc.vector, VEC_UD);
	KEXPECT_STREQ(trap_name(VEC_UD), "#UD invalid opcode");
}

KTEST(trap, divide_error_is_caught)
{
	/* The divide is the instruction, not C's: a division by zero is
	 * undefined in C, so a compiler may assume the divisor is not zero
	 * (a UBSan build traps with #UD before the divide). */
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		uint32_t eax = 10, edx = 0, zero = 0;
		__asm__ volatile("divl %2" : "+a"(eax), "+d"(edx) : "c"(zero));
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "no #DE");
		return;
	}
	KEXPECT_EQ(fc.vector, VEC_DE);
}

KTEST(trap, non_canonical_access_is_gp)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		(void)*(volatile uint64_t *)0x0000800000000000ull;
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "no #GP");
		return;
	}
	KEXPECT_EQ(fc.vector, VEC_GP);
	KEXPECT_EQ(fc.error, 0);
}

KTEST(trap, callee_saved_registers_survive_a_catch)
{
	/* Values live across the fault in callee-saved registers or on the
	 * stack must be as they were when the hook was armed. */
	volatile uint64_t marker = 0xfeedface;
	register uint64_t r12 __asm__("r12") = 0x1234;
	__asm__ volatile("" : "+r"(r12));
	struct fault_catch fc;
	int caught = fault_catch_arm(&fc);
	__asm__ volatile("" : "+r"(r12));
	volatile uintptr_t near_null = 16;
	if (!caught) {
		(void)*(volatile int *)near_null;
		fault_catch_disarm(&fc);
	}
	KEXPECT_EQ(caught, 1);
	KEXPECT_EQ(r12, 0x1234);
	KEXPECT_EQ(marker, 0xfeedface);
	KEXPECT(fc.fault_rip >= (uintptr_t)__text_start &&
	        fc.fault_rip < (uintptr_t)__text_end);
}

KTEST(trap, disarmed_hook_does_not_catch_later)
{
	struct fault_catch fc;
	KEXPECT_EQ(fault_catch_arm(&fc), 0);
	fault_catch_disarm(&fc);
	KEXPECT(this_cpu()->fault_catch == NULL);
}

#ifdef KTEST_FAIL_DEMO
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"

/*
 * Built only with KTEST_FAIL_DEMO=1: a fault in an interrupt handler is
 * that handler's bug, reported and fatal, even while the thread it
 * interrupted has its expected-fault hook armed. Resuming the thread
 * there would abandon the interrupt: no EOI, irq_depth left raised, and
 * the thread running on with interrupts off. Run at -smp 1, so that the
 * faulting tick interrupts this thread.
 */
static void faulting_tick(void)
{
	atomic_store(&sched_tick_hook, NULL);
	(void)*(volatile int *)0xbad000;
}

KTEST(demo, fault_in_interrupt_under_a_catch)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		uint64_t t0 = *(volatile uint64_t *)&this_cpu()->ticks;
		atomic_store(&sched_tick_hook, faulting_tick);
		while (*(volatile uint64_t *)&this_cpu()->ticks < t0 + 100)
			cpu_pause();
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "no tick faulted");
		return;
	}
	ktest_fail_at(__FILE__, __LINE__,
	              "the thread's hook took the interrupt handler's "
	              "fault at %#lx (irq depth now %d)",
	              (unsigned long)fc.fault_rip, this_cpu()->irq_depth);
}
#endif

#ifdef KTEST_FAIL_DEMO
/*
 * Built only with KTEST_FAIL_DEMO=1: a fault inside the exception report
 * (here its read of the current thread's name, the thread pointer being
 * corrupt) must end in one panic naming both faults, not in the report
 * faulting again and again until the stack runs out.
 */
KTEST(demo, fault_while_reporting_a_fault)
{
	cpu_cli(); /* no tick may look at the corrupt thread pointer */
	this_cpu()->current = (struct thread *)(uintptr_t)0xbad000;
	__asm__ volatile("ud2");
}
#endif

#ifdef KTEST_FAIL_DEMO
#include "tests/kernel/fault_util.h"

/*
 * Built only with KTEST_FAIL_DEMO=1: a #DF that is not a stack overflow,
 * with CR2 left pointing into a guard page by an earlier, caught #PF.
 * A push through a non-canonical RSP faults (#SS or #GP, no CR2 update),
 * and delivering that fault on the same stack faults again: a #DF. It
 * must be reported as the #DF it is, not as "stack overflow" because of
 * the stale CR2.
 */
KTEST(demo, double_fault_with_a_stale_guard_cr2)
{
	KASSERT(read_faults_at((volatile uint8_t *)__boot_stack_guard));
	cpu_cli(); /* no tick between the two instructions */
	__asm__ volatile("movq %0, %%rsp\n\tpushq $0"
	                 :
	                 : "r"(0x8000000000001000ull)
	                 : "memory");
}

/*
 * Built only with KTEST_FAIL_DEMO=1: a push with RSP at the very bottom
 * of a stack (the boot stack's), under an armed expected-fault hook. The
 * push faults in the guard page below, and delivering that #PF on the
 * same stack faults again: a #DF whose RSP is just above the guard,
 * which lies at RSP - 8. It must be reported as a stack overflow, and
 * not resumed by the hook: a #DF leaves nothing to resume.
 */
KTEST(demo, push_at_the_bottom_of_a_stack_under_a_catch)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		cpu_cli(); /* no tick on the boot stack's last bytes */
		__asm__ volatile("movq %0, %%rsp\n\tpushq $0"
		                 :
		                 : "r"(__boot_stack_bottom)
		                 : "memory");
	}
	ktest_fail_at(__FILE__, __LINE__, "the double fault was resumed");
}

/*
 * Built only with KTEST_FAIL_DEMO=1: an exception taken with RSP 32 bytes
 * above a stack's guard page. The instruction pushes nothing; the CPU's
 * own frame (RSP aligned down to 16, then 40 bytes) reaches the guard,
 * and that #PF in delivery makes a #DF whose RSP is neither in the guard
 * nor 8 bytes above it. It must be reported as a stack overflow; until a
 * review it was a plain "#DF double fault".
 */
KTEST(demo, exception_frame_at_the_bottom_of_a_stack)
{
	cpu_cli(); /* no tick on the boot stack's last bytes */
	__asm__ volatile("movq %0, %%rsp\n\tud2"
	                 :
	                 : "r"(__boot_stack_bottom + 32)
	                 : "memory");
}
#endif

#ifdef KTEST_FAIL_DEMO
static void sleep_for_good(void *arg)
{
	for (;;)
		thread_sleep_ns(1000000000ull);
}

static struct thread_handle foreign;

/* Pushes with RSP at the bottom of foreign's stack (its dead end: it
 * sleeps near its top), as code run on a stack not its thread's would. */
static void push_at_the_bottom_of_foreigns_stack(void *arg)
{
	cpu_cli(); /* no tick on foreign's stack */
	__asm__ volatile("movq %0, %%rsp\n\tpushq $0"
	                 :
	                 : "r"(foreign.t->stack.bottom)
	                 : "memory");
}

/*
 * Built only with KTEST_FAIL_DEMO=1: a thread running on another thread's
 * stack overflows it (a #DF, the guard at RSP - 8). The overflow is that
 * thread's stack's, and the panic says so; until a review it blamed the
 * running thread's own stack, which is whole.
 */
KTEST(demo, overflow_of_another_threads_stack)
{
	foreign =
	        thread_create("foreign", sleep_for_good, NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(foreign));
	struct thread_handle t =
	        thread_create("runner", push_at_the_bottom_of_foreigns_stack,
	                      NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
}

static struct kstack landing;

/* A frame too big for the slot: RSP jumps past this thread's guard into
 * another stack (landing), and a write into its own guard follows. */
static void jump_past_the_guard(void *arg)
{
	cpu_cli(); /* no tick on the landing stack */
	__asm__ volatile("movq %0, %%rsp\n\tmovb $1, (%1)"
	                 :
	                 : "r"(landing.top - 64),
	                   "r"(thread_current()->stack.guard + 64)
	                 : "memory");
}

/*
 * Built only with KTEST_FAIL_DEMO=1: a thread whose stack pointer went
 * past its guard page into another stack's slot, writing into its own
 * guard: its overflow, reported as such, though RSP is on another stack.
 */
KTEST(demo, overflow_past_the_guard_into_another_stack)
{
	KASSERT(kstack_alloc(8, &landing));
	struct thread_handle t =
	        thread_create("far", jump_past_the_guard, NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(t));
	thread_join(t);
}

/*
 * Built only with KTEST_FAIL_DEMO=1: a write through a stray pointer into
 * another thread's guard page, from a thread well inside its own stack.
 * It must be reported as a fault in that thread's guard, naming it, not
 * as the faulting thread's stack overflow (as it was until a review).
 */
KTEST(demo, write_to_another_threads_guard_page)
{
	struct thread_handle victim =
	        thread_create("victim", sleep_for_good, NULL, THREAD_ANY_CPU);
	KASSERT(thread_handle_ok(victim));
	*(volatile uint8_t *)(victim.t->stack.guard + 64) = 1;
}
#endif

/* Vectors 32 and up are interrupts, each named so; the table of names
 * ends at 31. */
KTEST(trap, vectors_past_the_exceptions_are_interrupts)
{
	KEXPECT_STREQ(trap_name(31), "reserved 31");
	KEXPECT_STREQ(trap_name(32), "interrupt");
	KEXPECT_STREQ(trap_name(255), "interrupt");
}

/* Disarming a hook that a fault already used leaves the next one armed:
 * only the hook passed is disarmed. */
KTEST(trap, stale_disarm_leaves_a_later_hook_armed)
{
	struct fault_catch first, second;
	volatile uintptr_t near_null = 24;
	if (fault_catch_arm(&first) == 0) {
		(void)*(volatile int *)near_null;
		fault_catch_disarm(&first);
		ktest_fail_at(__FILE__, __LINE__, "no #PF");
		return;
	}
	KEXPECT(this_cpu()->fault_catch == NULL);
	KEXPECT_EQ(fault_catch_arm(&second), 0);
	fault_catch_disarm(&first);
	KEXPECT(this_cpu()->fault_catch == &second);
	fault_catch_disarm(&second);
	KEXPECT(this_cpu()->fault_catch == NULL);
}

/* The callee-saved registers are put back as they were at the arm, not
 * left as the faulting code had them: the code between the arm and the
 * fault here changes every one of them. Each is read right after the
 * arm returns, both times, by the same instructions. */
KTEST(trap, callee_saved_registers_changed_before_the_fault_are_restored)
{
	static uint64_t regs[2][5];
	struct fault_catch fc;
	volatile uintptr_t bad = 32;
	int caught = fault_catch_arm(&fc);
	__asm__ volatile("mov %%rbx, 0(%0)\n\t"
	                 "mov %%r12, 8(%0)\n\t"
	                 "mov %%r13, 16(%0)\n\t"
	                 "mov %%r14, 24(%0)\n\t"
	                 "mov %%r15, 32(%0)"
	                 :
	                 : "D"(regs[caught != 0])
	                 : "memory");
	if (!caught) {
		__asm__ volatile("mov $0x5a5a5a5a, %%ebx\n\t"
		                 "mov $0x5a5a5a5a, %%r12d\n\t"
		                 "mov $0x5a5a5a5a, %%r13d\n\t"
		                 "mov $0x5a5a5a5a, %%r14d\n\t"
		                 "mov $0x5a5a5a5a, %%r15d\n\t"
		                 "movl (%0), %%eax"
		                 :
		                 : "c"(bad)
		                 : "rax", "rbx", "r12", "r13", "r14", "r15",
		                   "memory");
		fault_catch_disarm(&fc);
		ktest_fail_at(__FILE__, __LINE__, "no #PF");
		return;
	}
	for (int i = 0; i < 5; i++)
		KEXPECT_EQ(regs[1][i], regs[0][i]);
}

#if KTEST_HOOKS
/* The IDT is one table for every CPU, filled by the boot CPU alone (its
 * gates without IST stacks, then with them); a CPU coming online only
 * loads it. Each AP filled it again while the CPUs already online took
 * their timer ticks through it, and the compiler writes a gate as zeros
 * first: a tick in that window took #NP and panicked (review). */
KTEST(trap, the_idt_is_filled_by_the_boot_cpu_alone)
{
	KEXPECT_EQ(idt_testing_fills(), 2);
	idt_init_cpu(); /* as a CPU coming online: loads, writes nothing */
	KEXPECT_EQ(idt_testing_fills(), 2);
	KEXPECT(read_rflags() & RFLAGS_IF); /* ticks still come */
}
#endif

/* A caught fault resumes with the flags fault_catch_arm saw: the code
 * between may turn interrupts off or set the direction flag (which the
 * ABI wants clear at every call) and fault before it puts them back.
 * Until a review the resume kept the faulting point's. */
KTEST(trap, a_caught_fault_resumes_with_the_flags_of_its_arm)
{
	uint64_t before = read_rflags();
	cpu_sti();
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		__asm__ volatile("cli\n\tstd\n\tud2" ::: "memory", "cc");
		fault_catch_disarm(&fc);
	}
	uint64_t after = read_rflags();
	__asm__ volatile("cld" ::: "cc");
	if (!(before & RFLAGS_IF))
		cpu_cli();
	KEXPECT_EQ(fc.vector, VEC_UD);
	KEXPECT_EQ(after & RFLAGS_IF, RFLAGS_IF);
	KEXPECT_EQ(after & RFLAGS_DF, 0);
}
