/*
 * printk, panic and the frame-pointer backtrace. Output goes straight to
 * the serial console, polled, so it works in any context, including the
 * exception handler and a panic on a broken heap.
 *
 * The editable line (console_line_*): the console keeps a copy of the
 * prompt and the typed text, updated with each echo under the console
 * lock, so that any printk can erase the line before its output and draw
 * it again after, without asking its owner (the shell thread, which may
 * be asleep, and whose editor is not locked).
 *
 * A panic prints alone. The first CPU to panic claims panic_cpu, sends an
 * NMI to every other online CPU and waits (boundedly) until each has
 * marked itself in cpus_stopped and halted, in the NMI handler (a CPU
 * with interrupts off, or spinning on a lock the panicking CPU holds,
 * still takes an NMI); only then does it print, without the console
 * lock, which a CPU that did not stop may hold. A CPU that panics second
 * halts without printing, and without formatting: the claim comes first,
 * so its message never lands over the first one's. A nested panic on the
 * panicking CPU (a fault while printing) prints again.
 */
#include "printk.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/serial.h"
#include "kernel/format.h"
#include "kernel/ksyms.h"
#include "kernel/kstack.h"
#include "kernel/ktest.h"
#include "kernel/ktest_kernel.h"
#include "kernel/percpu.h"
#include "kernel/printk_testing.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "kernel/time.h"

/* Keeps lines from different CPUs apart: one printk call is written
 * whole. Rank CONSOLE: anyone but a leaf holder may print. Taken with
 * interrupts off, so an interrupt handler's printk cannot meet its own
 * CPU's holder; an NMI or a fault inside printk prints unlocked (see
 * in_vprintk). Once a panic starts it is ignored, so the panic message
 * gets out even if the lock's holder is stuck. */
static struct spinlock console_lock =
        SPINLOCK_INIT("console", LOCK_RANK_CONSOLE);
static _Atomic bool panicking;

/* How long a panic waits for the other CPUs to stop before it prints
 * anyway (a CPU already in an NMI handler cannot take another). */
#define PANIC_STOP_WAIT_NS 1000000000ull

/* Atomic, any CPU: */
static _Atomic int panic_cpu = -1; /* the CPU that panicked first */
static _Atomic cpumask_t cpus_stopped;

TEST_HOOK_DEFINE(panic_testing_after_message);
TEST_HOOK_DEFINE(panic_testing_claimed);
TEST_HOOK_DEFINE(printk_testing_putc);
TEST_HOOK_DEFINE(panic_testing_park);

const struct spinlock *printk_testing_console_lock(void)
{
	return &console_lock;
}

/* Sends c to the UART; ctx, if not NULL, keeps the last one sent. */
static void console_sink(void *ctx, char c)
{
	TEST_HOOK(printk_testing_putc, (unsigned char)c);
	serial_putc(c);
	if (ctx)
		*(char *)ctx = c;
}

static void console_write(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		console_sink(NULL, s[i]);
}

/* Each CPU's own, touched with interrupts off: true from before it takes
 * a ticket for console_lock until after it has handed the lock on. */
static bool in_vprintk[MAX_CPUS];

/* The editable line (printk.h). Protected by console_lock, and so kept
 * only by a writer that took it (a panic's or an NMI's printk prints over
 * the line and leaves it be): */
static const char *line_prompt; /* NULL: no editable line */
static char line_text[CONSOLE_LINE_MAX + 1];
static bool line_hidden; /* erased for other output, not drawn since */
static bool line_mid;    /* and that output's last line is unfinished */

/* Interrupts off, then the console lock unless a panic has started or
 * this CPU is inside printk already; returns whether it took the lock. */
static bool console_enter(unsigned long *flags)
{
	*flags = read_rflags();
	cpu_cli();
	/* Re-entry on this CPU (an NMI or a fault while it waits for the
	 * lock, holds it or hands it on) prints unlocked: spin_held does not
	 * cover the wait, where a second ticket would queue behind the
	 * first, which the interrupted code can never take or give back. */
	bool *mine = &in_vprintk[this_cpu()->id];
	/* Nor once this CPU has claimed a panic, before it says so: what
	 * stopping the others prints (an NMI not accepted) would wait for a
	 * lock a CPU parked holding (review). */
	bool lock = !panicking && !*mine && !panic_here();
	if (lock) {
		*mine = true;
		atomic_signal_fence(memory_order_seq_cst);
		spin_lock(&console_lock);
	}
	return lock;
}

