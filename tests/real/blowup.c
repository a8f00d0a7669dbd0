/*
 * tests/real/blowup.c: the classic allocator failure modes of the Hoard
 * paper (Berger et al., 2000) and the allocator-benchmark literature,
 * for tools/bench-blowup. It calls malloc and free: run it under
 * LD_PRELOAD to measure another allocator.
 *
 *   blowup prodcons ROUNDS   thread A allocates, thread B frees
 *   blowup rotate ROUNDS     the same, the roles rotating among 4 threads
 *   blowup exitcons ROUNDS   a new consumer thread every round, which exits
 *   blowup larson EPOCHS     Larson's server: 4 threads replace random
 *                            objects of a shared array and are replaced
 *                            by new threads every epoch
 *   blowup frag STRIDE       64 MiB of 64-byte objects, all but every
 *                            STRIDE-th freed, malloc_trim(0), then 64 MiB
 *                            of other sizes (frag-notrim: no trim)
 *   blowup phases N          N phases of 32 MiB of one size each, freed
 *                            whole before the next (another size)
 *   blowup scratch ITERS     Hoard's cache-scratch (passive false sharing)
 *   blowup thrash ITERS      Hoard's cache-thrash (active false sharing)
 *
 * The workloads are in blowup_work.c (blowup.h says what a round and an
 * epoch are). Output:
 * one line of "key=value" fields; RSS in KiB from /proc/self/status
 * (VmHWM is the peak), read without allocating.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blowup.h"

static void larson(unsigned epochs)
{
	long at_tenth = 0, max = 0;
	for (unsigned e = 0; e < epochs; e++) {
		blowup_larson_epoch(e);
		long rss = blowup_status_kib("VmRSS:");
		max = rss > max ? rss : max;
		if (e + 1 == (epochs + 9) / 10)
			at_tenth = rss;
	}
	printf("larson epochs=%u rss_at_tenth_kib=%ld rss_kib=%ld "
	       "max_rss_kib=%ld peak_kib=%ld\n",
	       epochs, at_tenth, blowup_status_kib("VmRSS:"), max,
	       blowup_status_kib("VmHWM:"));
}

/* 64 MiB of 64-byte objects; all but every stride-th freed; trimmed;
 * then 64 MiB of 1000-byte objects, then of 64 KiB ones. RSS after each
 * phase, less the RSS before the first. */
static void frag(unsigned stride, bool trim)
{
	enum { N = (64 << 20) / 64, M = (64 << 20) / 1000, L = 1024 };
	void **v = calloc(N, sizeof(void *)), **w = calloc(M, sizeof(void *));
	void **l = calloc(L, sizeof(void *));
	if (!v || !w || !l)
		abort();
	long base = blowup_status_kib("VmRSS:");
	for (unsigned i = 0; i < N; i++)
		if (!(v[i] = malloc(64)) || !memset(v[i], 1, 64))
			abort();
	long full = blowup_status_kib("VmRSS:") - base;
	for (unsigned i = 0; i < N; i++)
		if (i % stride)
			free(v[i]), v[i] = NULL;
	long sparse = blowup_status_kib("VmRSS:") - base;
	if (trim)
		malloc_trim(0);
	long trimmed = blowup_status_kib("VmRSS:") - base;
	for (unsigned i = 0; i < M; i++)
		if (!(w[i] = malloc(1000)) || !memset(w[i], 2, 1000))
			abort();
	long other = blowup_status_kib("VmRSS:") - base;
	for (unsigned i = 0; i < L; i++)
		if (!(l[i] = malloc(65536)) || !memset(l[i], 3, 65536))
			abort();
	long large = blowup_status_kib("VmRSS:") - base;
	printf("frag%s stride=%u live_kib=%u full_kib=%ld sparse_kib=%ld "
	       "trimmed_kib=%ld plus_1000b_kib=%ld plus_64k_kib=%ld\n",
	       trim ? "" : "-notrim", stride, N / stride * 64 / 1024, full,
	       sparse, trimmed, other, large);
}

/* n phases, each 32 MiB of objects of one size, written, then all freed
 * by the same thread; the size changes every phase, so a phase can reuse
 * the previous one's memory only once its spans (pages, slabs) are empty
 * and handed back. At most 32 MiB is live. */
static void phases(unsigned n)
{
	static const unsigned sizes[] = {64,  1000, 200,  3000,
	                                 512, 128,  2048, 96};
	enum { NMAX = (32 << 20) / 64 };
	void **v = calloc(NMAX, sizeof(void *));
	if (!v)
		abort();
	long base = blowup_status_kib("VmRSS:"), max = 0;
	for (unsigned ph = 0; ph < n; ph++) {
		unsigned sz = sizes[ph % 8], cnt = (32u << 20) / sz;
		for (unsigned i = 0; i < cnt; i++)
			if (!(v[i] = malloc(sz)) || !memset(v[i], 1, sz))
				abort();
		long rss = blowup_status_kib("VmRSS:");
		max = rss > max ? rss : max;
		for (unsigned i = 0; i < cnt; i++)
			free(v[i]);
	}
	printf("phases n=%u live_kib=%u max_rss_kib=%ld rss_kib=%ld "
	       "peak_kib=%ld\n",
	       n, 32u << 10, max - base, blowup_status_kib("VmRSS:") - base,
	       blowup_status_kib("VmHWM:") - base);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: blowup SCENARIO N (see blowup.c)\n");
		return 2;
	}
	unsigned n = (unsigned)strtoul(argv[2], NULL, 10);
	const char *s = argv[1];
	long base = blowup_status_kib("VmRSS:");
	if (!strcmp(s, "prodcons") || !strcmp(s, "rotate"))
		blowup_rotate(s[0] == 'p' ? 2 : 4, n);
	else if (!strcmp(s, "exitcons"))
		blowup_exitcons(n);
	else if (!strcmp(s, "larson"))
		return larson(n), 0;
	else if (!strcmp(s, "frag") || !strcmp(s, "frag-notrim"))
		return frag(n ? n : 1, s[4] == 0), 0;
	else if (!strcmp(s, "phases"))
		return phases(n), 0;
	else if (!strcmp(s, "scratch") || !strcmp(s, "thrash"))
		return blowup_sharing(s[0] == 's', n), 0;
	else {
		fprintf(stderr, "blowup: no scenario '%s' (see blowup.c)\n", s);
		return 2;
	}
	printf("%s rounds=%u base_kib=%ld rss_kib=%ld peak_kib=%ld\n", s, n,
	       base, blowup_status_kib("VmRSS:"), blowup_status_kib("VmHWM:"));
	return 0;
}
