/*
 * The IDT and the exception handler. Every exception lands in
 * trap_dispatch: an armed expected-fault hook takes it and resumes the
 * code that armed it; anything else is reported (vector, error code, RIP,
 * RSP, CR2, general registers, backtrace) and the kernel panics. A fault
 * in that report or its panic is not reported in turn (it would fault
 * again, each report on the stack of the last, until a double fault and
 * then for good): it panics once, naming both faults.
 */
#include "trap.h"
#include "trap_testing.h"

#include "cpu.h"
#include "gdt.h"
#include "kernel/addrinfo.h"
#include "kernel/percpu.h"
#include "kernel/irq.h"
#include "kernel/kstack.h"
#include "kernel/ksyms.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/ktest_kernel.h"
#include "kernel/thread.h"
#include "serial.h"

struct idt_entry {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct idt_entry) == 16, "IDT gate layout");

extern const uint64_t isr_stub_table[256];

static struct idt_entry idt[256] __attribute__((aligned(16)));

static const char *const names[32] = {
        "#DE divide error",
        "#DB debug",
        "NMI",
        "#BP breakpoint",
        "#OF overflow",
        "#BR bound range",
        "#UD invalid opcode",
        "#NM device not available",
        "#DF double fault",
        "coprocessor segment overrun",
        "#TS invalid TSS",
        "#NP segment not present",
        "#SS stack fault",
        "#GP general protection",
        "#PF page fault",
        "reserved 15",
        "#MF x87 floating point",
        "#AC alignment check",
        "#MC machine check",
        "#XM SIMD floating point",
        "#VE virtualization",
        "#CP control protection",
        "reserved 22",
        "reserved 23",
        "reserved 24",
        "reserved 25",
        "reserved 26",
        "reserved 27",
        "#HV hypervisor injection",
        "#VC VMM communication",
        "#SX security",
        "reserved 31",
};

const char *trap_name(unsigned vector)
{
	return vector < 32 ? names[vector] : "interrupt";
}

static void set_gate(unsigned vec, uint64_t handler, unsigned ist)
{
	idt[vec] = (struct idt_entry){
	        .offset_low = handler & 0xffff,
	        .selector = GDT_KERNEL_CS,
	        .ist = (uint8_t)ist,
	        .type_attr = 0x8e, /* present, ring 0, interrupt gate */
	        .offset_mid = (handler >> 16) & 0xffff,
	        .offset_high = (uint32_t)(handler >> 32),
	};
}

/* The IST slot of vector v's gate: its own stack for #DF, NMI and #MC,
 * which may come while the current stack is unusable. */
static unsigned ist_of(unsigned v)
{
	if (v == VEC_DF)
		return IST_DOUBLE_FAULT;
	if (v == VEC_NMI)
		return IST_NMI;
	if (v == VEC_MC)
		return IST_MACHINE_CHECK;
	return 0;
}

/* Times the gates were written (trap_testing.h). */
static unsigned idt_fills;

/* Fills the IDT, with the IST stacks when use_ist. Only while no other
 * CPU takes interrupts through it: the compiler writes a gate as zeros
 * first, a not-present gate for a few instructions. */
static void fill_idt(bool use_ist)
{
	for (unsigned v = 0; v < 256; v++)
		set_gate(v, isr_stub_table[v], use_ist ? ist_of(v) : 0);
	idt_fills++;
}

/* Loads the IDT on this CPU. */
static void load_idt(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) desc = {sizeof(idt) - 1, (uintptr_t)idt};
	__asm__ volatile("lidt %0" : : "m"(desc));
}

void idt_init_boot(void)
{
	fill_idt(false);
	load_idt();
}

/* The boot CPU fills the table with its IST gates before any other CPU
 * starts; a CPU coming online only loads it. Each AP filled it again
 * while the CPUs online took their timer ticks through it: a tick in a
 * gate's write took #NP and panicked (review). */
void idt_init_cpu(void)
{
	static bool ist_filled;
	if (!ist_filled) {
		fill_idt(true);
		ist_filled = true;
	}
	load_idt();
}

