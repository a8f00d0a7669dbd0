/*
 * Dynamic per-CPU memory (mm/pcpu.c) through the POSIX port: every size
 * and alignment comes zeroed in every unit, one stride apart; frees are
 * reused; misuse (a foreign pointer, a double free, an interior pointer,
 * another CPU's copy, a CPU with no unit) panics naming the pointer;
 * bad requests, the chunk limit and a heap that fails the chunk's struct
 * or memory give NULL with a line and nothing kept; an emptied chunk goes
 * back but the last, and the last at pcpu_trim; the checker finds a broken map.
 * Then a stress (ThreadSanitizer too): four threads, each its own CPU,
 * allocate, fill their own copies with a pattern, check and free, counting with
 * pcpu_add into one shared counter; the sums and the checker hold at the end.
 */
#include <stdatomic.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/pcpu.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

static struct mheap heap;
static struct spanheap sh;
static struct pcpu pc;
#define UNITS 8

static size_t in_use_bytes(void)
{
	static struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return st.bytes_in_use;
}

static bool fresh(void)
{
	return sh_heap_fresh(&heap, &sh) && pcpu_init(&pc, &sh, UNITS);
}

KTEST(pcpu, sizes_and_alignments_come_zeroed_in_every_unit)
{
	KASSERT(fresh());
	static const size_t sizes[] = {1, 7, 8, 9, 24, 100, 512, 4096, 8192};
	static const size_t aligns[] = {0, 1, 8, 16, 64, 512, 4096};
	static void *h[9 * 7];
	unsigned n = 0;
	for (unsigned s = 0; s < 9; s++)
		for (unsigned a = 0; a < 7; a++, n++) {
			KASSERT(h[n] = pcpu_alloc(&pc, sizes[s], aligns[a]));
			if (aligns[a])
				KEXPECT_EQ((uintptr_t)h[n] % aligns[a], 0);
			for (unsigned cpu = 0; cpu < UNITS; cpu++) {
				uint8_t *p = pcpu_ptr(&pc, h[n], cpu);
				KEXPECT_EQ((uintptr_t)p - (uintptr_t)h[n],
				           cpu * PCPU_UNIT_BYTES);
				KEXPECT(ktest_all_zero(p, sizes[s]));
				memset(p, 0xa5, sizes[s]);
			}
		}
	pcpu_check(&pc);
	for (unsigned i = 0; i < n; i++)
		pcpu_free(&pc, h[i]);
	struct pcpu_stats st;
	pcpu_stats(&pc, &st);
	KEXPECT_EQ(st.nchunks, 1); /* the last is kept */
	KEXPECT_EQ(st.nlive, 0);
	KEXPECT_EQ(st.used_bytes, 0);
	KEXPECT_EQ(st.nallocs, n);
	/* Reused, and zeroed again though every byte was written. */
	void *again = pcpu_alloc(&pc, 8192, 0);
	KASSERT(again);
	for (unsigned cpu = 0; cpu < UNITS; cpu++)
		KEXPECT(ktest_all_zero(pcpu_ptr(&pc, again, cpu), 8192));
	pcpu_free(&pc, again);
	pcpu_check(&pc);
	sh_heap_release(&heap, &sh);
}

KTEST(pcpu, misuse_panics_naming_the_pointer)
{
	KASSERT(fresh());
	uint8_t *a = pcpu_alloc(&pc, 64, 0), *b = pcpu_alloc(&pc, 64, 0);
	void *obj = spanheap_alloc(&sh, 64, 0);
	KASSERT(a && b && obj);
	char want[160];
	snprintf(want, sizeof(want), "free of %p: not from pcpu_alloc", obj);
	SH_EXPECT_PANIC(pcpu_free(&pc, obj), want);
	snprintf(want, sizeof(want), "free of %p (chunk 0", (void *)(a + 8));
	SH_EXPECT_PANIC(pcpu_free(&pc, a + 8), want);
	SH_EXPECT_PANIC(pcpu_free(&pc, a + 8), "a pointer into an allocation");
	SH_EXPECT_PANIC(pcpu_free(&pc, a + 3), "a pointer into an allocation");
	SH_EXPECT_PANIC(pcpu_free(&pc, pcpu_ptr(&pc, a, 2)),
	                "CPU 2's unit, offset 0): a copy of another CPU");
	/* CPU 1's copy: one unit past the handle, the bound itself. */
	SH_EXPECT_PANIC(pcpu_free(&pc, pcpu_ptr(&pc, a, 1)),
	                "CPU 1's unit, offset 0): a copy of another CPU");
	snprintf(want, sizeof(want), "copy of %p for CPU 8: only CPUs 0 to 7",
	         (void *)a);
	SH_EXPECT_PANIC(pcpu_ptr(&pc, a, UNITS), want);
	pcpu_free(&pc, a);
	SH_EXPECT_PANIC(pcpu_free(&pc, a), "freed already (a double free)");
	pcpu_free(&pc, NULL);
	pcpu_check(&pc); /* the refused calls changed nothing */
	pcpu_free(&pc, b);
	spanheap_free(&sh, obj);
	sh_heap_release(&heap, &sh);
}

