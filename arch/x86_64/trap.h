/*
 * Exceptions: the IDT, the register frame the entry stubs save, the report
 * printed for an unexpected exception, and the expected-fault hook.
 *
 * Every exception the kernel does not expect panics with its report. An
 * NMI is expected only from a panicking CPU (which stops the others with
 * it): any other (LINT1, a watchdog, a board's button) is reported and
 * panics, as the kernel has no NMI handler of its own to give it to.
 */
#ifndef ARCH_X86_64_TRAP_H
#define ARCH_X86_64_TRAP_H

#include <stdbool.h>
#include <stdint.h>

/* Saved by isr.S, lowest address first. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	/* Pushed by the CPU: */
	uint64_t rip, cs, rflags, rsp, ss;
};

_Static_assert(sizeof(struct trap_frame) == 22 * 8, "isr.S frame layout");

#define VEC_DE  0
#define VEC_DB  1
#define VEC_NMI 2
#define VEC_BP  3
#define VEC_UD  6
#define VEC_DF  8
#define VEC_GP  13
#define VEC_PF  14
#define VEC_MC  18

/* #PF error code bits. */
#define PF_PRESENT (1u << 0)
#define PF_WRITE   (1u << 1)
#define PF_USER    (1u << 2)
#define PF_RSVD    (1u << 3)
#define PF_FETCH   (1u << 4)

/* Installs the IDT on this CPU; gdt_init_cpu must have run. */
void idt_init_cpu(void);

/* Installs the IDT on the boot CPU with no IST stack for any vector, after
 * gdt_init_boot: from the start of kmain every exception is reported by
 * the kernel, not taken to the firmware's IDT (unmapped once paging_init
 * switches page tables: a triple fault). A #DF then runs on the faulting
 * stack, so a stack overflow still resets the machine until
 * idt_init_cpu. */
void idt_init_boot(void);

/*
 * Gives #DB (a single step with RFLAGS.TF, a debug register's hit) to fn
 * instead of the panic; NULL takes it back. fn runs with interrupts off
 * and may change the frame the trapped code resumes with (TF included).
 * For the tests that step through code; one at a time.
 */
void trap_set_debug_hook(void (*fn)(struct trap_frame *f));

/* Called by isr.S for every exception. */
void trap_dispatch(struct trap_frame *f);

/* The mnemonic of an exception vector, e.g. "#PF". */
const char *trap_name(unsigned vector);

/*
 * The expected-fault hook. fault_catch_arm() works like setjmp: it returns
 * 0 when armed; if an exception then hits this CPU before
 * fault_catch_disarm(), the handler records it in the struct and execution
 * resumes with fault_catch_arm() returning 1 (the hook is then disarmed).
 * For tests and for probing memory; thread context, one hook per CPU. A
 * fault in an interrupt handler is never caught (it panics as usual),
 * even while the thread it interrupted has a hook armed. The resume
 * takes RFLAGS as fault_catch_arm saw them (interrupts on or off, the
 * direction flag clear), whatever the code between changed; it takes
 * back no lock that code took: a caught section takes none.
 */
struct fault_catch {
	/* Saved by fault_catch_arm (offsets used by fault.S): */
	uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip, rflags;
	/* Filled in by the handler: */
	uint64_t vector, error, cr2, fault_rip;
};

__attribute__((returns_twice)) int fault_catch_arm(struct fault_catch *fc);
void fault_catch_disarm(struct fault_catch *fc);

#endif