#if KTEST_HOOKS
unsigned idt_testing_fills(void)
{
	return idt_fills;
}
#endif

void fault_catch_disarm(struct fault_catch *fc)
{
	struct cpu *c = this_cpu();
	if (c->fault_catch == fc)
		c->fault_catch = NULL;
}

_Static_assert(offsetof(struct fault_catch, rip) == 56 &&
                       offsetof(struct fault_catch, rflags) == 64,
               "fault.S stores the return address at 56, RFLAGS at 64");

/* Resumes the code that armed the hook, as if fault_catch_arm returned 1. */
static void resume_catch(struct fault_catch *fc, struct trap_frame *f)
{
	fc->vector = f->vector;
	fc->error = f->error;
	fc->cr2 = f->vector == VEC_PF ? read_cr2() : 0;
	fc->fault_rip = f->rip;
	this_cpu()->fault_catch = NULL;
	f->rbx = fc->rbx;
	f->rbp = fc->rbp;
	f->r12 = fc->r12;
	f->r13 = fc->r13;
	f->r14 = fc->r14;
	f->r15 = fc->r15;
	f->rsp = fc->rsp;
	f->rip = fc->rip;
	/* The arm's flags: the code between may have turned interrupts off
	 * or set DF (review: the resume kept the faulting point's). */
	f->rflags = fc->rflags;
	f->rax = 1;
}

static void print_pf_error(uint64_t err)
{
	printk("  #PF: %s, %s%s%s\n",
	       (err & PF_PRESENT) ? "protection violation" : "page not present",
	       (err & PF_FETCH)   ? "instruction fetch"
	       : (err & PF_WRITE) ? "write"
	                          : "read",
	       (err & PF_USER) ? ", user" : ", kernel",
	       (err & PF_RSVD) ? ", reserved bit set" : "");
}

static void report(const struct trap_frame *f, uint64_t cr2)
{
	char sym[96];
	ksyms_format(f->rip, sym, sizeof(sym));
	struct thread *t = this_cpu()->current;
	printk("\nEXCEPTION %s (vector %llu) error %#llx on cpu %u, thread %s "
	       "(id %llu)\n",
	       trap_name((unsigned)f->vector), (unsigned long long)f->vector,
	       (unsigned long long)f->error, this_cpu()->id,
	       t ? t->name : "boot", t ? (unsigned long long)t->id : 0ull);
	printk("  RIP %016lx %s\n", f->rip, sym);
	printk("  RSP %016lx RFLAGS %016lx CS %04lx SS %04lx\n", f->rsp,
	       f->rflags, f->cs, f->ss);
	if (f->vector == VEC_PF) {
		printk("  CR2 %016lx\n", cr2);
		print_pf_error(f->error);
	}
	printk("  RAX %016lx RBX %016lx RCX %016lx\n", f->rax, f->rbx, f->rcx);
	printk("  RDX %016lx RSI %016lx RDI %016lx\n", f->rdx, f->rsi, f->rdi);
	printk("  RBP %016lx R8  %016lx R9  %016lx\n", f->rbp, f->r8, f->r9);
	printk("  R10 %016lx R11 %016lx R12 %016lx\n", f->r10, f->r11, f->r12);
	printk("  R13 %016lx R14 %016lx R15 %016lx\n", f->r13, f->r14, f->r15);
	backtrace_print(f->rip, f->rbp);
	/* Last: it reads the heap's structures, and a fault there would
	 * cut the report short (fault_in_report). */
	if (f->vector == VEC_PF)
		addrinfo_print_fault("  ", f->rip, cr2);
	if (f->vector == VEC_GP)
		addrinfo_print_regs("  ", f);
}

/* The unexpected exception each CPU is reporting: depth 1 while it
 * reports and panics, 2 once a fault in that report panics in turn.
 * Touched only by its own CPU, with interrupts off (the report never
 * returns). */
struct reporting {
	int depth;
	uint64_t vector, rip;
};
static struct reporting reporting[MAX_CPUS];

/* A fault while this CPU reports the exception r: panics naming both,
 * printing nothing from the thread or the frame, which may be what
 * faulted. A fault in that panic stops the CPU with one fixed line. */
