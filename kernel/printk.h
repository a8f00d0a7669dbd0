/* Kernel console output (COM1) and panic. */
#ifndef KERNEL_PRINTK_H
#define KERNEL_PRINTK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Formats (see kernel/format.h) to the console; one call's output is
 * written whole, between other CPUs' calls. Any context, NMI included:
 * a printk that interrupts one on its own CPU (an NMI, a fault) prints
 * without the lock, so its text may land inside the other's. */
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vprintk(const char *fmt, va_list ap);
/* prefix, the formatted message and a newline, written whole as one
 * call's output (mm_log's lines). Any context, as printk. */
void vprintk_line(const char *prefix, const char *fmt, va_list ap);

/*
 * The console's editable line: a prompt and what has been typed after
 * it, on a terminal (the shell's, at a "gantry> " prompt). printk from
 * anyone while it is on screen erases it ("\r", ESC [ K), prints, and
 * once the output has ended its own line draws it again, so the user
 * still sees what they typed; a key echoed while the output's last line
 * is unfinished first ends that line and draws the line again. The
 * echo goes through console_line_update, which keeps the console's copy
 * in step with what it writes (both under the console lock). Limit: a
 * line wider than the terminal wraps, and only its last row is erased.
 */
#define CONSOLE_LINE_MAX 128

/* Prints prompt (a string that stays valid) and starts an editable line,
 * empty. The shell thread. */
void console_line_start(const char *prompt);

/* Prints a key's echo s[0..n); line is the editable line after it (its
 * first CONSOLE_LINE_MAX bytes are kept), or NULL when the key ended it.
 * Without an editable line, only prints s. The shell thread. */
void console_line_update(const char *s, size_t n, const char *line);

/*
 * Stops every other CPU (an NMI each), then prints "KERNEL PANIC:
 * <message>" and a backtrace, reports the running test as crashed (test
 * kernels then leave QEMU with the panic code) and stops this CPU. If
 * another CPU panicked first, only halts. Any context.
 */
__attribute__((noreturn, format(printf, 1, 2))) void panic(const char *fmt,
                                                           ...);

/* panic with prefix put before the formatted message (mm_panic's "mm: "),
 * in panic's one buffer, which only the first panicking CPU writes. */
__attribute__((noreturn)) void vpanic_prefixed(const char *prefix,
                                               const char *fmt, va_list ap);

/* Starts a panic on this CPU before anything is printed: stops the other
 * CPUs (or halts here if another CPU panicked first), and from then on
 * printk takes no lock. panic() begins with it; an exception's report
 * calls it first, so that the report is printed as the panic's (a fault
 * under a leaf lock printed nothing but the lock checker's complaint
 * about the console lock; review). Any context; interrupts end off. */
void panic_begin(void);

/* True when this CPU has started a panic (it may be stopping the others):
 * code that would panic on failure only reports it then, so that the
 * first panic goes on to print its own message. Any context. */
bool panic_here(void);

/* True when another CPU has started a panic: an NMI on this CPU is then
 * the request to stop (the NMI handler calls panic_park). Any context. */
bool panic_elsewhere(void);

/* Marks this CPU stopped for the panicking CPU and halts it for good. */
__attribute__((noreturn)) void panic_park(void);

/* Prints a frame-pointer backtrace starting at (rip, rbp), reading only
 * frames that are mapped (panic, exception reports). Any context, as
 * printk. */
void backtrace_print(uint64_t rip, uint64_t rbp);

/* Saves up to max return addresses of the calling thread's stack into
 * pcs, innermost first, after skipping skip of them (0: the first is where
 * the caller returns to); stops at a frame outside the running stack or
 * a return address outside the kernel's text. Returns how many. Any
 * context; no lock, no fault. */
unsigned backtrace_save(uintptr_t *pcs, unsigned max, unsigned skip);

#endif
