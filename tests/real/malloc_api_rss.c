/*
 * tests/real/malloc_api_rss.c: the library's resident baseline. A fresh
 * process that mallocs once and reads /proc/self/smaps has this many
 * anonymous kB resident more under the library than under glibc's
 * malloc (the same program run with LD_PRELOAD emptied).
 *
 * What it counts: the Anonymous lines of every mapping but the stack and
 * the buffer smaps is read into, so that neither how deep the call went
 * nor how long smaps is moves the figure. The program, libc and ld.so
 * are the same in both runs; what differs is the allocator's .data and
 * .bss, its two heaps' metadata, the one object's page, and ld.so's
 * bookkeeping of one more library. docs/DESIGN.md ("The hosted malloc's
 * resident baseline") says which pages those are.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "malloc_api_test.h"
#include "malloc_api_scenarios.h"
#include "proc_read.h"

/*
 * The most anonymous kB the library may add to a one-malloc program.
 * Measured (review rv110; 5 runs each, every one the same): 116 kB over
 * glibc's 100 before the review (the central lists and the span heap's
 * last fields on pages of their own, the library's small variables on a
 * page past its span heap), 108 after; a page of slack.
 */
#define RSS_OVER_GLIBC_KIB 112

#define SMAPS_BYTES ((size_t)1 << 20)

/* The Anonymous kB of every mapping in smaps but the stack and the one
 * starting at skip. */
static long anon_kib(const char *smaps, uintptr_t skip)
{
	long sum = 0;
	bool counted = true;
	for (const char *l = smaps, *nl; (nl = strchr(l, '\n')); l = nl + 1) {
		unsigned long lo, hi;
		long kb;
		const char *st = strstr(l, "[stack]");
		if (sscanf(l, "%lx-%lx ", &lo, &hi) == 2)
			counted = lo != skip && !(st && st < nl);
		else if (counted && sscanf(l, "Anonymous: %ld kB", &kb) == 1)
			sum += kb;
	}
	return sum;
}

/* One malloc, then the count, on stderr. The buffer is mapped, not
 * static, so that its pages are the one mapping skipped. */
int scenario_rss_baseline(void)
{
	char *buf = mmap(NULL, SMAPS_BYTES, PROT_READ | PROT_WRITE,
	                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	volatile char *p = malloc(64);
	if (buf == MAP_FAILED || !p)
		return 2;
	p[0] = 1;
	if (proc_read("/proc/self/smaps", buf, SMAPS_BYTES) <= 0)
		return 3;
	fprintf(stderr, "rss-baseline: anon_kib %ld\n",
	        anon_kib(buf, (uintptr_t)buf));
	free((void *)p);
	return 0;
}

/* The scenario's figure with LD_PRELOAD set to pre; -1 if it failed. */
static long baseline_under(const char *pre, char *out, size_t outsz)
{
	int st = run_with("rss-baseline", "LD_PRELOAD", pre, out, outsz);
	const char *at = strstr(out, "rss-baseline: anon_kib ");
	long kib;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !at ||
	    sscanf(at, "rss-baseline: anon_kib %ld", &kib) != 1)
		return -1;
	return kib;
}

const char *test_rss_baseline(void)
{
	/* The switches change the footprint (poison mode's records, the
	 * guarded pool): the bound is the default build's. */
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "MM_MALLOC_", 10) == 0)
			return "SKIP an MM_MALLOC_ switch is set";
	const char *pre = getenv("LD_PRELOAD");
	CHECK(pre && *pre, "LD_PRELOAD is not set");
	char ours_out[4096], glibc_out[4096];
	/* Small pages, whatever the host's setting: on an "always" host the
	 * object's chunk would come as one 2 MiB page (none was set above,
	 * so unsetting puts the environment back). */
	setenv("MM_MALLOC_HUGEPAGE", "0", 1);
	long ours = baseline_under(pre, ours_out, sizeof(ours_out));
	unsetenv("MM_MALLOC_HUGEPAGE");
	long glibc = baseline_under("", glibc_out, sizeof(glibc_out));
	CHECK(ours > 0 && glibc > 0, "the scenario failed: '%s' / '%s'",
	      ours_out, glibc_out);
	CHECK(ours - glibc <= RSS_OVER_GLIBC_KIB,
	      "one malloc: %ld anonymous kB resident, glibc %ld: %ld over, "
	      "want at most %d",
	      ours, glibc, ours - glibc, RSS_OVER_GLIBC_KIB);
	return NULL;
}
