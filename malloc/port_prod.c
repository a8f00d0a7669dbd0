/*
 * malloc/port_prod.c: mm/port.h for a production malloc on Linux, the
 * port libmm_malloc.so is built with.
 *
 * Unlike the test port (tests/host/mm_port_posix.c) it never calls malloc
 * (it would be calling itself): memory comes from mmap, diagnostics are
 * formatted into stack buffers and written with write(2), thread handles
 * come from a static pool. Nothing is caught: mm_panic prints
 * "mm_malloc: ..." on stderr and aborts, as glibc does on a bad free.
 *
 * Address space (reserve, map, prepare, used, unused, huge page advice)
 * is port_mem.c's; threads, events, pins outside an API call and locks
 * are in port_sync.c; the clocks in port_clock.c.
 *
 * CPUs are thread slots (slots.c): every API call holds its thread's slot
 * (malloc_internal.h), so a pin is a counter and the slot's index, inline
 * (malloc/pin.h). A pin outside an API call takes the slot itself
 * (mm_malloc_pin_slow).
 *
 * Locks: a futex word (0 free, 1 held, 2 held with waiters) after a short
 * spin, the owner for mm_lock_held, and mm's rank order checked against a
 * per-thread mask of the ranks held (one compare; a violation mm_panics).
 * Events: a 32-bit count that is the futex word, as in the test port.
 *
 * Background threads block every signal, and end the process with
 * exit(0) once they are the only threads left, as glibc's last thread
 * would (see exit_if_alone).
 *
 * Limits: MM_MAX_CPUS slots; at most MAX_THREADS background threads;
 * without /proc, a process whose threads all pthread_exit lingers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "malloc_internal.h"

/* ---- Diagnostics (first: everything below may panic) ------------------- */

/* Writes all of buf to stderr, retrying short writes. The raw system
 * call: write(2) is a cancellation point, and a line may be written with
 * a slot or a lock of the library's held (mm_port_thread_join). */
static void write_all(const char *buf, size_t n)
{
	while (n) {
		ssize_t w = syscall(SYS_write, 2, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		n -= (size_t)w;
	}
}

/* "mm_malloc: " prefix + the message + newline, in one write. */
static void report(const char *prefix, const char *fmt, va_list ap)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "mm_malloc: %s", prefix);
	if (n < 0)
		n = 0;
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(buf) - 2)
		len = sizeof(buf) - 2;
	buf[len++] = '\n';
	write_all(buf, len);
}

void mm_panic(const char *fmt, ...)
{
	/* One thread reports; another that panics meanwhile waits for the
	 * abort rather than interleaving its lines. The reporter's own
	 * nested panic (a signal handler's misuse inside the report)
	 * reports too and aborts: the abort it would wait for is its own
	 * (until a review it paused for ever, maybe with no line out). */
	static atomic_long panicking; /* the reporter's thread id, or 0 */
	long none = 0, self = syscall(SYS_gettid);
	if (!atomic_compare_exchange_strong(&panicking, &none, self) &&
	    none != self) {
		mm_malloc_hook(MM_MALLOC_HOOK_PANIC_WAITS);
		for (;;)
			pause();
	}
	va_list ap;
	va_start(ap, fmt);
	report("", fmt, ap);
	va_end(ap);
	/* A signal handler's call on the late slot lent to it (enter.c):
	 * the lock or the wait it needs is its interrupted call's. */
	if (mm_malloc_lent()) {
		static const char lent[] =
		        "mm_malloc: the call above was made by a signal "
		        "handler that interrupted its thread's own call "
		        "(malloc is not async-signal-safe)\n";
		write_all(lent, sizeof(lent) - 1);
	}
	mm_malloc_hook(MM_MALLOC_HOOK_PANIC_REPORTED);
	abort();
}

/* Appends at most max bytes of s to buf, which has room for cap. */
static void append(char *buf, size_t *n, size_t cap, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max && *n < cap; i++)
		buf[(*n)++] = s[i];
}

int mm_malloc_env_switch(const char *name, const char *val)
{
	if (!val || !val[0])
		return -1;
	if ((val[0] == '0' || val[0] == '1') && !val[1])
		return val[0] - '0';
	/* No stdio: the constructor calls this before libc is set up. */
	char buf[200];
	size_t n = 0;
	append(buf, &n, sizeof(buf), "mm_malloc: ", SIZE_MAX);
	append(buf, &n, sizeof(buf), name, 40);
	append(buf, &n, sizeof(buf), "=", 1);
	append(buf, &n, sizeof(buf), val, 40);
	if (strlen(val) > 40)
		append(buf, &n, sizeof(buf), "...", 3);
	append(buf, &n, sizeof(buf), ": not 0 or 1; ignored\n", SIZE_MAX);
	int saved = errno;
	write_all(buf, n);
	errno = saved;
	return -1;
}

/* mm_log lines go to stderr only if MM_MALLOC_VERBOSE=1: a preloaded
 * malloc must not change what a program prints. -1 until read. */
static atomic_int verbose = -1;

void mm_malloc_log_init(const char *val)
{
	atomic_store_explicit(
	        &verbose, mm_malloc_env_switch("MM_MALLOC_VERBOSE", val) == 1,
	        memory_order_relaxed);
}

/* Set while mm_malloc_fail_switch parses: the parser's mm_log line
 * names a refused value, which the user must see, as a bad 0-or-1
 * switch's is, verbose or not. Only heap_init's thread parses (the
 * others wait for it), so a plain flag of this thread's would do; an
 * atomic is the house's way for a flag another thread may read. */
