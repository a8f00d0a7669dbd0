/*
 * tests/real/malloc_api_thp.c: malloc-api-test's MM_MALLOC_HUGEPAGE
 * (malloc/port_prod.c): 1 advises huge pages on the heap's mappings
 * (MADV_HUGEPAGE, the kernel's VmFlags "hg"), 0 refuses them
 * (MADV_NOHUGEPAGE, "nh": an opt-out on a host whose transparent huge
 * pages are "always"), and unset leaves the host's setting alone. The
 * metadata heap's arena is "nh" whatever the switch
 * (mm_port_advise_metadata): a 2 MiB page there cost every process 2 MiB
 * of RSS on an "always" host, which MM_MALLOC_HUGEPAGE=1 emulates.
 *
 * The flags, not the huge pages, are what the test reads: whether a
 * fault gets a huge page depends on the host's setting and on free
 * memory, and the flags are what the switch controls.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "malloc_api_scenarios.h"
#include "malloc_api_test.h"

/* The VmFlags line of the mapping of /proc/self/smaps holding addr into
 * flags (flagssz bytes); false if none is found. */
static bool vm_flags(uintptr_t addr, char *flags, size_t flagssz)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return false;
	char line[512];
	bool in = false, found = false;
	unsigned long lo, hi;
	while (!found && fgets(line, sizeof(line), f)) {
		char c;
		/* A mapping's first line: "lo-hi perms ..."; a field's has
		 * a name and a colon where the range has its dash. */
		if (sscanf(line, "%lx-%lx %c", &lo, &hi, &c) == 3)
			in = addr >= lo && addr < hi;
		else if (in && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(flags, flagssz, "%s", line + 8);
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* Whether flags (a VmFlags line) has the two-letter flag name. */
static bool has_flag(const char *flags, const char *name);

/* How many mappings of /proc/self/smaps other than those holding a and b
 * have the VmFlags flag name, of at least min_bytes; -1 if unreadable. */
static int others_with_flag(uintptr_t a, uintptr_t b, const char *name,
                            unsigned long min_bytes)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[512];
	bool count = false;
	int n = 0;
	unsigned long lo, hi;
	while (fgets(line, sizeof(line), f)) {
		char c;
		if (sscanf(line, "%lx-%lx %c", &lo, &hi, &c) == 3)
			count = !(a >= lo && a < hi) && !(b >= lo && b < hi) &&
			        hi - lo >= min_bytes;
		else if (count && strncmp(line, "VmFlags:", 8) == 0)
			n += has_flag(line + 8, name);
	}
	fclose(f);
	return n;
}

/* Whether flags (a VmFlags line) has the two-letter flag name. */
static bool has_flag(const char *flags, const char *name)
{
	for (const char *p = flags; (p = strstr(p, name)); p += 2)
		if ((p == flags || p[-1] == ' ') &&
		    (p[2] == ' ' || p[2] == '\n' || p[2] == 0))
			return true;
	return false;
}

/* The scenario: says on stderr "thp: hg H nh N" for the mapping of a
 * 4 MiB object (from the arena) and of a 64-byte one (each 1 if its
 * mapping has the flag), then "others nh K", the other mappings of 2 MiB
 * or more with "nh" (the metadata heap's arena, mapped part and
 * reserved part), or exits 2 if a mapping is not found. */
int scenario_thp(void)
{
	char *big = malloc(4 << 20), *small = malloc(64);
	char fb[256], fs[256];
	if (!big || !small || !vm_flags((uintptr_t)big, fb, sizeof(fb)) ||
	    !vm_flags((uintptr_t)small, fs, sizeof(fs)))
		return 2;
	int others = others_with_flag((uintptr_t)big, (uintptr_t)small, "nh",
	                              2ul << 20);
	fprintf(stderr, "thp: hg %d%d nh %d%d others nh %s\n",
	        has_flag(fb, "hg"), has_flag(fs, "hg"), has_flag(fb, "nh"),
	        has_flag(fs, "nh"), others > 0 ? "some" : "none");
	free(big);
	free(small);
	return 0;
}

/* MM_MALLOC_HUGEPAGE unset, 1 and 0: the flags of the heap's mappings
 * (both objects': a large one's and a small one's). */
const char *test_hugepage_switch(void)
{
	static const struct {
		const char *val, *want;
	} cases[] = {
	        {"", "thp: hg 00 nh 00 others nh some"},
	        {"1", "thp: hg 11 nh 00 others nh some"},
	        {"0", "thp: hg 00 nh 11 others nh some"},
	};
	char out[4096];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = run_with("thp", "MM_MALLOC_HUGEPAGE", cases[i].val,
		                  out, sizeof(out));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
		              strstr(out, cases[i].want),
		      "MM_MALLOC_HUGEPAGE='%s': status %#x, stderr '%s', "
		      "want '%s'",
		      cases[i].val, st, out, cases[i].want);
	}
	return NULL;
}
