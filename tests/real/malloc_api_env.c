/*
 * tests/real/malloc_api_env.c: malloc-api-test's environment switches
 * (malloc_api_test.h): MM_MALLOC_BACKGROUND, MM_MALLOC_MEMBARRIER,
 * MM_MALLOC_VERBOSE, MM_MALLOC_POISON and MM_MALLOC_HUGEPAGE (its effect:
 * malloc_api_thp.c) take 0 or 1, and any other value
 * is reported on stderr, naming the variable and the value, and ignored;
 * poison mode finds a write after a free; and MM_MALLOC_FAIL's injected
 * failures look like running out of memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

/* 1 if a freed object of 200 bytes reads as poison (0xdb) past its
 * first 16 bytes, 0 if it kept its bytes: poison mode's fill, seen
 * through a stale read (the page stays mapped). */
static int freed_reads_poison(void)
{
	volatile unsigned char *p = malloc(200);
	memset((void *)p, 0x11, 200);
	free((void *)p);
	return p[100] == 0xdb && p[199] == 0xdb;
}

/* The scenario: the heap set up and grown past 8 MiB (the background
 * threads' start, and a log line if verbose); then it says on stderr
 * what the switches did: "env: slot mode M, background threads B, poison
 * P" (M as mm_malloc_slot_mode says, B as background_threads_raw, P as
 * freed_reads_poison). The threads name themselves once started, so B is
 * waited for: until all three are found, with no bound of time (the
 * scenario's hang alarm ends a run whose threads never come, and its
 * status fails the test), each round allocating again so that a start
 * put off is tried again; or for 1 s where the environment says
 * MM_MALLOC_BACKGROUND=0, which none should start under (a thread that
 * did would still show). Only the wait's length reads the variable:
 * until this version every run waited 1 s, and a loaded host that
 * started the threads later gave a default run a line of its own. */
int scenario_env(void)
{
	void *v[64];
	for (int i = 0; i < 64; i++)
		memset(v[i] = malloc(256 << 10), 1, 256 << 10);
	for (int i = 0; i < 64; i++)
		free(v[i]);
	free(malloc(100));
	const char *want = getenv("MM_MALLOC_BACKGROUND");
	bool off = want && strcmp(want, "0") == 0;
	int bg = background_threads_raw();
	for (int tries = 0; bg != 3 && (!off || tries < 50); tries++) {
		usleep(20000);
		free(malloc(100));
		bg = background_threads_raw();
	}
	int poison = freed_reads_poison();
	fprintf(stderr, "env: slot mode %s, background threads %d, poison %d\n",
	        find_extensions() ? slot_mode() : "unknown", bg, poison);
	return 0;
}

/* Poison mode's misuse: a 32 KiB object (its class has one a span)
 * written after its free; the next allocations of its size hand it out
 * again, which must abort naming it (after "victim <pointer>"). */
int scenario_poison_write(void)
{
	char *p = malloc(32 << 10);
	fprintf(stderr, "victim %p\n", (void *)p);
	free(p);
	((volatile char *)p)[5000] = 0;
	for (int i = 0; i < 16; i++)
		free(malloc(32 << 10));
	return 3; /* not found */
}

/* A one-byte heap overflow: malloc(20) (a 32-byte class) written at
 * byte 20, then freed; poison mode's red zone catches it at the free. */
int scenario_poison_overrun(void)
{
	char *p = malloc(20);
	fprintf(stderr, "victim %p, usable %zu\n", (void *)p,
	        malloc_usable_size(p));
	memset(p, 'x', 20);
	((volatile char *)p)[20] = 'A';
	free(p);
	return 3; /* not found */
}

/* MM_MALLOC_FAIL's count: 30 malloc(64) calls, their results kept and
 * nothing else allocated (no stdio) until all are made; then a line on
 * stderr, "fail-count: N failed: I/E ...", each failure's call (from 1)
 * and its errno. */