static __attribute__((noreturn)) void
fault_in_report(const struct trap_frame *f, struct reporting *r)
{
	if (r->depth++ > 1) {
		static const char line[] = "\nKERNEL PANIC: a fault in the "
		                           "exception handler's panic; "
		                           "halting\n";
		for (const char *p = line; *p; p++)
			serial_putc(*p);
		if (ktest_kernel_mode())
			qemu_exit(KTEST_EXIT_PANIC);
		cpu_halt_forever();
	}
	char sym[96], first[96];
	ksyms_format(f->rip, sym, sizeof(sym));
	ksyms_format(r->rip, first, sizeof(first));
	panic("%s at %s inside the exception handler (CR2 %#lx), while "
	      "reporting %s at %s",
	      trap_name((unsigned)f->vector), sym, read_cr2(),
	      trap_name((unsigned)r->vector), first);
}

static void (*debug_hook)(struct trap_frame *f);

void trap_set_debug_hook(void (*fn)(struct trap_frame *f))
{
	__atomic_store_n(&debug_hook, fn, __ATOMIC_RELEASE);
}

/* Whether va lies in the slot of t's own stack (false for a thread on a
 * stack it does not own: main, an idle thread). */
static bool in_own_slot(const struct thread *t, uint64_t va)
{
	return t && !t->boot_stack && va < t->stack.top &&
	       va >= t->stack.top - KSTACK_SLOT_SIZE;
}

/* Whether a #PF at cr2 with RSP rsp overflowed the stack it ran on: cr2
 * lies in the guard of the stack RSP is on, or of the current thread's
 * own stack, which a frame larger than its slot's unmapped bottom jumps
 * past (RSP lands in another slot). */
static bool own_guard(uint64_t cr2, uint64_t rsp)
{
	return kstack_is_own_guard(cr2, rsp) ||
	       (kstack_is_guard(cr2) && in_own_slot(this_cpu()->current, cr2));
}

/*
 * The guard-page address a stack overflow hit, or 0 if f is no overflow.
 * A #PF's CR2 is its own (read for it), so it names the page. A #DF's is
 * not: CR2 holds whatever the last #PF left there, perhaps a guard page
 * that a caught probe touched long before, while this #DF came from
 * something else (a corrupt RSP). So a #DF is judged by the interrupted
 * RSP alone: an overflow faults pushing with RSP in a guard page, or just
 * above one: the code's push lands at rsp - 8, and the CPU's push of an
 * exception's frame aligns RSP down to 16 and then writes 40 or 48 bytes
 * (with an error code), so a frame reaches a guard page from less than 48
 * bytes above it (review: only rsp - 8 was checked, and such a #DF was
 * reported as a plain one).
 */
static uint64_t overflow_guard(const struct trap_frame *f, uint64_t cr2)
{
	if (f->vector != VEC_PF && f->vector != VEC_DF)
		return 0;
	/* Only the guard of the stack it ran on: a #PF in another's is a
	 * stray pointer (stray_guard), not this stack's overflow (review:
	 * any guard was reported as the current thread's overflow). */
	if (f->vector == VEC_PF && own_guard(cr2, f->rsp))
		return cr2;
	if (kstack_is_guard(f->rsp))
		return f->rsp;
	if (kstack_is_guard(f->rsp - 8))
		return f->rsp - 8;
	uint64_t frame_low = (f->rsp & ~15ull) - 48;
	if (f->vector == VEC_DF && kstack_is_guard(frame_low))
		return frame_low;
	return 0;
}

/* A #PF in the guard page of a stack that is neither the one RSP is on
 * nor the current thread's (own_guard): the panic names the stack's
 * thread if the list of threads can be read (sched.h), and says it is no
 * overflow of the thread that faulted. */
