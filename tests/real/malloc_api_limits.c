/*
 * tests/real/malloc_api_limits.c: malloc-api-test's scenarios of the
 * address space the heap's set-up reserves (malloc/arena.c): under a
 * range of address-space limits (RLIMIT_AS, as ulimit -v sets) the set-up
 * either makes a heap that works or fails cleanly and keeps nothing; and
 * in poison mode it reserves what the library can use, no more.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "malloc_api_test.h"
#include "proc_read.h"

/* The largest PROT_NONE reservation this process can make now, to 64 KiB
 * (the room its address-space limit leaves), by bisection; keeps none
 * and allocates nothing. */
static size_t room_now(void)
{
	size_t lo = 0, hi = (size_t)1 << 40;
	while (hi - lo > (64 << 10)) {
		size_t mid = lo + (hi - lo) / 2;
		void *p = mmap(NULL, mid, PROT_NONE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
		               0);
		if (p == MAP_FAILED) {
			hi = mid;
		} else {
			munmap(p, mid);
			lo = mid;
		}
	}
	return lo;
}

/*
 * Under a limit AS_PAST_KIB past the address space the process has (set
 * before its first allocation), a 1 MiB malloc sets the heap up. Exit 0:
 * it and three more worked; 11: it worked and a later one failed with
 * ENOMEM (a heap too small for more); 10: it failed with ENOMEM and the
 * failed set-up kept no address space (to 256 KiB: the program's own
 * mappings meanwhile). Else 4: the failed set-up kept address space (how
 * much on stderr); 3, 5: NULL with another errno; 2: no limit set.
 */
int scenario_as_sweep(void)
{
	const char *kib = getenv("AS_PAST_KIB");
	if (!kib || !limit_past_vm((rlim_t)strtoul(kib, NULL, 10) << 10))
		return 2;
	size_t before = room_now();
	errno = 0;
	char *p[4] = {malloc(1 << 20)};
	if (!p[0]) {
		if (errno != ENOMEM)
			return 3;
		size_t after = room_now();
		if (after + (256 << 10) >= before)
			return 10;
		fprintf(stderr, "a failed set-up kept %zu KiB\n",
		        (before - after) >> 10);
		return 4;
	}
	memset(p[0], 1, 1 << 20);
	for (int i = 1; i < 4; i++) {
		errno = 0;
		if (!(p[i] = malloc(1 << 20)))
			return errno == ENOMEM ? 11 : 5;
		memset(p[i], 1, 1 << 20);
	}
	for (int i = 0; i < 4; i++)
		free(p[i]);
	return 0;
}

/* The limits the sweep tries, past the address space in use: every MiB
 * up to SWEEP_MIB, where a heap of 4 MiB must work. */
#define SWEEP_MIB 40

/* The sweep under one mode (MM_MALLOC_POISON=poison); NULL or why not. */
static const char *sweep(const char *poison)
{
	setenv("MM_MALLOC_POISON", poison, 1); /* the children's */
	int worked = -1;
	for (int mib = 0; mib <= SWEEP_MIB; mib++) {
		char kib[32];
		snprintf(kib, sizeof(kib), "%d", mib << 10);
		static char out[2048];
		int st = run_with("as-sweep", "AS_PAST_KIB", kib, out,
		                  sizeof(out));
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		CHECK(code == 0 || code == 10 || code == 11,
		      "poison %s, limit %d MiB past: status %#x (4: a failed "
		      "set-up kept address space; 3, 5: NULL with no ENOMEM; "
		      "a signal: a crash); stderr: %.200s",
		      poison, mib, st, out);
		/* Past a limit that worked, a failure is the set-up's luck
		 * at the one before. */
		CHECK(code != 10 || worked < 0,
		      "poison %s: a heap at %d MiB past, none at %d MiB",
		      poison, worked, mib);
		if (code != 10 && worked < 0)
			worked = mib;
		CHECK(mib < SWEEP_MIB || code == 0,
		      "poison %s, limit %d MiB past: status %#x, want 4 MiB "
		      "allocated; stderr: %.200s",
		      poison, mib, st, out);
	}
	return NULL;
}

/*
 * A program under an address-space limit a little past what it has
 * (ulimit -v): until a review the set-up made the page heap when its
 * arena alone fitted, and kept it (2 MiB and its tables) when the
 * metadata heap's then did not; where both fitted but not what else it
 * reserves, the metadata heap's arena was halved to fit.
 */
const char *test_address_sweep(void)
{
	const char *why_not = sweep("0");
	if (!why_not)
		why_not = sweep("1");
	unsetenv("MM_MALLOC_POISON");
	return why_not;
}

/* The address space this process has (VmSize), 0 if unknown. Allocates
 * nothing. */
static size_t vm_bytes(void)
{
	char buf[4096];
	if (proc_read("/proc/self/status", buf, sizeof(buf)) <= 0)
		return 0;
	const char *p = strstr(buf, "\nVmSize:");
	return p ? strtoul(p + 8, NULL, 10) << 10 : 0;
}

/* The object arena with no address-space limit: 64 GiB
 * (MHEAP_DEFAULT_ARENA_BYTES). */
#define ARENA_BYTES ((size_t)64 << 30)

/*
 * With no address-space limit, run with MM_MALLOC_POISON=0 or 1: the
 * address space the set-up reserves (VmSize across the first malloc) is
 * at most RESERVE_TENTHS tenths of the arena. Exit 3 if more (how much on
 * stderr), 2 if VmSize is unreadable or malloc failed.
 */
int scenario_poison_reserve(void)
{
	const char *tenths = getenv("RESERVE_TENTHS");
	size_t before = vm_bytes();
	void *p = malloc(100);
	size_t after = vm_bytes();
	if (!p || !before || !after || !tenths)
		return 2;
	free(p);
	size_t got = after - before;
	if (got <= ARENA_BYTES / 10 * strtoul(tenths, NULL, 10))
		return 0;
	fprintf(stderr, "the set-up reserved %zu MiB beside a %zu MiB arena\n",
	        got >> 20, ARENA_BYTES >> 20);
	return 3;
}

/*
 * The metadata heap's arena is sized for what the heap can make
 * (spanheap_meta_arena_bytes): in poison mode a side table per span,
 * without callers' records or their depot, as the hosted port gives no
 * callers. Until a review it was sized for records too: 3.9 times the
 * arena beside it, 4.9 in all, where 1.75 is what the library uses (and
 * under ulimit -v the arena was cut to a quarter of what fitted, to leave
 * room for that). Without poison, 1.1 times.
 */
const char *test_poison_reserve(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur != RLIM_INFINITY)
		return "SKIP an address-space limit (the arena is cut)";
	static const struct {
		const char *poison, *tenths;
	} runs[] = {{"0", "12"}, {"1", "20"}};
	for (int i = 0; i < 2; i++) {
		static char out[1024];
		setenv("RESERVE_TENTHS", runs[i].tenths, 1);
		int st = run_with("poison-reserve", "MM_MALLOC_POISON",
		                  runs[i].poison, out, sizeof(out));
		unsetenv("RESERVE_TENTHS");
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "MM_MALLOC_POISON=%s: status %#x, want the set-up's "
		      "reservations at most %s tenths of the 64 GiB arena; "
		      "stderr: %.200s",
		      runs[i].poison, st, runs[i].tenths, out);
	}
	return NULL;
}