int scenario_fail_count(void)
{
	enum { CALLS = 30 };
	void *p[CALLS];
	int err[CALLS];
	for (int i = 0; i < CALLS; i++) {
		errno = 0;
		p[i] = malloc(64);
		err[i] = errno;
	}
	char line[512];
	int n = 0, len = 0;
	for (int i = 0; i < CALLS; i++)
		if (!p[i]) {
			n++;
			len += snprintf(line + len, sizeof(line) - (size_t)len,
			                " %d/%d", i + 1, err[i]);
		}
	for (int i = 0; i < CALLS; i++)
		free(p[i]);
	fprintf(stderr, "fail-count: %d failed:%s\n", n, line);
	return 0;
}

/* scenario_fail_api's report of a call that did not fail as out of
 * memory does; returns 3. */
static int fail_api_bad(const char *call, const void *p, int e)
{
	fprintf(stderr, "fail-api: %s: %p, errno %d\n", call, p, e);
	return 3;
}

/* Every allocating call of the API, under MM_MALLOC_FAIL that fails
 * every large call (over 32 KiB) and no small one: each must fail as
 * when memory runs out, NULL and errno ENOMEM (posix_memalign: ENOMEM
 * returned, its pointer untouched), and realloc keeps the old block.
 * Returns 0, or 3 with a line on stderr naming the call that did not. */
int scenario_fail_api(void)
{
	static const char *const calls[] = {"malloc",        "calloc",
	                                    "aligned_alloc", "memalign",
	                                    "valloc",        "realloc(NULL)"};
	const size_t big = 1 << 20;
	unsigned char *old = malloc(100);
	if (!old)
		return fail_api_bad("malloc(100)", old, errno);
	memset(old, 0x5a, 100);
	errno = 0;
	void *r = realloc(old, big);
	int e = errno;
	for (int i = 0; i < 100 && !r; i++)
		if (old[i] != 0x5a)
			return fail_api_bad("realloc changed the old block", r,
			                    e);
	if (r || e != ENOMEM)
		return fail_api_bad("realloc", r, e);
	free(old);
	void *x = &x;
	int pm = posix_memalign(&x, 64, big);
	if (pm != ENOMEM || x != &x)
		return fail_api_bad("posix_memalign", x, pm);
	for (int i = 0; i < 6; i++) {
		errno = 0;
		void *q = i == 0   ? malloc(big)
		          : i == 1 ? calloc(1, big)
		          : i == 2 ? aligned_alloc(4096, big)
		          : i == 3 ? memalign(64, big)
		          : i == 4 ? valloc(big)
		                   : realloc(NULL, big);
		if (q || errno != ENOMEM)
			return fail_api_bad(calls[i], q, errno);
	}
	return 0;
}

int run_with(const char *what, const char *name, const char *val, char *out,
             size_t outsz)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		setenv(name, val, 1);
		execl(self_exe, self_exe, what, (char *)NULL);
		_exit(127);
	}
	return collect_child(pid, fd, out, outsz);
}

static int run_env(const char *name, const char *val, char *out, size_t outsz)
{
	return run_with("env", name, val, out, outsz);
}

/* Each switch and its default (MM_MALLOC_HUGEPAGE has none: unset
 * leaves the host's setting; any value gives scenario_env's line). */
static const struct {
	const char *name, *dflt;
} switches[] = {
        {"MM_MALLOC_BACKGROUND", "1"}, {"MM_MALLOC_MEMBARRIER", "1"},
        {"MM_MALLOC_VERBOSE", "0"},    {"MM_MALLOC_POISON", "0"},
        {"MM_MALLOC_HUGEPAGE", "1"},
};

/* Copies scenario_env's "env: ..." line of out (without its newline)
 * into line; false if out holds none. */
