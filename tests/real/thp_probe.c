/*
 * tests/real/thp_probe.c: what transparent huge pages do to a program's
 * memory under whichever malloc is preloaded (tools/bench-thp; figures for
 * reading, never pass/fail).
 *
 *   thp_probe small                  100 objects of 64 bytes
 *   thp_probe trim MIB SIZE KEEP SECS  MIB MiB of SIZE-byte objects, all
 *       freed but every KEEP-th (0: all freed), malloc_trim(0), then SECS
 *       seconds of waiting (khugepaged's re-collapse)
 *
 * Each step prints "STEP held_kib=H rss_kib=R anonhuge_kib=A": R and A
 * from /proc/self/smaps_rollup; H the memory the process's anonymous
 * pages pin: 4 KiB a page outside a huge folio, 2 MiB a huge folio any
 * of whose pages is still mapped (a folio a page-sized MADV_DONTNEED
 * split stays whole until memory pressure splits it, and Rss no longer
 * counts its unmapped pages). H needs /proc/kpageflags (root); -1 if it
 * cannot be read.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KPF_THP  (1ull << 22)
#define PFN_MASK ((1ull << 55) - 1)
#define MAX_HUGE (1 << 20)

static long rollup(const char *name)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(name);
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, name, n) == 0 && line[n] == ':') {
			v = atol(line + n + 1);
			break;
		}
	if (f)
		fclose(f);
	return v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The huge folios' first frames (2 MiB aligned) of the present pages of
 * the anonymous mapping [lo, hi) into huge (*nh of them), and the count
 * of present pages outside huge folios into *small. */
static void scan_range(int pm, int kf, unsigned long lo, unsigned long hi,
                       uint64_t *huge, size_t *nh, long *small)
{
	for (unsigned long a = lo; a < hi; a += 4096) {
		uint64_t e, f;
		if (pread(pm, &e, 8, (off_t)(a / 4096 * 8)) != 8 || !(e >> 63))
			continue;
		uint64_t pfn = e & PFN_MASK;
		if (pread(kf, &f, 8, (off_t)(pfn * 8)) != 8)
			continue;
		if (!(f & KPF_THP))
			(*small)++;
		else if (*nh < MAX_HUGE)
			huge[(*nh)++] = pfn & ~511ull;
	}
}

static long held_kib(void)
{
	static uint64_t huge[MAX_HUGE];
	FILE *m = fopen("/proc/self/maps", "r");
	int pm = open("/proc/self/pagemap", O_RDONLY);
	int kf = open("/proc/kpageflags", O_RDONLY);
	long small = 0, folios = 0;
	size_t nh = 0;
	char line[512], perm[8], dev[16];
	unsigned long lo, hi, off, ino;
	while (m && pm >= 0 && kf >= 0 && fgets(line, sizeof(line), m))
		if (sscanf(line, "%lx-%lx %7s %lx %15s %lu", &lo, &hi, perm,
		           &off, dev, &ino) == 6 &&
		    perm[0] == 'r' && ino == 0)
			scan_range(pm, kf, lo, hi, huge, &nh, &small);
	bool ok = m && pm >= 0 && kf >= 0;
	if (m)
		fclose(m);
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	if (!ok)
		return -1;
	qsort(huge, nh, sizeof(huge[0]), cmp_u64);
	for (size_t i = 0; i < nh; i++)
		folios += !i || huge[i] != huge[i - 1];
	return small * 4 + folios * 2048;
}

static void show(const char *step)
{
	printf("%s held_kib=%ld rss_kib=%ld anonhuge_kib=%ld\n", step,
	       held_kib(), rollup("Rss"), rollup("AnonHugePages"));
	fflush(stdout);
}

static int trim(size_t mib, size_t size, size_t keep, int secs)
{
	size_t n = (mib << 20) / size;
	char **p = malloc(n * sizeof(*p));
	if (!p)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (!(p[i] = malloc(size)))
			return 1;
		else
			memset(p[i], 1, size);
	show("filled");
	for (size_t i = 0; i < n; i++)
		if (!keep || i % keep)
			free(p[i]);
	malloc_trim(0);
	show("trimmed");
	for (int s = 1; s <= secs; s++) {
		sleep(1);
		if (s % 10 == 0 || s == secs) {
			char step[32];
			snprintf(step, sizeof(step), "after-%ds", s);
			show(step);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "small") == 0) {
		show("start");
		for (int i = 0; i < 100; i++)
			memset(malloc(64), 1, 64);
		show("small");
		return 0;
	}
	if (argc == 6 && strcmp(argv[1], "trim") == 0)
		return trim(strtoul(argv[2], 0, 0), strtoul(argv[3], 0, 0),
		            strtoul(argv[4], 0, 0), atoi(argv[5]));
	fprintf(stderr, "usage: thp_probe small | trim MIB SIZE KEEP SECS\n");
	return 2;
}
