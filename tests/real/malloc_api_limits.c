/*
 * tests/real/malloc_api_limits.c: malloc-api-test's scenarios of the
 * address space the heap's set-up reserves (malloc/arena.c): in poison
 * mode, what the library can use, no more.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "malloc_api_test.h"
#include "proc_read.h"

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