static bool env_line(const char *out, char *line, size_t linesz)
{
	const char *at = strstr(out, "env: ");
	if (!at)
		return false;
	size_t n = strcspn(at, "\n");
	snprintf(line, linesz, "%.*s", (int)n, at);
	return true;
}

/* Runs scenario_env with switch i at its default value, its "env: ..."
 * line into dflt (dfltsz bytes) and its stderr into out; the failure, or
 * NULL. */
static const char *default_line(size_t i, char *out, size_t outsz, char *dflt,
                                size_t dfltsz)
{
	const char *name = switches[i].name;
	int st = run_env(name, switches[i].dflt, out, outsz);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              env_line(out, dflt, dfltsz),
	      "%s=%s: status %#x, stderr '%s'", name, switches[i].dflt, st,
	      out);
	return NULL;
}

/* A value other than 0 or 1 is named on stderr, once, and the program
 * runs on with the default: what the switches did (scenario_env's line)
 * is what the default value does. 0 and 1 say nothing of the sort. */
const char *test_env_switches(void)
{
	static const char *const bad[] = {"no", "00", "true"};
	static const char *const good[] = {"0", "1"};
	char out[4096], want[128], dflt[128], got[128] = "";
	for (size_t i = 0; i < sizeof(switches) / sizeof(switches[0]); i++) {
		const char *name = switches[i].name;
		const char *e =
		        default_line(i, out, sizeof(out), dflt, sizeof(dflt));
		if (e)
			return e;
		int st;
		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			st = run_env(name, bad[b], out, sizeof(out));
			snprintf(want, sizeof(want),
			         "mm_malloc: %s=%s: not 0 or 1; ignored", name,
			         bad[b]);
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "%s=%s: status %#x, stderr '%s'", name, bad[b],
			      st, out);
			char *at = strstr(out, want);
			CHECK(at && at[strlen(want)] == '\n',
			      "%s=%s: stderr '%s', no line '%s'", name, bad[b],
			      out, want);
			CHECK(!strstr(at + 1, want),
			      "%s=%s: reported more than once: '%s'", name,
			      bad[b], out);
			CHECK(env_line(out, got, sizeof(got)) &&
			              strcmp(got, dflt) == 0,
			      "%s=%s: '%s', but the default %s=%s gives '%s'",
			      name, bad[b], got, name, switches[i].dflt, dflt);
		}
		for (size_t g = 0; g < sizeof(good) / sizeof(good[0]); g++) {
			st = run_env(name, good[g], out, sizeof(out));
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
			              !strstr(out, "not 0 or 1"),
			      "%s=%s: status %#x, stderr '%s'", name, good[g],
			      st, out);
		}
	}
	return NULL;
}

/* The program ended by SIGABRT (status st) after a report on out that
 * says say, then victim (the pointer it named), then, later, detail. */
static bool aborted_naming(int st, const char *out, const char *say,
                           const char *victim, const char *detail)
{
	const char *at = strstr(out, say);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && at &&
	       strncmp(at + strlen(say), victim, strlen(victim)) == 0 &&
	       strstr(at, detail);
}

/* MM_MALLOC_POISON=1 fills a freed object (0 and the default do not), and
 * a write after a free then aborts at the object's next allocation,
 * naming it, its span and class and the byte changed. */
