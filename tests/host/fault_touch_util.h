/*
 * tests/host/fault_touch_util.h: a read or write of one byte that may
 * fault, caught (SIGSEGV, with the faulting address), for the host tests
 * of memory the POSIX port unmaps: the page heap's debug mode and the
 * span heap's guarded pool. One thread at a time.
 */
#ifndef TESTS_HOST_FAULT_TOUCH_UTIL_H
#define TESTS_HOST_FAULT_TOUCH_UTIL_H

#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>

static sigjmp_buf fault_jb;
static void *volatile fault_addr;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	fault_addr = si->si_addr;
	siglongjmp(fault_jb, 1);
}

/* Reads *p, or writes v there if write; true if it faulted (the address
 * in fault_addr). */
__attribute__((noinline, unused)) static bool
touch_access_faults(volatile char *p, bool write, char v)
{
	struct sigaction sa = {0}, old;
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	bool faulted = true;
	if (sigsetjmp(fault_jb, 1) == 0) {
		if (write)
			*p = v;
		else
			(void)*p;
		faulted = false;
	}
	sigaction(SIGSEGV, &old, NULL);
	return faulted;
}

/* Reads *p; true if it faulted. */
__attribute__((unused)) static bool touch_faults(volatile char *p)
{
	return touch_access_faults(p, false, 0);
}

#endif
