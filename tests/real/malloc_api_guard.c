/*
 * tests/real/malloc_api_guard.c: malloc-api-test's guarded pool
 * (MM_MALLOC_GUARD, malloc/guard.c; malloc_api_test.h): an overrun onto
 * the guard page after a guarded object, an underrun onto the one before
 * it and a use after its free each end the program with SIGSEGV at the
 * access, after a report that names the address, the object and how far
 * off it the access was; an overrun into the object's slack is found at
 * its free; a fault elsewhere and a sent SIGSEGV end the program as they
 * would have without the pool, and a SIGSEGV handler the program set
 * before the heap's set-up is still called, after the pool's report;
 * a bad value is reported and ignored; and malloc_stats counts the pool.
 *
 * A guarded object is told from the heap's others by its usable size:
 * the bytes asked (40), where the heap's class gives 48.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

#define ASK     40
#define ROUNDED 48 /* ASK rounded to the 16-byte alignment */
#define PAGE    4096

enum side { AT_END, AT_START };

/* A live guarded object of ASK bytes on the given side of its page, or
 * NULL if none came in 100000 allocations (the heap's others are kept,
 * so that none is handed out twice). Its address is printed first on
 * stderr ("victim 0x..."), before the access. */
static char *guarded(enum side side)
{
	/* The faults to come make no core files. */
	struct rlimit none = {0, 0};
	setrlimit(RLIMIT_CORE, &none);
	static void *kept[100000];
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		char *p = kept[i] = malloc(ASK);
		if (!p || malloc_usable_size(p) != ASK)
			continue;
		uintptr_t a = (uintptr_t)p;
		if (side == AT_END ? (a + ROUNDED) % PAGE == 0
		                   : a % PAGE == 0) {
			memset(p, 'g', ASK);
			fprintf(stderr, "victim %p\n", (void *)p);
			return p;
		}
	}
	return NULL;
}

static int scenario_overrun(void)
{
	char *p = guarded(AT_END);
	if (p)
		((volatile char *)p)[ROUNDED] = 1; /* the guard page */
	return 3;                                  /* no fault */
}

static int scenario_underrun(void)
{
	char *p = guarded(AT_START);
	if (p)
		(void)((volatile char *)p)[-1];
	return 3;
}

static int scenario_use_after_free(void)
{
	char *p = guarded(AT_END);
	if (!p)
		return 3;
	free(p);
	(void)((volatile char *)p)[0];
	return 4; /* the free left it readable */
}

static int scenario_slack(void)
{
	char *p = guarded(AT_END);
	if (!p)
		return 3;
	((volatile char *)p)[ASK] = 1; /* inside the page: the canary */
	free(p);
	return 4; /* not seen */
}

/* A fault that is not the pool's, with the pool's handler in place. */
static int scenario_null(void)
{
	if (!guarded(AT_END))
		return 3;
	volatile int *null = NULL;
	return *null;
}

static int scenario_kill(void)
{
	if (!guarded(AT_END))
		return 3;
	kill(getpid(), SIGSEGV);
	return 4; /* survived it */
}

/* The program's own SIGSEGV handlers, which end it with a status of
 * their own after saying what they were given. */
static void own_segv_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	char buf[96];
	int n = snprintf(buf, sizeof(buf), "own handler: signal %d at %p\n",
	                 sig, si->si_addr);
	if (write(2, buf, (size_t)n) < 0)
		_exit(7);
	_exit(5);
}

static void own_segv_plain(int sig)
{
	static const char msg[] = "own handler: plain\n";
	if (sig != SIGSEGV || write(2, msg, sizeof(msg) - 1) < 0)
		_exit(7);
	_exit(6);
}

/* Sets one of them as SIGSEGV's handler, as the scenario's first step:
 * before the process's first allocation, so before the heap's set-up
 * puts the pool's handler in front of it. */
static bool own_handler(bool info)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	if (info) {
		sa.sa_sigaction = own_segv_info;
		sa.sa_flags = SA_SIGINFO;
	} else {
		sa.sa_handler = own_segv_plain;
	}
	return sigaction(SIGSEGV, &sa, NULL) == 0;
}

/* An overrun onto the guard page, the program's SA_SIGINFO handler set
 * first: reported, then the handler called with the fault's siginfo. */