const char *test_poison_mode(void)
{
	char out[4096], line[128], victim[32];
	int st = run_env("MM_MALLOC_POISON", "1", out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              env_line(out, line, sizeof(line)) &&
	              strstr(line, ", poison 1"),
	      "MM_MALLOC_POISON=1: status %#x, stderr '%s'", st, out);
	st = run_env("MM_MALLOC_POISON", "0", out, sizeof(out));
	CHECK(WIFEXITED(st) && env_line(out, line, sizeof(line)) &&
	              strstr(line, ", poison 0"),
	      "MM_MALLOC_POISON=0: status %#x, stderr '%s'", st, out);
	st = run_with("poison-write", "MM_MALLOC_POISON", "1", out,
	              sizeof(out));
	const char *v = strstr(out, "victim ");
	CHECK(v && sscanf(v, "victim %31s", victim) == 1,
	      "no victim line: stderr '%s'", out);
	CHECK(aborted_naming(st, out,
	                     "mm_malloc: spanheap: write after free, found as "
	                     "it was handed out again: pointer ",
	                     victim,
	                     "(32768-byte objects): byte 5000 is 0, not the "
	                     "poison 0xdb"),
	      "write after free: status %#x, stderr '%s'", st, out);
	/* Without poison mode the same program runs to its end. */
	st = run_with("poison-write", "MM_MALLOC_POISON", "0", out,
	              sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3,
	      "write after free, no poison: status %#x, stderr '%s'", st, out);
	return NULL;
}

/* MM_MALLOC_POISON=1: a write one byte past the end of malloc(20), whose
 * usable size is 20 in this mode, aborts at its free, naming the pointer,
 * its class, the bytes asked and the byte changed; without poison mode the
 * program runs to its end (the byte is the class's slack). */
const char *test_poison_overrun(void)
{
	char out[4096], victim[32];
	size_t usable = 0;
	int st = run_with("poison-overrun", "MM_MALLOC_POISON", "1", out,
	                  sizeof(out));
	const char *v = strstr(out, "victim ");
	CHECK(v && sscanf(v, "victim %31[^,], usable %zu", victim, &usable) ==
	                      2,
	      "no victim line: stderr '%s'", out);
	CHECK(aborted_naming(st, out,
	                     "mm_malloc: spanheap: write past the end of an "
	                     "object, found at its free: pointer ",
	                     victim,
	                     "(32-byte objects), 20 bytes asked: byte 20 is "
	                     "0x41, not the red zone 0xbb") &&
	              usable == 20,
	      "overrun: status %#x, usable %zu, stderr '%s'", st, usable, out);
	st = run_with("poison-overrun", "MM_MALLOC_POISON", "0", out,
	              sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3 &&
	              strstr(out, ", usable 32"),
	      "overrun, no poison: status %#x, stderr '%s'", st, out);
	return NULL;
}

/* The call (from 1) of scenario_fail_count's first failure in out, and
 * the second's in *second; false unless the line says two failed, each
 * with ENOMEM. */
static bool two_failures(const char *out, int *first, int *second)
{
	const char *at = strstr(out, "fail-count: ");
	int n = -1, e1 = 0, e2 = 0;
	return at &&
	       sscanf(at, "fail-count: %d failed: %d/%d %d/%d", &n, first, &e1,
	              second, &e2) == 5 &&
	       n == 2 && e1 == ENOMEM && e2 == ENOMEM;
}

/*
 * MM_MALLOC_FAIL=3,10000,2 fails the 3rd and 6th eligible calls, with
 * ENOMEM, and no more: of scenario_fail_count's 30 mallocs, two fail,
 * three apart, the first no later than the 3rd (earlier by as many
 * calls as libc made before the scenario: none with this glibc). A bad
 * value is named by its field on stderr, and the program runs unarmed.
 * Every allocating call fails as out of memory does (scenario_fail_api,
 * realloc keeping its block) under 1,10000,-1,large.
 */