static atomic_bool log_loud;
/* This thread's mm_log lines are its call's output (mm_malloc_describe). */
static _Thread_local bool log_here;

void mm_malloc_log_here(bool on)
{
	log_here = on;
}

void mm_log(const char *fmt, ...)
{
	/* Read here if a line comes before the constructor. */
	if (atomic_load_explicit(&verbose, memory_order_relaxed) < 0)
		mm_malloc_log_init(getenv("MM_MALLOC_VERBOSE"));
	int v = atomic_load_explicit(&verbose, memory_order_relaxed);
	bool loud = atomic_load_explicit(&log_loud, memory_order_relaxed) ||
	            log_here;
	if (!v && !loud)
		return;
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	report(loud ? "" : "log: ", fmt, ap);
	va_end(ap);
	errno = saved;
}

bool mm_malloc_fail_switch(const char *val, struct spanheap_fail_attr *a)
{
	if (!val || !val[0])
		return false;
	atomic_store_explicit(&log_loud, true, memory_order_relaxed);
	bool ok = spanheap_fail_parse("MM_MALLOC_FAIL", val, a);
	if (!ok)
		mm_log("MM_MALLOC_FAIL=%.40s%s: ignored", val,
		       strlen(val) > 40 ? "..." : "");
	atomic_store_explicit(&log_loud, false, memory_order_relaxed);
	return ok;
}

/* ---- Contexts and time ------------------------------------------------- */

void mm_port_yield(void)
{
	sched_yield();
}

/* mm_port_each_other_cpu: visit.c. */

/* mm_port_now_ns, mm_port_thread_cpu_ns: port_clock.c. */

/* No records of callers: a program's code has no frame pointers to walk
 * safely, and an unwinder may take locks or allocate. A poison heap then
 * keeps only its red zones' sizes (spanheap_track.c). */
unsigned mm_port_callers(uintptr_t *pcs, unsigned max)
{
	(void)pcs;
	(void)max;
	return 0;
}

void mm_port_pc_name(uintptr_t pc, char *buf, size_t size)
{
	snprintf(buf, size, "%#lx", (unsigned long)pc);
}

/* ---- A barrier in every thread without membarrier ---------------------- */

/*
 * A page of ours, written, then made PROT_NONE: the kernel must take its
 * translation out of every CPU's TLB that may hold it before mprotect
 * returns, and on x86 it interrupts every CPU running a thread of this
 * process to do so (a CPU that switched away has passed a context
 * switch). An interrupt is a full barrier in the thread it interrupts,
 * which is what membarrier's private expedited command gives (slots.c,
 * "Why"); the .NET runtime's FlushProcessWriteBuffers relies on the same
 * where it has no membarrier. One at a time (the page is shared); panics
 * if the page cannot be had or its protection changed.
 *
 * shootdown_lock protects the page and serialises the fences. Outside
 * mm's rank table, and a leaf: its holder takes no other lock and waits
 * for nothing but its system calls. Its takers hold no mm lock: a
 * sharer's claim, a visit, and fork's prepare for its fence (ctl_lock
 * and the slots held). But prepare does not hold it across the copy: a
 * sharer's claim fences holding no slot, so fork may copy the process
 * while it holds the lock, and a call of the forking thread's own,
 * nested in fork's hold (a later prepare handler's, a signal
 * handler's), may fence. The child, whose holder is gone, sets it free
 * (mm_malloc_shootdown_reset); until a review it inherited it held,
 * and its first fence waited for ever (hooks test
 * fork_beside_shootdown). The page needs no repair: each fence makes
 * it writable first. Its holder blocks every signal, so that no
 * handler's call takes a lock under it (a visit's fence, inside a
 * call, left them open); the order is checked at run time (locks.c).
 */
static pthread_mutex_t shootdown_lock = PTHREAD_MUTEX_INITIALIZER;

void mm_malloc_shootdown_take(sigset_t *old)
{
	mm_malloc_signals_block(old);
	mm_malloc_lock_check(MM_MALLOC_LOCK_SHOOTDOWN);
	pthread_mutex_lock(&shootdown_lock);
	mm_malloc_lock_note(MM_MALLOC_LOCK_SHOOTDOWN, true);
}

void mm_malloc_shootdown_give(const sigset_t *old)
{
	mm_malloc_lock_note(MM_MALLOC_LOCK_SHOOTDOWN, false);
	pthread_mutex_unlock(&shootdown_lock);
	mm_malloc_signals_restore(old);
}

void mm_malloc_shootdown_reset(void)
{
	shootdown_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

void mm_malloc_fence_by_shootdown(void)
{
	static volatile char *page;
	sigset_t old;
	mm_malloc_shootdown_take(&old);
	mm_malloc_hook(MM_MALLOC_HOOK_SHOOTDOWN_HELD);
	if (!page) {
		void *p = mmap(NULL, MM_PAGE_SIZE, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			mm_panic("membarrier refused and no page for a TLB "
			         "shootdown (errno %d)",
			         errno);
		page = p;
	}
	if (mprotect((void *)page, MM_PAGE_SIZE, PROT_READ | PROT_WRITE) != 0)
		mm_panic("membarrier refused and mprotect too (errno %d)",
		         errno);
	page[0] = 1; /* mapped, its translation cached here */
	if (mprotect((void *)page, MM_PAGE_SIZE, PROT_NONE) != 0)
		mm_panic("membarrier refused and mprotect too (errno %d)",
		         errno);
	mm_malloc_shootdown_give(&old);
}