KTEST(pcpu, bad_requests_and_no_memory_give_null_keeping_nothing)
{
	KASSERT(fresh());
	KEXPECT(!pcpu_init(&(struct pcpu){0}, &sh, 0));
	KEXPECT(strstr(mm_port_last_log(), "0 units refused"));
	KEXPECT(!pcpu_alloc(&pc, 0, 0));
	KEXPECT(strstr(mm_port_last_log(), "refused: size 0"));
	KEXPECT(!pcpu_alloc(&pc, 8193, 0));
	KEXPECT(strstr(mm_port_last_log(), "above PCPU_UNIT_BYTES"));
	KEXPECT(!pcpu_alloc(&pc, 8, 48));
	KEXPECT(strstr(mm_port_last_log(), "not a power of two"));
	KEXPECT(!pcpu_alloc(&pc, 8, 8192));
	KEXPECT(strstr(mm_port_last_log(), "above a page"));
	/* The struct (1st call), then the memory (2nd): refused. */
	for (uint32_t nth = 1; nth <= 2; nth++) {
		size_t before = in_use_bytes();
		struct spanheap_fail_attr a = {.interval = nth,
		                               .probability =
		                                       SPANHEAP_FAIL_PROB_ALL,
		                               .times = 1};
		KASSERT(spanheap_fail_arm(&sh, &a));
		KEXPECT(pcpu_alloc(&pc, 16, 0) == NULL);
		spanheap_fail_disarm(&sh);
		KEXPECT_EQ(in_use_bytes(), before);
	}
	/* The limit: a whole unit per chunk. */
	static void *h[PCPU_MAX_CHUNKS];
	size_t base = in_use_bytes(); /* no chunk yet */
	KASSERT(h[0] = pcpu_alloc(&pc, 8192, 0));
	size_t one = in_use_bytes();
	for (unsigned i = 1; i < PCPU_MAX_CHUNKS; i++)
		KASSERT(h[i] = pcpu_alloc(&pc, 8192, 0));
	size_t before = in_use_bytes();
	KEXPECT(pcpu_alloc(&pc, 8, 0) == NULL);
	KEXPECT(strstr(mm_port_last_log(), "all 64 chunks (PCPU_MAX_CHUNKS) "
	                                   "are full"));
	KEXPECT_EQ(in_use_bytes(), before);
	pcpu_check(&pc);
	for (unsigned i = 0; i < PCPU_MAX_CHUNKS; i++)
		pcpu_free(&pc, h[i]);
	struct pcpu_stats st;
	pcpu_stats(&pc, &st);
	KEXPECT_EQ(st.nchunks, 1);
	KEXPECT_EQ(in_use_bytes(), one); /* the 63 others went back */
	/* The spare too, at a trim (rv99: nothing gave it back). */
	KEXPECT_EQ(pcpu_empty_chunks(&pc), 1);
	KEXPECT_EQ(pcpu_trim(&pc), 1);
	pcpu_stats(&pc, &st);
	KEXPECT_EQ(st.nchunks, 0);
	KEXPECT_EQ(pcpu_empty_chunks(&pc), 0);
	KEXPECT_EQ(pcpu_trim(&pc), 0);
	KEXPECT_EQ(in_use_bytes(), base);
	pcpu_check(&pc);
	KASSERT(h[0] = pcpu_alloc(&pc, 8, 0)); /* a chunk is made again */
	pcpu_free(&pc, h[0]);
	sh_heap_release(&heap, &sh);
}