static int scenario_own_handler_overrun(void)
{
	if (!own_handler(true))
		return 2;
	char *p = guarded(AT_END);
	if (p)
		((volatile char *)p)[ROUNDED] = 1;
	return 3;
}

/* A fault that is not the pool's, the program's plain handler set
 * first: the handler, unreported. */
static int scenario_own_handler_null(void)
{
	if (!own_handler(false))
		return 2;
	if (!guarded(AT_END))
		return 3;
	volatile int *null = NULL;
	return *null;
}

/* The heap set up, and a guarded object if MM_MALLOC_GUARD asks for a
 * pool; false if it asks and none came. */
static bool guarded_if_pool(void)
{
	const char *g = getenv("MM_MALLOC_GUARD");
	return guarded(AT_END) || !g || strcmp(g, "0") == 0;
}

/* A crash reporter's handler, set with SA_RESETHAND before the heap's
 * set-up: it says so and returns, and the fault, run again, finds the
 * default and ends the program by SIGSEGV. Called twice, it ends the
 * program with 7 (a hang, without the cap). */
static void resethand_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	static int calls;
	static const char msg[] = "own handler: once\n";
	if (++calls > 1 || write(2, msg, sizeof(msg) - 1) < 0)
		_exit(7);
}

static int scenario_own_handler_resethand(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_sigaction = resethand_segv;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	if (sigaction(SIGSEGV, &sa, NULL) != 0)
		return 2;
	if (!guarded_if_pool())
		return 3;
	volatile int *null = NULL;
	return *null;
}

/* SIGSEGV ignored before the heap's set-up, then one sent by kill: it
 * is ignored, as without the pool (exit 0). */
static int scenario_ignored_kill(void)
{
	if (signal(SIGSEGV, SIG_IGN) == SIG_ERR)
		return 2;
	if (!guarded_if_pool())
		return 3;
	kill(getpid(), SIGSEGV);
	return 0;
}

/* A handler that leaves by a plain longjmp (a runtime's probe of memory
 * it may not read): the signal mask then stays as the handler ran with
 * it, the interrupted mask, the handler's own sa_mask and SIGSEGV. */
static jmp_buf probe_jmp;

static void longjmp_segv(int sig)
{
	(void)sig;
	longjmp(probe_jmp, 1);
}

static int scenario_own_handler_mask(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	sa.sa_handler = longjmp_segv;
	if (sigaction(SIGSEGV, &sa, NULL) != 0)
		return 2;
	if (!guarded_if_pool())
		return 3;
	if (setjmp(probe_jmp) == 0) {
		volatile int *null = NULL;
		return *null;
	}
	sigset_t now;
	if (pthread_sigmask(SIG_BLOCK, NULL, &now) != 0)
		return 2;
	if (!sigismember(&now, SIGSEGV) || !sigismember(&now, SIGUSR2))
		return 4; /* less than the handler's mask */
	if (sigismember(&now, SIGUSR1) || sigismember(&now, SIGTERM))
		return 5; /* more: every signal blocked */
	return 0;
}

/* malloc_stats after 1000 allocations of ASK bytes (kept). */
static int scenario_stats(void)
{
	for (int i = 0; i < 1000; i++)
		if (!malloc(ASK))
			return 1;
	malloc_stats();
	return 0;
}

const struct scenario guard_scenarios[] = {
        {"guard-overrun", scenario_overrun},
        {"guard-underrun", scenario_underrun},
        {"guard-use-after-free", scenario_use_after_free},
        {"guard-slack", scenario_slack},
        {"guard-null", scenario_null},
        {"guard-kill", scenario_kill},
        {"guard-stats", scenario_stats},
        {"guard-own-handler-overrun", scenario_own_handler_overrun},
        {"guard-own-handler-null", scenario_own_handler_null},
        {"guard-own-handler-resethand", scenario_own_handler_resethand},
        {"guard-ignored-kill", scenario_ignored_kill},
        {"guard-own-handler-mask", scenario_own_handler_mask},
};
const size_t guard_nscenarios =
        sizeof(guard_scenarios) / sizeof(guard_scenarios[0]);

/* The victim's address from "victim 0x..." on out, into v; and a + off
 * as the reports print addresses, into at. */
static bool victim(const char *out, char *v, size_t vsz, long off, char *at,
                   size_t atsz)
{
	const char *l = strstr(out, "victim 0x");
	unsigned long a;
	if (!l || sscanf(l, "victim %lx", &a) != 1)
		return false;
	snprintf(v, vsz, "%#lx", a);
	snprintf(at, atsz, "%#lx", a + (unsigned long)off);
	return true;
}