const char *test_fail_injection(void)
{
	char out[4096];
	int first = 0, second = 0;
	int st = run_with("fail-count", "MM_MALLOC_FAIL", "3,10000,2", out,
	                  sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              two_failures(out, &first, &second) && first >= 1 &&
	              first <= 3 && second == first + 3,
	      "MM_MALLOC_FAIL=3,10000,2: status %#x, stderr '%s' (want two "
	      "failures with errno %d, three calls apart)",
	      st, out, ENOMEM);
	static const struct {
		const char *val, *said;
	} bad[] = {
	        {"3,20000,2", "mm_malloc: MM_MALLOC_FAIL: probability '20000' "
	                      "is not a number in [0, 10000]\n"},
	        {"3,10000,-2", "mm_malloc: MM_MALLOC_FAIL: times (or -1) '-2' "
	                       "is not a number in [0, 9223372036854775807]\n"},
	        {"3,10000,2,tiny", "mm_malloc: MM_MALLOC_FAIL: what 'tiny' is "
	                           "not small, large, atomic or all"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st = run_with("fail-count", "MM_MALLOC_FAIL", bad[i].val, out,
		              sizeof(out));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
		              strstr(out, bad[i].said) &&
		              strstr(out, "fail-count: 0 failed:"),
		      "MM_MALLOC_FAIL=%s: status %#x, stderr '%s' (want '%s' "
		      "and no failure)",
		      bad[i].val, st, out, bad[i].said);
	}
	st = run_with("fail-api", "MM_MALLOC_FAIL", "1,10000,-1,large", out,
	              sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "MM_MALLOC_FAIL=1,10000,-1,large: status %#x, stderr '%s'", st,
	      out);
	return NULL;
}

/*
 * The edges of a switch's value and name: an empty value is no value
 * (make test-malloc-tsan sets MM_MALLOC_BACKGROUND= to mean unset): the
 * default, and no report; a value over 40 bytes is named by its first
 * 40 and "..."; a variable whose name only begins with a switch's
 * (MM_MALLOC_BACKGROUNDX=0) is not that switch.
 */
const char *test_env_switch_edges(void)
{
	char out[4096], dflt[128], got[128] = "", want[160];
	static const char long_val[] =
	        "0123456789012345678901234567890123456789tail";
	for (size_t i = 0; i < sizeof(switches) / sizeof(switches[0]); i++) {
		const char *name = switches[i].name;
		const char *e =
		        default_line(i, out, sizeof(out), dflt, sizeof(dflt));
		if (e)
			return e;
		int st = run_env(name, "", out, sizeof(out));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
		              !strstr(out, "mm_malloc: ") &&
		              env_line(out, got, sizeof(got)) &&
		              strcmp(got, dflt) == 0,
		      "%s= (empty): status %#x, stderr '%s'; the default "
		      "gives '%s'",
		      name, st, out, dflt);
		st = run_env(name, long_val, out, sizeof(out));
		snprintf(want, sizeof(want),
		         "mm_malloc: %s=%.40s...: not 0 or 1; ignored\n", name,
		         long_val);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
		              strstr(out, want),
		      "%s=<44 bytes>: stderr '%s', no line '%s'", name, out,
		      want);
	}
	char longer[64];
	snprintf(longer, sizeof(longer), "%sX", switches[0].name);
	const char *e = default_line(0, out, sizeof(out), dflt, sizeof(dflt));
	if (e)
		return e;
	int st = run_env(longer, "0", out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              !strstr(out, "mm_malloc: ") &&
	              env_line(out, got, sizeof(got)) && strcmp(got, dflt) == 0,
	      "%s=0: status %#x, stderr '%s', but the default gives '%s'",
	      longer, st, out, dflt);
	return NULL;
}

/* The errno main starts with (C11 7.5: zero at program startup); the
 * first thing the scenario reads. */
int scenario_errno_at_start(void)
{
	return errno == 0 ? 0 : 3;
}

/*
 * The constructor's report of a bad switch keeps errno though its write
 * fails: with stderr closed (EBADF), a program's main still starts with
 * errno 0.
 */
const char *test_env_report_keeps_errno(void)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		close(2);
		setenv("MM_MALLOC_BACKGROUND", "bad", 1);
		execl(self_exe, self_exe, "errno-at-start", (char *)NULL);
		_exit(127);
	}
	int st = wait_status(pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "MM_MALLOC_BACKGROUND=bad with stderr closed: status %#x (3: "
	      "main started with errno set)",
	      st);
	return NULL;
}
