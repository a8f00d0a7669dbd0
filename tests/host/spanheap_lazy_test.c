/*
 * A CPU's cache set up at its first use (mm/spanheap_init.c,
 * spanheap_cache_set_up): until then it is all zero and never written,
 * so a process pays for the caches of the CPUs it runs on, not for 64.
 * First, a struct spanheap alone in a fresh mapping, used from one CPU
 * (and flushed, swept, checked and read by the statistics, which visit
 * every CPU): the mapping's resident bytes (smaps' Rss: a read of an
 * untouched page maps the shared zero page, which it does not count)
 * leave out every page of the other CPUs' caches, which still read all
 * zero. Before the caches were lazy, init wrote all 64 and the whole
 * struct was resident (170 KiB, where 48 is left). A struct reused is
 * zeroed where it was written. Then each way a CPU's first call may go
 * (allocation, zeroed or aligned allocation, MM_NO_GROW, a free of
 * another CPU's object, a flush or an idle pass that must not set it up)
 * after another CPU ran for cycles; and threads whose CPUs' first calls
 * race the sweeper's visits, flushes of every CPU and the statistics
 * (built for ThreadSanitizer too), with the checker at the end.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "stress_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;

/* The bytes smaps counts resident (Rss) in the mapping that holds p;
 * -1 if it is not found. */