static __attribute__((noreturn)) void stray_guard(uint64_t cr2, const char *sym)
{
	struct thread *t = this_cpu()->current;
	const char *me = t ? t->name : "boot";
	struct thread_info owner;
	if (thread_stack_owner_in_panic(cr2, &owner))
		panic("page fault in the guard page of thread %s's stack (id "
		      "%llu, cpu %u) at %#lx, by thread %s at %s: a stray "
		      "pointer, not an overflow of %s's stack",
		      owner.name, (unsigned long long)owner.id, owner.cpu, cr2,
		      me, sym, me);
	panic("page fault in the guard page of another stack (no thread's: "
	      "an IST or a CPU's boot stack, or the list of threads busy) at "
	      "%#lx, by thread %s at %s: a stray pointer, not an overflow of "
	      "%s's stack",
	      cr2, me, sym, me);
}

/* An overflow into guard: the current thread's stack's, unless the guard
 * is another's (code on a stack not its thread's: an IST stack, or a
 * corrupt RSP), which the panic names instead of blaming the thread.
 * A thread on a stack it does not own (main, an idle thread) is taken to
 * have overflowed its own. */
static __attribute__((noreturn)) void overflow_panic(uint64_t guard,
                                                     const char *sym)
{
	struct thread *t = this_cpu()->current;
	const char *me = t ? t->name : "boot";
	if (!t || t->boot_stack || in_own_slot(t, guard))
		panic("stack overflow in thread %s (guard page %#lx hit at %s)",
		      me, guard, sym);
	struct thread_info owner;
	if (thread_stack_owner_in_panic(guard, &owner))
		panic("stack overflow of thread %s's stack (id %llu, cpu %u), "
		      "run on by thread %s: guard page %#lx hit at %s",
		      owner.name, (unsigned long long)owner.id, owner.cpu, me,
		      guard, sym);
	panic("stack overflow of a stack not thread %s's (no thread's: an "
	      "IST or a CPU's boot stack, or the list of threads busy): guard "
	      "page %#lx hit at %s",
	      me, guard, sym);
}

void trap_dispatch(struct trap_frame *f)
{
	if (f->vector >= 32) {
		irq_dispatch(f);
		return;
	}
	void (*db)(struct trap_frame *) =
	        __atomic_load_n(&debug_hook, __ATOMIC_ACQUIRE);
	if (f->vector == VEC_DB && db) {
		db(f);
		return;
	}
	/* The NMI a panicking CPU sends to stop this one. */
	if (f->vector == VEC_NMI && panic_elsewhere())
		panic_park();
	/* The armed hook is its thread's. A fault inside an interrupt
	 * handler is the handler's own: resuming the thread from it would
	 * abandon the interrupt (no EOI, irq_depth left raised, the thread
	 * going on with interrupts off). So is a fault while this CPU
	 * reports one (an NMI's, a #DF's or a #MC's, which raise no
	 * irq_depth): resumed, the thread dropped the report and left its
	 * depth raised for the next (review). */
	struct cpu *c = this_cpu();
	struct reporting *r = &reporting[c->id];
	/* Nor is a fault inside a panic: the other CPUs are parked for
	 * good, and the thread resumed ran on with no "KERNEL PANIC" said
	 * (review). */
	struct fault_catch *fc =
	        c->irq_depth == 0 && r->depth == 0 && !panic_here()
	                ? c->fault_catch
	                : NULL;
	if (fc && f->vector != VEC_NMI && f->vector != VEC_MC &&
	    f->vector != VEC_DF) {
		resume_catch(fc, f);
		return;
	}
	if (r->depth > 0)
		fault_in_report(f, r);
	*r = (struct reporting){1, f->vector, f->rip};
	uint64_t cr2 = read_cr2();
	/* The panic first: the report is its own, printed with no lock
	 * (under a leaf lock, the heap's, printk's console lock was a lock
	 * checker's panic that replaced the report; review). */
	panic_begin();
	report(f, cr2);
	char sym[96];
	ksyms_format(f->rip, sym, sizeof(sym));
	uint64_t guard = overflow_guard(f, cr2);
	if (guard)
		overflow_panic(guard, sym);
	if (f->vector == VEC_PF && kstack_is_guard(cr2))
		stray_guard(cr2, sym);
	panic("unhandled exception %s at %s", trap_name((unsigned)f->vector),
	      sym);
}
