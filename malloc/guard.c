/*
 * malloc/guard.c: the guarded pool for programs (MM_MALLOC_GUARD=N), the
 * hosted malloc's counterpart of the kernel's mm.guard: mm/'s KFENCE
 * (mm/spanheap_guard.c), which LLVM's and Android's GWP-ASan are for
 * other mallocs.
 *
 * Purpose: a heap overflow, underflow or use after free in a program run
 * in production finds itself: one small allocation in N refills of each
 * thread slot is served from a page of its own between PROT_NONE guard
 * pages (the port keeps the pool's unused pages PROT_NONE,
 * mm_port_prepare_guarded), so the bad access faults where it is made,
 * and the core dump or the debugger holds its stack. Before the process
 * dies, this file's SIGSEGV handler names what was hit, on stderr:
 *
 *   mm_malloc: SIGSEGV at 0x...: in the guarded pool (MM_MALLOC_GUARD)
 *   mm_malloc: spanheap: 0x...: 0 bytes past the end of guarded object
 *   0x... (allocated; 40 bytes asked, size class 3), slot 1 of the
 *   guarded pool, on a guard page
 *
 * and its allocation's (and free's) thread slot and age. Then the fault
 * gets what it would have got without us: if the handler replaced was
 * the default, it is SIGSEGV's again and the handler returns, so the
 * access faults again into it (a core dump); if it was the program's,
 * it is called. A fault elsewhere goes the same way, unreported.
 *
 * Limits: the prod port records no stacks (port_prod.c says why), so the
 * report has none; the debugger's is the access's. A program that sets
 * its own SIGSEGV handler after the heap's set-up replaces this one (the
 * faults still happen, unreported). The handler calls mm_log, which
 * formats with vsnprintf into a stack buffer and writes with write(2):
 * not async-signal-safe by POSIX's list, safe in glibc for these
 * conversions, and a process that faulted is on its way out.
 */
#include "malloc_internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>

#include "mm/spanheap.h"

/* The pool's slots: the kernel's mm.guard's, KFENCE's default 255
 * halved twice; each is a page, and two with its guard. */
#define GUARD_SLOTS 64

static struct sigaction replaced;

/* Makes SIGSEGV's handling the default again. */
static void segv_default(void)
{
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL; /* sigaction: async-signal-safe */
	sigaction(SIGSEGV, &dfl, NULL);
}

/* If the replaced handler is the default (or ignore, which for a fault
 * is the default too), makes SIGSEGV's the default again and returns
 * true: the faulting access, run again, reaches it. */
static bool put_back_default(void)
{
	if ((replaced.sa_flags & SA_SIGINFO) ||
	    (replaced.sa_handler != SIG_DFL && replaced.sa_handler != SIG_IGN))
		return false;
	segv_default();
	return true;
}

/* Set while a thread reports (report): a spin flag outside mm's rank
 * table, serialising the reports' lines; taken in the SIGSEGV handler,
 * and its holder takes no lock (spanheap_where_log reads the heap
 * without one). A fault outside an API call
 * holds no slot, so fork does not wait for its report: the child, whose
 * reporter is gone, clears it (mm_malloc_guard_fork_child). Until a
 * review it inherited it set, and its own fault in the pool spun for
 * ever with every signal blocked (hooks test fork_beside_guard_report). */
static atomic_flag reporting = ATOMIC_FLAG_INIT;

void mm_malloc_guard_fork_child(void)
{
	atomic_flag_clear(&reporting);
}

/* The report of a fault at a, which the pool owns. One at a time: a
 * second thread's waits for the first's lines rather than interleaving
 * them. */
static void report(void *a)
{
	while (atomic_flag_test_and_set(&reporting))
		;
	mm_malloc_hook(MM_MALLOC_HOOK_GUARD_REPORTING);
	mm_malloc_log_here(true);
	mm_log("SIGSEGV at %p: in the guarded pool (MM_MALLOC_GUARD)", a);
	spanheap_where_log(&mm_malloc_sh, a);
	mm_malloc_log_here(false);
	atomic_flag_clear(&reporting);
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	if (spanheap_guard_owns(&mm_malloc_sh.guard, si->si_addr))
		report(si->si_addr);
	/* A SIGSEGV sent (kill) to a program that ignores it is ignored, as
	 * without the pool; only a fault's ignore is the default (until a
	 * review the kill ended the program). */
	if (si->si_code <= 0 && !(replaced.sa_flags & SA_SIGINFO) &&
	    replaced.sa_handler == SIG_IGN) {
		errno = saved;
		return;
	}
	if (put_back_default()) {
		/* A fault's access runs again and faults into the default;
		 * a sent signal (kill) is sent again, delivered at return. */
		if (si->si_code <= 0)
			raise(sig);
		errno = saved;
		return;
	}
	/* A handler of the program's, set before the heap's set-up: its
	 * call, as if it had been SIGSEGV's all along. SA_RESETHAND: the
	 * kernel would have put the default back on entry, so that the
	 * fault, run again once the handler returns, kills the program
	 * (until a review the handler was called again and again: a hang). */
	if (replaced.sa_flags & SA_RESETHAND)
		segv_default();
	/* And the mask it asked for: the interrupted one, its sa_mask and
	 * SIGSEGV (unless SA_NODEFER), not this handler's every signal,
	 * which a handler that leaves by a plain longjmp kept for good
	 * (review). */
	sigset_t mask = ((ucontext_t *)uc)->uc_sigmask;
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&replaced.sa_mask, s) == 1)
			sigaddset(&mask, s);
	if (!(replaced.sa_flags & SA_NODEFER))
		sigaddset(&mask, SIGSEGV);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	errno = saved;
	if (replaced.sa_flags & SA_SIGINFO)
		replaced.sa_sigaction(sig, si, uc);
	else
		replaced.sa_handler(sig);
}

/* SIGSEGV's handler is on_segv; the one it replaces is kept. */
static void install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	/* SA_ONSTACK: a program's alternate stack, if it has one, serves
	 * its stack overflows here too. Every signal blocked meanwhile. */
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigfillset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &replaced);
}

unsigned mm_malloc_guard_switch(const char *val)
{
	if (!val || !val[0])
		return 0;
	unsigned long n = 0;
	const char *c = val;
	while (*c >= '0' && *c <= '9' && n <= 65535)
		n = n * 10 + (unsigned long)(*c++ - '0');
	if (*c || n > 65535) {
		mm_malloc_log_here(true);
		mm_log("MM_MALLOC_GUARD=%.40s%s: not a number from 0 to "
		       "65535; ignored",
		       val, strlen(val) > 40 ? "..." : "");
		mm_malloc_log_here(false);
		return 0;
	}
	return (unsigned)n;
}

void mm_malloc_guard_config(struct spanheap_config *sc, unsigned interval)
{
	sc->guard_interval = (uint16_t)interval;
	sc->guard_slots = interval ? GUARD_SLOTS : 0;
}

void mm_malloc_guard_start(void)
{
	if (mm_malloc_sh.guard.nslots)
		install();
}