static void console_leave(bool locked, unsigned long flags)
{
	if (locked) {
		spin_unlock(&console_lock);
		atomic_signal_fence(memory_order_seq_cst);
		in_vprintk[this_cpu()->id] = false;
	}
	if (flags & RFLAGS_IF)
		cpu_sti();
}

/* Draws the editable line, at the start of a terminal line. Locking:
 * console_lock must be held. */
static void line_draw_locked(void)
{
	console_write(line_prompt, strlen(line_prompt));
	console_write(line_text, strlen(line_text));
	line_hidden = false;
}

void console_line_start(const char *prompt)
{
	unsigned long flags;
	bool locked = console_enter(&flags);
	console_write(prompt, strlen(prompt));
	if (locked) {
		line_prompt = prompt;
		line_text[0] = '\0';
		line_hidden = false;
	}
	console_leave(locked, flags);
}

void console_line_update(const char *s, size_t n, const char *line)
{
	unsigned long flags;
	bool locked = console_enter(&flags);
	bool edit = locked && line_prompt;
	/* The echo is relative to the line as last drawn: draw it first,
	 * on a line of its own, if other output took its place. */
	if (edit && line_hidden) {
		if (line_mid)
			console_write("\n", 1);
		line_draw_locked();
	}
	console_write(s, n);
	if (edit && line) {
		size_t k = 0;
		for (; k < CONSOLE_LINE_MAX && line[k]; k++)
			line_text[k] = line[k];
		line_text[k] = '\0';
	} else if (edit) {
		line_prompt = NULL;
	}
	console_leave(locked, flags);
}

/* Writes prefix, the formatted text and suffix as one call's output. */
static void vprintk_parts(const char *prefix, const char *fmt, va_list ap,
                          const char *suffix)
{
	unsigned long flags;
	bool locked = console_enter(&flags);
	bool edit = locked && line_prompt;
	if (edit && !line_hidden) {
		console_write("\r\x1b[K", 4);
		line_hidden = true;
		line_mid = false;
	}
	char last = '\0';
	for (const char *s = prefix; *s; s++)
		console_sink(&last, *s);
	kvformat(console_sink, &last, fmt, ap);
	for (const char *s = suffix; *s; s++)
		console_sink(&last, *s);
	if (edit) {
		if (last)
			line_mid = last != '\n';
		if (!line_mid)
			line_draw_locked();
	}
	console_leave(locked, flags);
}

void vprintk(const char *fmt, va_list ap)
{
	vprintk_parts("", fmt, ap, "");
}

void vprintk_line(const char *prefix, const char *fmt, va_list ap)
{
	vprintk_parts(prefix, fmt, ap, "\n");
}

void printk(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintk(fmt, ap);
	va_end(ap);
}

/* A frame is followed only if both of its words are mapped kernel memory,
 * so a corrupt chain ends the backtrace instead of faulting again. */
static bool frame_readable(uint64_t rbp)
{
	if (rbp % 8 || rbp < DIRECT_MAP_BASE)
		return false;
	return vm_translate(rbp, NULL, NULL) &&
	       vm_translate(rbp + 8, NULL, NULL);
}

void backtrace_print(uint64_t rip, uint64_t rbp)
{
	char sym[96];
	printk("Backtrace:\n");
	ksyms_format(rip, sym, sizeof(sym));
	printk("  [0] %016lx %s\n", rip, sym);
	for (int depth = 1; depth < 32 && rbp && frame_readable(rbp); depth++) {
		const uint64_t *frame = (const uint64_t *)rbp;
		uint64_t ret = frame[1];
		if (ret == 0)
			break;
		ksyms_format_return(ret, sym, sizeof(sym));
		printk("  [%d] %016lx %s\n", depth, ret, sym);
		if (frame[0] <= rbp) /* stacks grow down: callers are above */
			break;
		rbp = frame[0];
	}
}

