/* The console captured into a buffer while a test runs a command or a
 * print: capture_start, then capture_stop for the text (NUL-ended, cut at
 * the buffer's end). One capture at a time per test file. capture_start
 * takes only what the calling thread prints: the background scavenger's
 * "at goal" line, printed between two of a heapmap's rows in a loaded
 * -smp 1 run, was read as map letters. capture_start_any takes every
 * thread's, for a test whose output comes from another thread.
 * capture_run_line runs a shell line under a capture. */
#ifndef TESTS_KERNEL_CAPTURE_UTIL_H
#define TESTS_KERNEL_CAPTURE_UTIL_H

#include <stdatomic.h>
#include <stdint.h>

#include "kernel/ktest.h"
#include "kernel/printk_testing.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "kernel/thread.h"

#if KTEST_HOOKS
/* A file whose output runs longer defines CAPTURE_BYTES before this. */
#ifndef CAPTURE_BYTES
#define CAPTURE_BYTES 8192
#endif
static char seen[CAPTURE_BYTES];
static _Atomic unsigned nseen;
static struct thread *_Atomic capture_only; /* NULL: every thread's */

/* printk_testing_putc's hook, called by the printing thread: every
 * CPU's output, in the order it comes, or capture_only's. A byte is
 * stored after its place is counted: a reader that runs while output
 * comes (capture_byte) finds 0 in a place not yet written. */
static void capture_putc(uintptr_t c)
{
	struct thread *only = atomic_load(&capture_only);
	if (only && thread_current() != only)
		return;
	unsigned i = atomic_fetch_add(&nseen, 1);
	if (i < sizeof(seen) - 1)
		__atomic_store_n(&seen[i], (char)c, __ATOMIC_RELEASE);
}

static inline void capture_start_from(struct thread *only)
{
	atomic_store(&nseen, 0);
	memset(seen, 0, sizeof(seen));
	atomic_store(&capture_only, only);
	atomic_store(&printk_testing_putc, capture_putc);
}

static inline __attribute__((unused)) void capture_start(void)
{
	capture_start_from(thread_current());
}

static inline __attribute__((unused)) void capture_start_any(void)
{
	capture_start_from(NULL);
}

/* Byte i of the capture while it runs: 0 if not written yet (console
 * output holds no NUL). */
static inline __attribute__((unused)) char capture_byte(unsigned i)
{
	return i < sizeof(seen) - 1
	               ? __atomic_load_n(&seen[i], __ATOMIC_ACQUIRE)
	               : 0;
}

/* Ends the capture; the text is in seen. */
static inline const char *capture_stop(void)
{
	atomic_store(&printk_testing_putc, NULL);
	unsigned n = atomic_load(&nseen);
	seen[n < sizeof(seen) ? n : sizeof(seen) - 1] = '\0';
	return seen;
}

/* Whether the captured text holds needle; says so in a diagnostic if
 * not. */
static inline __attribute__((unused)) bool seen_has(const char *needle)
{
	if (strstr(seen, needle))
		return true;
	ktest_diag("no '%s' in the output", needle);
	return false;
}
/* Runs line at the shell with its output captured (capture_start);
 * its status. */
static inline __attribute__((unused)) enum shell_status
capture_run_line(const char *line)
{
	capture_start();
	enum shell_status st = shell_run_line(line);
	capture_stop();
	return st;
}
#endif /* KTEST_HOOKS */

/* Reads the decimal number at *p (after blanks) in captured output and
 * moves *p past it. */
static inline __attribute__((unused)) uint64_t number_at(const char **p)
{
	uint64_t v = 0;
	while (**p == ' ')
		(*p)++;
	for (; **p >= '0' && **p <= '9'; (*p)++)
		v = v * 10 + (uint64_t)(**p - '0');
	return v;
}

#endif