KTEST(pcpu, the_checker_finds_a_broken_map)
{
	KASSERT(fresh());
	void *h = pcpu_alloc(&pc, 24, 0);
	KASSERT(h);
	pc.chunks[0]->start[5] |= 1; /* a start bit on a free granule */
	SH_EXPECT_PANIC(pcpu_check(&pc), "a start bit on a free granule (3)");
	pc.chunks[0]->start[5] = 0;
	pc.chunks[0]->free_granules--;
	SH_EXPECT_PANIC(pcpu_check(&pc), "free_granules not the clear used");
	pc.chunks[0]->free_granules++;
	pc.used_granules++;
	SH_EXPECT_PANIC(pcpu_check(&pc), "used_granules not the used bits");
	pc.used_granules--;
	/* A used granule apart from any allocation, the counts agreeing
	 * (a free that left its last granule set): never freeable. */
	pc.chunks[0]->used[1] |= 1;
	pc.chunks[0]->free_granules--;
	pc.used_granules++;
	SH_EXPECT_PANIC(pcpu_check(&pc), "a used run with no start bit (3)");
	pc.chunks[0]->used[1] = 0;
	pc.chunks[0]->free_granules++;
	pc.used_granules--;
	/* Two chunks (a whole unit each), the second moved onto the first. */
	void *u = pcpu_alloc(&pc, PCPU_UNIT_BYTES, 0);
	KASSERT(u && pc.nchunks == 2);
	uintptr_t base = pc.chunks[1]->base;
	pc.chunks[1]->base = pc.chunks[0]->base + MM_PAGE_SIZE;
	SH_EXPECT_PANIC(pcpu_check(&pc), "two chunks overlapping (1)");
	pc.chunks[1]->base = base;
	pcpu_check(&pc);
	pcpu_free(&pc, u);
	pcpu_free(&pc, h);
	sh_heap_release(&heap, &sh);
}

enum { WORKERS = 4, KEEP = 16, OPS = 3000 };

struct worker {
	unsigned id;
	uint64_t rng;
	uint8_t *keep[KEEP];
	size_t size[KEEP];
	struct stress_failures failures;
};
static struct worker workers[WORKERS];
static int64_t *counter;

static uint8_t byte_of(const struct worker *w, unsigned k, size_t i)
{
	return (uint8_t)(w->id * 31 + k * 7 + i + 1);
}

static void drop(struct worker *w, unsigned k)
{
	uint8_t *mine = pcpu_ptr(&pc, w->keep[k], w->id);
	for (size_t i = 0; i < w->size[k]; i++)
		if (mine[i] != byte_of(w, k, i)) {
			stress_fail(&w->failures, "%p byte %zu changed",
			            (void *)w->keep[k], i);
			break;
		}
	pcpu_free(&pc, w->keep[k]);
	w->keep[k] = NULL;
}

static void work(void *arg)
{
	struct worker *w = arg;
	mm_port_set_cpu(w->id);
	for (int op = 0; op < OPS; op++) {
		uint64_t r = stress_random(&w->rng);
		unsigned k = (unsigned)(r % KEEP);
		pcpu_add(&pc, counter, 1);
		if (w->keep[k]) {
			drop(w, k);
			continue;
		}
		w->size[k] = 1 + (size_t)(r >> 8) % 300;
		w->keep[k] =
		        pcpu_alloc(&pc, w->size[k], (size_t)1 << (r >> 20) % 8);
		if (!w->keep[k]) {
			stress_fail(&w->failures, "no memory at op %d", op);
			continue;
		}
		uint8_t *mine = pcpu_ptr(&pc, w->keep[k], w->id);
		if (!ktest_all_zero(mine, w->size[k]))
			stress_fail(&w->failures, "%p not zeroed",
			            (void *)w->keep[k]);
		for (size_t i = 0; i < w->size[k]; i++)
			mine[i] = byte_of(w, k, i);
	}
	for (unsigned k = 0; k < KEEP; k++)
		if (w->keep[k])
			drop(w, k);
}

KTEST(pcpu, threads_on_every_cpu_allocate_fill_and_count)
{
	KASSERT(fresh());
	KASSERT(counter = pcpu_alloc(&pc, sizeof(*counter), 0));
	struct mm_thread *t[WORKERS];
	for (unsigned i = 0; i < WORKERS; i++)
		workers[i] =
		        (struct worker){.id = i, .rng = 0x9e3779b9u * (i + 1)};
	KASSERT(start_all(t, WORKERS, work, workers, sizeof(*workers)));
	join_all(t, WORKERS);
	for (int i = 0; i < WORKERS; i++)
		STRESS_REPORT(i, &workers[i].failures);
	KEXPECT_EQ(pcpu_sum(&pc, counter), WORKERS * OPS);
	for (unsigned i = 0; i < WORKERS; i++)
		KEXPECT_EQ(*(int64_t *)pcpu_ptr(&pc, counter, i), OPS);
	struct pcpu_stats st;
	pcpu_stats(&pc, &st);
	KEXPECT_EQ(st.nlive, 1);
	pcpu_check(&pc);
	pcpu_free(&pc, counter);
	sh_heap_release(&heap, &sh);
}