__attribute__((noinline)) unsigned backtrace_save(uintptr_t *pcs, unsigned max,
                                                  unsigned skip)
{
	uintptr_t rbp = (uintptr_t)__builtin_frame_address(0), lo, hi;
	if (!kstack_bounds(rbp, &lo, &hi))
		return 0;
	unsigned n = 0;
	skip++; /* this function's own return address */
	/* rbp < hi first: above the stack, hi - rbp wrapped and passed
	 * (review: a smashed frame's 0xff... fill faulted here). */
	while (n < max && rbp % 8 == 0 && rbp >= lo && rbp < hi &&
	       hi - rbp >= 16) {
		const uintptr_t *frame = (const uintptr_t *)rbp;
		uintptr_t ret = frame[1];
		if (ret < (uintptr_t)__text_start ||
		    ret >= (uintptr_t)__text_end)
			break;
		if (skip)
			skip--;
		else
			pcs[n++] = ret;
		if (frame[0] <= rbp) /* callers are above */
			break;
		rbp = frame[0];
	}
	return n;
}

bool panic_here(void)
{
	return atomic_load(&panic_cpu) == (int)this_cpu()->id;
}

bool panic_elsewhere(void)
{
	int p = atomic_load(&panic_cpu);
	return p >= 0 && p != (int)this_cpu()->id;
}

void panic_park(void)
{
	TEST_HOOK(panic_testing_park, this_cpu()->id);
	atomic_fetch_or(&cpus_stopped, cpumask_of(this_cpu()->id));
	cpu_halt_forever();
}

/* NMIs every other online CPU and waits until they have parked, or until
 * PANIC_STOP_WAIT_NS have passed; returns those that did not. Prints
 * nothing: one of those may hold the console lock. */
static cpumask_t stop_other_cpus(void)
{
	unsigned self = this_cpu()->id;
	cpumask_t others = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != self && atomic_load(&cpus[i].online))
			others |= cpumask_of(i);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (others & cpumask_of(i))
			lapic_send_nmi(cpus[i].apic_id);
	/* Other CPUs are online only once time runs (SMP needs it). */
	uint64_t deadline = time_now_ns() + PANIC_STOP_WAIT_NS;
	while ((atomic_load(&cpus_stopped) & others) != others &&
	       time_now_ns() < deadline)
		cpu_pause();
	return others & ~atomic_load(&cpus_stopped);
}

/*
 * Claims the panic for this CPU before anything is formatted: the first
 * CPU stops the others; any other CPU parks here at once, so that it
 * never formats over the first one's message (there is one buffer, and
 * mm_panic's message goes through it too). A nested panic on the first
 * CPU (a fault while printing) goes on and prints again.
 */
void panic_begin(void)
{
	cpu_cli();
	int first = -1, self = (int)this_cpu()->id;
	cpumask_t missing = 0;
	if (atomic_compare_exchange_strong(&panic_cpu, &first, self)) {
		TEST_HOOK(panic_testing_claimed, (uintptr_t)self);
		missing = stop_other_cpus();
	} else if (first != self) {
		panic_park(); /* the first panic speaks; this one halts */
	}
	/* From here on printk takes no lock: a CPU that did not stop may
	 * hold it. */
	panicking = true;
	if (missing)
		printk("panic: %u other CPU(s) did not stop (mask %#llx)\n",
		       cpumask_weight(missing), (unsigned long long)missing);
}

void vpanic_prefixed(const char *prefix, const char *fmt, va_list ap)
{
	static char msg[1024]; /* static: panics are final and may nest */
	panic_begin();
	int len = ksnprintf(msg, sizeof(msg), "%s", prefix);
	if (len >= 0 && (size_t)len < sizeof(msg))
		kvsnprintf(msg + len, sizeof(msg) - (size_t)len, fmt, ap);
	printk("\nKERNEL PANIC: %s\n", msg);
	TEST_HOOK(panic_testing_after_message, this_cpu()->id);
	uint64_t here;
	__asm__ volatile("leaq 0(%%rip), %0" : "=r"(here));
	backtrace_print(here, read_rbp());
	if (ktest_report_crash(msg) || ktest_kernel_mode())
		qemu_exit(KTEST_EXIT_PANIC);
	cpu_halt_forever();
}

void panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vpanic_prefixed("", fmt, ap);
}