/* Runs scenario what with MM_MALLOC_GUARD=1; NULL if it ended by SIGSEGV
 * after the report of an access off bytes from the victim that says
 * how (part) and in what state (state); else why not. Without the pool
 * the same scenario finds no guarded object (status 3). */
static const char *faults_reported(const char *what, long off, const char *part,
                                   const char *state)
{
	char out[4096], v[32], at[32], want[256];
	int st = run_with(what, "MM_MALLOC_GUARD", "1", out, sizeof(out));
	CHECK(victim(out, v, sizeof(v), off, at, sizeof(at)),
	      "%s: no victim: status %#x, stderr '%s'", what, st, out);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
	      "%s: status %#x, not SIGSEGV; stderr '%s'", what, st, out);
	snprintf(want, sizeof(want),
	         "mm_malloc: SIGSEGV at %s: in the guarded pool "
	         "(MM_MALLOC_GUARD)\nmm_malloc: spanheap: %s: %s guarded "
	         "object %s (%s; %d bytes asked",
	         at, at, part, v, state, ASK);
	CHECK(strstr(out, want), "%s: no report '%s' in '%s'", what, want, out);
	st = run_with(what, "MM_MALLOC_GUARD", "0", out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3 && !strstr(out, "victim"),
	      "%s without the pool: status %#x, stderr '%s'", what, st, out);
	return NULL;
}

const char *test_guard_overrun(void)
{
	const char *e = faults_reported("guard-overrun", ROUNDED,
	                                "8 bytes past the end of", "allocated");
	if (e)
		return e;
	e = faults_reported("guard-underrun", -1, "1 bytes before the start of",
	                    "allocated");
	if (e)
		return e;
	return faults_reported("guard-use-after-free", 0, "0 bytes into",
	                       "free");
}

/* An overrun that stays on the object's page, in the slack the 16-byte
 * alignment leaves, is found at the free, by the canary. */
const char *test_guard_slack(void)
{
	char out[4096], v[32], at[32], want[200];
	int st = run_with("guard-slack", "MM_MALLOC_GUARD", "1", out,
	                  sizeof(out));
	CHECK(victim(out, v, sizeof(v), 0, at, sizeof(at)),
	      "no victim: status %#x, stderr '%s'", st, out);
	snprintf(want, sizeof(want),
	         "mm_malloc: spanheap: guarded object %s (%d bytes asked, "
	         "size class ",
	         v, ASK);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(out, want) &&
	              strstr(out, "byte 40 of it was written, past its end"),
	      "status %#x, stderr '%s', want '%s'", st, out, want);
	return NULL;
}

/* With the pool's handler in place, a null pointer's fault and a
 * SIGSEGV sent by kill end the program by SIGSEGV as before, with no
 * report; and a value that is not a number from 0 to 65535 is reported
 * once and ignored (no pool). */
const char *test_guard_other_signals(void)
{
	char out[4096];
	const char *runs[] = {"guard-null", "guard-kill"};
	for (size_t i = 0; i < 2; i++) {
		int st = run_with(runs[i], "MM_MALLOC_GUARD", "1", out,
		                  sizeof(out));
		CHECK(strstr(out, "victim") && WIFSIGNALED(st) &&
		              WTERMSIG(st) == SIGSEGV &&
		              !strstr(out, "guarded pool"),
		      "%s: status %#x, stderr '%s'", runs[i], st, out);
	}
	const char *bad[] = {"65536", "1x", "-1", " 1", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char want[128];
		snprintf(want, sizeof(want),
		         "mm_malloc: MM_MALLOC_GUARD=%s: not a number from 0 "
		         "to 65535; ignored\n",
		         bad[i]);
		int st = run_with("guard-overrun", "MM_MALLOC_GUARD", bad[i],
		                  out, sizeof(out));
		const char *at = strstr(out, want);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3 && at &&
		              !strstr(at + 1, want),
		      "MM_MALLOC_GUARD=%s: status %#x, stderr '%s'", bad[i], st,
		      out);
	}
	return NULL;
}

