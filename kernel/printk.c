/*
 * printk, panic and the frame-pointer backtrace. Output goes straight to
 * the serial console, polled, so it works in any context, including the
 * exception handler and a panic on a broken heap.
 */
#include "printk.h"

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "arch/x86_64/serial.h"
#include "kernel/format.h"
#include "kernel/ksyms.h"
#include "kernel/ktest.h"
#include "kernel/ktest_kernel.h"
#include "kernel/spinlock.h"

/* Keeps lines from different CPUs apart. Rank CONSOLE: anyone but a leaf
 * holder may print. Once a panic starts it is ignored, so the panic
 * message gets out even if the lock's holder is stuck. */
static struct spinlock console_lock =
        SPINLOCK_INIT("console", LOCK_RANK_CONSOLE);
static _Atomic bool panicking;

static void console_sink(void *ctx, char c)
{
	serial_putc(c);
}

void vprintk(const char *fmt, va_list ap)
{
	/* Re-entry on this CPU (a fault while printing) prints unlocked. */
	bool lock = !panicking && !spin_held(&console_lock);
	unsigned long irq = lock ? spin_lock_irqsave(&console_lock) : 0;
	kvformat(console_sink, NULL, fmt, ap);
	if (lock)
		spin_unlock_irqrestore(&console_lock, irq);
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
		ksyms_format(ret, sym, sizeof(sym));
		printk("  [%d] %016lx %s\n", depth, ret, sym);
		if (frame[0] <= rbp) /* stacks grow down: callers are above */
			break;
		rbp = frame[0];
	}
}

void panic(const char *fmt, ...)
{
	static char msg[1024]; /* static: panics are final and may nest */
	va_list ap;
	cpu_cli();
	panicking = true;
	va_start(ap, fmt);
	kvsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printk("\nKERNEL PANIC: %s\n", msg);
	uint64_t here;
	__asm__ volatile("leaq 0(%%rip), %0" : "=r"(here));
	backtrace_print(here, read_rbp());
	if (ktest_report_crash(msg) || ktest_kernel_mode())
		qemu_exit(KTEST_EXIT_PANIC);
	cpu_halt_forever();
}