static long rss_bytes_of(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[512];
	unsigned long lo, hi;
	bool in = false;
	long kb = -1;
	while (kb < 0 && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (in && !strncmp(line, "Rss:", 4))
			kb = atol(line + 4);
	}
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

/* Bytes of a struct spanheap rounded up to pages. */
#define SH_MAP_BYTES                                                   \
	((sizeof(struct spanheap) + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE * \
	 MM_PAGE_SIZE)

/* A fresh (untouched) mapping of SH_MAP_BYTES, a page either side left
 * inaccessible so that no neighbour merges with it and its smaps entry
 * counts it alone; NULL if it cannot be had. */
static struct spanheap *fresh_mapping(void)
{
	char *m = mmap(NULL, SH_MAP_BYTES + 2 * MM_PAGE_SIZE, PROT_NONE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	if (mprotect(m + MM_PAGE_SIZE, SH_MAP_BYTES, PROT_READ | PROT_WRITE)) {
		munmap(m, SH_MAP_BYTES + 2 * MM_PAGE_SIZE);
		return NULL;
	}
	return (struct spanheap *)(m + MM_PAGE_SIZE);
}

static void mapping_free(struct spanheap *sh)
{
	munmap((char *)sh - MM_PAGE_SIZE, SH_MAP_BYTES + 2 * MM_PAGE_SIZE);
}

/* Objects of a few classes allocated, written and freed on this CPU,
 * rounds times, with a sweep cycle each round. */
static void churn(struct spanheap *sh, unsigned rounds)
{
	static const size_t sizes[] = {16, 48, 256, 1000, 5000};
	void *p[40];
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < 40; i++) {
			p[i] = spanheap_alloc(sh, sizes[i % 5], 0);
			KASSERT(p[i]);
			memset(p[i], 0x5a, sizes[i % 5]);
		}
		for (unsigned i = 0; i < 40; i++)
			spanheap_free(sh, p[i]);
		spanheap_sweep_cycle(sh);
	}
}

/* The pages wholly within the caches of CPUs other than used. */
static size_t pages_of_other_caches(const struct spanheap *sh, unsigned used)
{
	uintptr_t lo = (uintptr_t)sh->caches,
	          hi = (uintptr_t)(sh->caches + MM_MAX_CPUS);
	uintptr_t ulo = (uintptr_t)&sh->caches[used],
	          uhi = ulo + sizeof(struct mcache);
	size_t n = 0;
	for (uintptr_t a = (lo + MM_PAGE_SIZE - 1) & -(uintptr_t)MM_PAGE_SIZE;
	     a + MM_PAGE_SIZE <= hi; a += MM_PAGE_SIZE)
		n += a + MM_PAGE_SIZE <= ulo || a >= uhi;
	return n;
}

KTEST(spanheap_lazy, caches_of_cpus_never_used_stay_unwritten)
{
	enum { USED = 5 };
	struct spanheap *sh = fresh_mapping();
	KASSERT(sh);
	KASSERT(rss_bytes_of(sh) == 0);
	KASSERT(sh_heap_new(&heap, sh, SH_ARENA_BYTES));
	mm_port_set_cpu(USED);
	churn(sh, 8);
	void *kept = spanheap_alloc(sh, 64, MM_ZERO);
	KASSERT(kept);
	/* Every reader of every CPU's cache: none may write one. */
	spanheap_flush_all(sh);
	spanheap_cpu_idle(sh);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	KASSERT(st);
	spanheap_stats(sh, st);
	free(st);
	SH_CHECK(sh, "used on one CPU");
	long rss = rss_bytes_of(sh);
	size_t others = pages_of_other_caches(sh, USED) * MM_PAGE_SIZE;
	ktest_diag("struct spanheap %zu bytes, resident %ld, the other CPUs' "
	           "caches' pages %zu",
	           sizeof(*sh), rss, others);
	KEXPECT(rss > 0 && (size_t)rss <= SH_MAP_BYTES - others);
	KEXPECT(spanheap_cache_used(sh, USED));
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		if (cpu != USED)
			KEXPECT(!spanheap_cache_used(sh, cpu) &&
			        ktest_all_zero(&sh->caches[cpu],
			                       sizeof(struct mcache)));
	spanheap_free(sh, kept);
	mm_port_set_cpu(0);
	sh_heap_release(&heap, sh);
	mapping_free(sh);
}

/* A struct used, its reservations given back and zeroed (as
 * sh_heap_release leaves it), then written in a cache no CPU used: the
 * next init zeroes what was written, the cache set up before included. */
KTEST(spanheap_lazy, a_reused_struct_is_zeroed_where_written)
{
	struct spanheap *sh = fresh_mapping();
	KASSERT(sh);
	KASSERT(sh_heap_new(&heap, sh, SH_ARENA_BYTES));
	mm_port_set_cpu(3);
	churn(sh, 2);
	mm_port_set_cpu(0);
	sh_heap_release(&heap, sh);
	memset(&sh->caches[9], 0xa5, sizeof(struct mcache) / 2);
	/* And a page whose one set word is its last. */
	uintptr_t edge = ((uintptr_t)&sh->caches[40] + MM_PAGE_SIZE) &
	                 -(uintptr_t)MM_PAGE_SIZE;
	((uintptr_t *)edge)[-1] = 1;
	KASSERT(sh_heap_new(&heap, sh, SH_ARENA_BYTES));
	KEXPECT(!spanheap_cache_used(sh, 3) && !spanheap_cache_used(sh, 9));
	KEXPECT(ktest_all_zero(sh->caches, sizeof(sh->caches)));
	SH_CHECK(sh, "set up again");
	mm_port_set_cpu(9);
	churn(sh, 2);
	mm_port_set_cpu(0);
	SH_CHECK(sh, "used again");
	sh_heap_release(&heap, sh);
	mapping_free(sh);
}

static struct spanheap lsh;

/* The way in a CPU's first call takes; *p what it leaves allocated. */
enum first_call {
	FIRST_ALLOC,
	FIRST_ZERO,
	FIRST_ALIGNED,
	FIRST_NO_GROW,
	FIRST_FREE,
	FIRST_FLUSH_AND_IDLE, /* neither may set the cache up */
	FIRST_N
};

static void first_call(enum first_call how, void **p, void *other)
{
	switch (how) {
	case FIRST_ALLOC:
		*p = spanheap_alloc(&lsh, 40, 0);
		break;
	case FIRST_ZERO:
		*p = spanheap_alloc(&lsh, 700, MM_ZERO);
		break;
	case FIRST_ALIGNED:
		*p = spanheap_alloc_aligned(&lsh, 96, 64, 0);
		break;
	case FIRST_NO_GROW:
		*p = spanheap_alloc(&lsh, 128, MM_NO_GROW);
		break;
	case FIRST_FREE:
		spanheap_free(&lsh, other);
		break;
	default:
		spanheap_flush_cache(&lsh);
		spanheap_cpu_idle(&lsh);
		break;
	}
}

/* CPU 0 runs for cycles; then each way of first_call on a CPU of its own
 * (a free: of an object CPU 0 allocated), then that CPU's allocations,
 * frees, flush and the checker. */
KTEST(spanheap_lazy, first_use_after_others_ran_each_way_in)
{
	KASSERT(sh_heap_fresh(&heap, &lsh));
	churn(&lsh, 12);
	void *other = spanheap_alloc(&lsh, 40, 0);
	KASSERT(other);
	uint32_t sg = atomic_load(&lsh.sweepgen);
	KASSERT(sg > 4 + 2 * 10);
	for (unsigned how = 0; how < FIRST_N; how++) {
		unsigned cpu = 10 + how;
		mm_port_set_cpu(cpu);
		void *p = NULL;
		first_call(how, &p, other);
		bool flush = how == FIRST_FLUSH_AND_IDLE;
		KEXPECT(spanheap_cache_used(&lsh, cpu) == !flush);
		KEXPECT(flush || how == FIRST_FREE || p != NULL);
		KEXPECT(flush || lsh.caches[cpu].flushgen == sg);
		SH_CHECK(&lsh, "after a CPU's first call");
		spanheap_free(&lsh, p);
		churn(&lsh, 2);
		spanheap_flush_cache(&lsh);
		KEXPECT(spanheap_cache_used(&lsh, cpu));
		SH_CHECK(&lsh, "after its allocations");
		sg = atomic_load(&lsh.sweepgen);
	}
	mm_port_set_cpu(0);
	spanheap_flush_all(&lsh);
	spanheap_release_all(&lsh);
	SH_CHECK(&lsh, "at the end");
	SH_EXPECT_ONLY_KEPT(&heap, &lsh);
	sh_heap_release(&heap, &lsh);
}

enum {
	RACERS = 3,
	RACE_ROUNDS = 6, /* a fresh CPU each */
	RACE_OPS = 3000, /* per round */
	RACE_LIVE = 24,
	RACE_FIRST_CPU = 8, /* 8 + 3 * 6 = 26 < MM_MAX_CPUS */
};

static _Atomic bool race_stop;
static struct stress_failures race_fail[RACERS];

/* A racer: each round on a CPU no one used, its first call any way in,
 * objects with a pattern of their address, checked before their free. */
static void *racer(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg;
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (i + 1);
	uint64_t *live[RACE_LIVE] = {0};
	size_t size[RACE_LIVE] = {0};
	for (unsigned r = 0; r < RACE_ROUNDS; r++) {
		mm_port_set_cpu(RACE_FIRST_CPU + r * RACERS + i);
		for (unsigned op = 0; op < RACE_OPS; op++) {
			unsigned k =
			        (unsigned)(stress_random(&rnd) % RACE_LIVE);
			if (live[k]) {
				if (live[k][2] != (uintptr_t)live[k] ||
				    live[k][size[k] / 8 - 1] !=
				            ~(uintptr_t)live[k])
					stress_fail(&race_fail[i], "%p changed",
					            (void *)live[k]);
				spanheap_free(&lsh, live[k]);
				live[k] = NULL;
				continue;
			}
			size[k] = 32 + 8 * (stress_random(&rnd) % 200);
			live[k] = spanheap_alloc(&lsh, size[k], 0);
			if (!live[k]) {
				stress_fail(&race_fail[i], "no memory");
				continue;
			}
			live[k][2] = (uintptr_t)live[k];
			live[k][size[k] / 8 - 1] = ~(uintptr_t)live[k];
		}
	}
	for (unsigned k = 0; k < RACE_LIVE; k++)
		spanheap_free(&lsh, live[k]);
	spanheap_flush_cache(&lsh);
	return NULL;
}

/* Flushes every CPU's cache and reads the statistics, over and over,
 * from a CPU of its own. */
static void *reader(void *arg)
{
	(void)arg;
	mm_port_set_cpu(MM_MAX_CPUS - 1);
	struct spanheap_stats *st = calloc(1, sizeof(*st));
	while (st && !atomic_load(&race_stop)) {
		spanheap_stats(&lsh, st);
		spanheap_flush_all(&lsh);
	}
	free(st);
	return NULL;
}

/* RACERS threads take fresh CPUs while the sweeper (visiting quiet CPUs'
 * caches) and a reader flush every CPU's cache and read the statistics:
 * the owner's set-up against the readers of its cache. */
KTEST(spanheap_lazy, first_uses_race_flushes_and_readers)
{
	struct spanheap_config cfg;
	spanheap_config_default(&cfg);
	cfg.flush_quiet_cpus = true;
	cfg.period_ns = SPANHEAP_MIN_PERIOD_NS;
	KASSERT(sh_heap_fresh_with(&heap, &lsh, &cfg));
	KASSERT(spanheap_sweeper_start(&lsh));
	atomic_store(&race_stop, false);
	memset(race_fail, 0, sizeof(race_fail));
	pthread_t r, t[RACERS];
	KASSERT(!pthread_create(&r, NULL, reader, NULL));
	for (unsigned i = 0; i < RACERS; i++)
		KASSERT(!pthread_create(&t[i], NULL, racer,
		                        (void *)(uintptr_t)i));
	for (unsigned i = 0; i < RACERS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&race_stop, true);
	pthread_join(r, NULL);
	for (unsigned i = 0; i < RACERS; i++)
		STRESS_REPORT((int)i, &race_fail[i]);
	spanheap_sweeper_stop(&lsh);
	mm_port_set_cpu(0);
	spanheap_flush_all(&lsh);
	SH_CHECK(&lsh, "after the race");
	for (unsigned c = 0; c < RACE_ROUNDS * RACERS; c++)
		KEXPECT(spanheap_cache_used(&lsh, RACE_FIRST_CPU + c));
	for (unsigned c = 1; c < RACE_FIRST_CPU; c++)
		KEXPECT(!spanheap_cache_used(&lsh, c));
	sh_heap_release(&heap, &lsh);
}

/* The pages of CPU cpu's magazine slab that are mapped (mincore: a page
 * never read nor written has none); SIZE_MAX if mincore fails. */
static size_t slab_pages_mapped(struct spanheap *sh, unsigned cpu)
{
	unsigned char v[64];
	size_t n = sh->mag_slab_pages, k = 0;
	if (n > sizeof(v) || mincore(sh->caches[cpu].slab, n * MM_PAGE_SIZE, v))
		return SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		k += v[i] & 1;
	return k;
}

/* A CPU that uses one class maps the slab pages of that class's slots
 * alone (the slab comes zeroed: no 0 is written below the other
 * classes' slots). Before, every page of the slab was written at its
 * making. */
KTEST(spanheap_lazy, a_slab_maps_only_the_pages_of_classes_used)
{
	KASSERT(sh_heap_fresh(&heap, &lsh));
	void *p = spanheap_alloc(&lsh, 16, 0);
	KASSERT(p);
	spanheap_free(&lsh, p); /* makes the slab */
	KASSERT(lsh.caches[0].slab);
	size_t mapped = slab_pages_mapped(&lsh, 0);
	ktest_diag("%zu of the slab's %zu pages mapped", mapped,
	           lsh.mag_slab_pages);
	KEXPECT(mapped >= 1 && mapped <= 2);
	SH_CHECK(&lsh, "one class used");
	sh_heap_release(&heap, &lsh);
}