/* A program's SIGSEGV handler, set before the heap's set-up (which puts
 * the pool's in front of it), is still the program's: the pool reports
 * a fault of its own and then calls it, with the fault's siginfo if it
 * takes one; a fault elsewhere reaches it unreported. The handlers end
 * the program with statuses of their own (5 and 6): the pool's handler
 * must not put back the default and let the fault kill the program. */
const char *test_guard_own_handler(void)
{
	char out[4096], v[32], at[32], want[160];
	int st = run_with("guard-own-handler-overrun", "MM_MALLOC_GUARD", "1",
	                  out, sizeof(out));
	CHECK(victim(out, v, sizeof(v), ROUNDED, at, sizeof(at)),
	      "overrun: no victim: status %#x, stderr '%s'", st, out);
	snprintf(want, sizeof(want),
	         "mm_malloc: SIGSEGV at %s: in the guarded pool", at);
	const char *report = strstr(out, want);
	snprintf(want, sizeof(want), "own handler: signal %d at %s\n", SIGSEGV,
	         at);
	const char *own = strstr(out, want);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5 && report && own &&
	              report < own,
	      "overrun with the program's SA_SIGINFO handler: status %#x, "
	      "want exit 5, the pool's report, then '%s'; stderr '%s'",
	      st, want, out);
	st = run_with("guard-own-handler-null", "MM_MALLOC_GUARD", "1", out,
	              sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 6 && strstr(out, "victim") &&
	              strstr(out, "own handler: plain\n") &&
	              !strstr(out, "guarded pool"),
	      "null pointer with the program's plain handler: status %#x, "
	      "want exit 6 and no report; stderr '%s'",
	      st, out);
	return NULL;
}

/* The program's SIGSEGV disposition, set before the heap's set-up, keeps
 * its meaning behind the pool's handler: an SA_RESETHAND handler runs
 * once and the fault then kills the program (the pool called it again
 * and again: a hang, not a crash); an ignored SIGSEGV sent by kill stays
 * ignored (the pool took SIG_IGN for the default and the kill ended the
 * program). Both as without the pool. */
const char *test_guard_dispositions(void)
{
	char out[4096];
	for (int g = 0; g < 2; g++) {
		const char *val = g ? "1" : "0";
		int st = run_with("guard-own-handler-resethand",
		                  "MM_MALLOC_GUARD", val, out, sizeof(out));
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV &&
		              strstr(out, "own handler: once\n"),
		      "MM_MALLOC_GUARD=%s, SA_RESETHAND handler: status %#x, "
		      "want SIGSEGV after one call (exit 7: called again); "
		      "stderr '%s'",
		      val, st, out);
		st = run_with("guard-own-handler-mask", "MM_MALLOC_GUARD", val,
		              out, sizeof(out));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "MM_MALLOC_GUARD=%s, a handler left by longjmp: status "
		      "%#x, want exit 0 (4: the mask lacks the handler's own, "
		      "5: more is blocked than it asked); stderr '%s'",
		      val, st, out);
		st = run_with("guard-ignored-kill", "MM_MALLOC_GUARD", val, out,
		              sizeof(out));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "MM_MALLOC_GUARD=%s, SIGSEGV ignored, then sent: status "
		      "%#x, want exit 0; stderr '%s'",
		      val, st, out);
	}
	return NULL;
}

/* malloc_stats adds the pool's line to glibc's, only with a pool: its
 * slots, and objects it served. */
const char *test_guard_stats(void)
{
	char out[4096];
	int st = run_with("guard-stats", "MM_MALLOC_GUARD", "1", out,
	                  sizeof(out));
	unsigned slots = 0, live = 0;
	unsigned long long allocs = 0;
	const char *l = strstr(out, "\nguarded pool     = ");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && l &&
	              sscanf(l,
	                     "\nguarded pool = %u slots, %u live, %llu "
	                     "allocated",
	                     &slots, &live, &allocs) == 3,
	      "MM_MALLOC_GUARD=1: status %#x, stderr '%s'", st, out);
	CHECK(slots == 64 && live >= 1 && live <= slots && allocs >= live,
	      "slots %u, live %u, allocated %llu: '%s'", slots, live, allocs,
	      out);
	st = run_with("guard-stats", "MM_MALLOC_GUARD", "0", out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              strstr(out, "max mmap bytes") &&
	              !strstr(out, "guarded pool"),
	      "MM_MALLOC_GUARD=0: status %#x, stderr '%s'", st, out);
	return NULL;
}
