/*
 * The span heap's (mm/spanheap.c) failure paths and the refill that meets
 * its own CPU's work: spanheap_init refusing a bad configuration and
 * failing without memory for its span array (its unwinding when a later
 * part fails is spanheap_init_fail_test.c's); a span that cannot get a
 * span struct (no memory for a bigger all-spans array, or for the struct
 * page after it) leaking none of the pages it took; and a refill whose
 * CPU, while the refill was unpinned making a span, cached a span of the
 * same class (with an object left, or full).
 *
 * The span-struct cases fill the structs first, so that the next span
 * needs a bigger all-spans array (spanheap_span.c, structs_reserve); the page
 * heap's arena is then used up but for a hole of the pages wanted.
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "mheap_hold_util.h"
#include "spanheap_init_fail_util.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;
static struct spanheap sh;

/* A large span: one span struct each. */
enum { BIG = 40 << 10, BIG_PAGES = BIG / PG };

/* ---- spanheap_init ------------------------------------------------------- */

static struct spanheap other; /* large: not on the stack */
static unsigned char other_was[sizeof(struct spanheap)];

/* Each field out of range: init says which field and its range, returns
 * false and writes nothing of the span heap it was given. A period under
 * SPANHEAP_MIN_PERIOD_NS was taken, down to 1 ns, at which an idle heap's
 * sweeper spun (its looks, every quarter period, are outside its CPU
 * budget's pacing): two thirds of a CPU in an ASan build. */
KTEST(spanheap_fail, init_refuses_a_bad_config)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	enum { MS = 1000 * 1000 };
	static const struct {
		const char *what, *field;
		unsigned pending_permille, batch_spans, cpu_permille;
		uint64_t period_ns;
		unsigned guard_slots, guard_interval;
	} bad[] = {
	        {"pending 0", "pending_permille (1 to 1000)", 0, 32, 10, MS, 0,
	         0},
	        {"pending 1001", "pending_permille (1 to 1000)", 1001, 32, 10,
	         MS, 0, 0},
	        {"batch 0", "batch_spans (at least 1)", 125, 0, 10, MS, 0, 0},
	        {"period 0", "period_ns (at least 1000000", 125, 32, 10, 0, 0,
	         0},
	        {"period 1", "period_ns (at least 1000000", 125, 32, 10, 1, 0,
	         0},
	        {"period under 1 ms", "period_ns (at least 1000000", 125, 32,
	         10, MS - 1, 0, 0},
	        {"cpu 0", "cpu_permille (1 to 1000)", 125, 32, 0, MS, 0, 0},
	        {"cpu 1001", "cpu_permille (1 to 1000)", 125, 32, 1001, MS, 0,
	         0},
	        {"guard interval 0", "guard_interval (at least 1", 125, 32, 10,
	         MS, 255, 0},
	};
	size_t used = sh_in_use_pages(&heap);
	mm_port_set_quiet(true);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct spanheap_config cfg;
		spanheap_config_default(&cfg);
		cfg.pending_permille = bad[i].pending_permille;
		cfg.batch_spans = bad[i].batch_spans;
		cfg.cpu_permille = bad[i].cpu_permille;
		cfg.period_ns = bad[i].period_ns;
		cfg.guard_slots = (uint8_t)bad[i].guard_slots;
		cfg.guard_interval = (uint16_t)bad[i].guard_interval;
		memset(&other, 0x5a, sizeof(other));
		memcpy(other_was, &other, sizeof(other));
		unsigned long logs = mm_port_log_count();
		if (spanheap_init(&other, &heap, &cfg))
			ktest_fail_at(__FILE__, __LINE__, "%s: accepted",
			              bad[i].what);
		else if (memcmp(&other, other_was, sizeof(other)) != 0)
			ktest_fail_at(__FILE__, __LINE__,
			              "%s: the heap was written", bad[i].what);
		KEXPECT_EQ(mm_port_log_count(), logs + 1);
		KEXPECT(strstr(mm_port_last_log(), "bad config") != NULL);
		if (!strstr(mm_port_last_log(), bad[i].field))
			ktest_fail_at(__FILE__, __LINE__,
			              "%s: the message does not name %s: %s",
			              bad[i].what, bad[i].field,
			              mm_port_last_log());
	}
	mm_port_set_quiet(false);
	KEXPECT_EQ(sh_in_use_pages(&heap), used);
	SH_CHECK(&sh, "after the refusals");
	sh_heap_release(&heap, &sh);
}

static struct mh_hold hold;

/*
 * The span array cannot be had: init fails, saying so, and takes no page
 * of the object heap. The array is the first run of the metadata heap,
 * which is spanheap_init's own: the port refuses the nth mapping from
 * now, for n = 1, 2, ... until the set-up gets past the array, so that
 * one try fails in the metadata heap's first growth (until the metadata
 * heap, the test held every page of the object heap). That heap keeps its
 * reservations (spanheap_meta.c, "Limits"), which sh->meta names: given
 * back here, the port holds what it held before the try. (A try that
 * fails in palloc's set-up keeps what palloc keeps, port.h.)
 */
KTEST(spanheap_fail, init_without_memory_for_the_span_array)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	hc.reserve_pages = 0;
	KASSERT(mheap_init(&heap, &hc));
	struct spanheap_config cfg;
	spanheap_config_default(&cfg);
	bool said;
	bool up = sh_init_until_maps_suffice(
	        &sh, &heap, &cfg, 0, "no memory for the span array", &said);
	KEXPECT(said);
	KASSERT(up);
	mm_port_set_cpu(0);
	void *p = spanheap_alloc(&sh, 64, 0);
	KEXPECT(p != NULL);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the second init");
	sh_heap_release(&heap, &sh);
}

/* ---- No memory for a span struct ----------------------------------------- */

/* A heap whose next span needs a bigger all-spans array; the BIG objects
 * that used the structs up go in objs[], *n of them. */
static void *objs[1024];

static bool heap_with_structs_used_up(size_t *n)
{
	if (!sh_heap_tight(&heap, &sh, 32))
		return false;
	mm_port_set_cpu(0);
	*n = 0;
	return sh_fill_until_growth(&sh, BIG, objs, 1024, n);
}

/* Frees v[0..n) and checks that the heap holds no span after. */
static void free_all(void **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, v[i]);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh); /* spans on the central lists */
	SH_CHECK(&sh, "after the frees");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
}

/* The pages of the all-spans array that structs_reserve makes next. */
static size_t next_spans_pages(void)
{
	size_t need = sh.spans->len + SH_STRUCTS_PER_PAGE;
	size_t cap = sh.spans->cap * 2 > need ? sh.spans->cap * 2 : need;
	size_t bytes = sizeof(struct spanheap_spans) + cap * sizeof(void *);
	return (bytes + PG - 1) / PG;
}

/* What a failed allocation must leave as it was. */
struct before {
	size_t in_use, meta_in_use, nstructs, spans_cap;
	struct spanheap_spans *spans;
};

static void before_take(struct before *b)
{
	b->in_use = sh_in_use_pages(&heap);
	b->meta_in_use = sh_in_use_pages(&sh.meta);
	b->nstructs = sh.nstructs;
	b->spans = sh.spans;
	b->spans_cap = sh.spans->cap;
}

static void expect_unchanged(int line, const char *what, const struct before *b)
{
	if (sh_in_use_pages(&heap) != b->in_use)
		ktest_fail_at(__FILE__, line, "%s: %zu pages in use, not %zu",
		              what, sh_in_use_pages(&heap), b->in_use);
	if (sh_in_use_pages(&sh.meta) != b->meta_in_use)
		ktest_fail_at(__FILE__, line,
		              "%s: %zu metadata pages in use, not %zu", what,
		              sh_in_use_pages(&sh.meta), b->meta_in_use);
	if (sh.nstructs != b->nstructs || sh.spans != b->spans ||
	    sh.spans->cap != b->spans_cap)
		ktest_fail_at(__FILE__, line,
		              "%s: the span structs or their array changed",
		              what);
}

/*
 * Out of memory in structs_reserve: the large span's pages came, but the
 * bigger all-spans array did not (the metadata heap full), or the array
 * did and the struct page after it did not (a hole of the array's pages
 * in the metadata heap). Either way the allocation fails and every page
 * it took goes back, to either heap; a small class's span the same. With
 * the memory back, the same allocations work. (Until the metadata heap,
 * the holes were the object heap's, and held the span's pages too.)
 */
KTEST(spanheap_fail, no_memory_for_a_span_struct_leaks_nothing)
{
	size_t nobj;
	KASSERT(heap_with_structs_used_up(&nobj));
	struct before b;
	static const struct {
		const char *what;
		size_t size;
	} cases[] = {
	        {"large, no array", BIG},
	        {"large, no struct page", BIG},
	        {"small, no array", 64},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t hole = i == 1 ? next_spans_pages() : 0;
		KASSERT(mh_hold_all_but(&sh.meta, &hold, hole));
		before_take(&b);
		mm_port_set_quiet(true);
		void *p = spanheap_alloc(&sh, cases[i].size, 0);
		mm_port_set_quiet(false);
		if (p)
			ktest_fail_at(__FILE__, __LINE__, "%s: got %p",
			              cases[i].what, p);
		expect_unchanged(__LINE__, cases[i].what, &b);
		/* The hole is still free, whole. */
		void *again =
		        hole ? mheap_alloc_pages(&sh.meta, hole, 0) : NULL;
		KEXPECT(!hole || again != NULL);
		if (again)
			mheap_free_pages(&sh.meta, again, hole);
		SH_CHECK(&sh, cases[i].what);
		mh_hold_release(&sh.meta, &hold);
	}
	void *big = spanheap_alloc(&sh, BIG, 0);
	void *small = spanheap_alloc(&sh, 64, 0);
	KEXPECT(big && small);
	KEXPECT(sh.spans->cap > b.spans_cap);
	spanheap_free(&sh, small);
	spanheap_free(&sh, big);
	free_all(objs, nobj);
	sh_heap_release(&heap, &sh);
}

/*
 * The all-spans array grows ahead of need for a thread caller (at three
 * quarters), and only when full for an atomic one, which may take at most
 * MHEAP_ATOMIC_MAX_PAGES pages: past 32K spans an atomic allocation that
 * had to grow the array failed while memory was plentiful. So the last
 * quarter is the atomic callers': they fill it with no growth, and the
 * thread caller that reaches it grows the array at once.
 */
KTEST(spanheap_fail, span_array_grows_ahead_for_atomic_callers)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	static void *many[4096];
	size_t n = 0;
	KASSERT(sh_fill_until_growth(&sh, BIG, many, 4096, &n));
	size_t cap0 = sh.spans->cap;
	/* Three quarters full, with room left for atomic callers. */
	KEXPECT(!sh_spans_must_grow(&sh, true));
	KASSERT((many[n] = spanheap_alloc(&sh, BIG, 0)) != NULL);
	n++;
	size_t cap1 = sh.spans->cap;
	ktest_diag("array of %zu spans grew to %zu with %zu made", cap0, cap1,
	           sh.spans->len);
	KEXPECT(cap1 > cap0);
	/* Atomic callers fill the new array to its end: no growth. */
	size_t atomic = 0;
	while (!sh_spans_must_grow(&sh, true)) {
		KASSERT(n < 4096 &&
		        (many[n] = spanheap_alloc(&sh, BIG, MM_ATOMIC)));
		n++;
		atomic++;
	}
	KEXPECT(sh.spans->cap == cap1);
	KEXPECT(atomic > 0);
	KASSERT((many[n] = spanheap_alloc(&sh, BIG, 0)) != NULL);
	n++;
	KEXPECT(sh.spans->cap > cap1);
	free_all(many, n);
	sh_heap_release(&heap, &sh);
}

/* ---- A refill that meets its CPU's own refill ---------------------------- */

/*
 * spanheap_cache_refill unpins to make a span; meanwhile something on its CPU
 * (an interrupt in the kernel; here the test hook, on the same thread and CPU)
 * refilled the same class. The hook runs in the refill's structs_reserve (the
 * all-spans array grows), once.
 */
static size_t hook_size;
static void *hook_got;

static void refill_meanwhile(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_SPANS_SIZED || !hook_size)
		return;
	size_t size = hook_size;
	hook_size = 0;
	hook_got = spanheap_alloc(&sh, size, 0);
}

static struct mspan *span_at(const void *p)
{
	return mheap_span_lookup(&heap, (uintptr_t)p);
}

/* Allocates size with the hook armed; NULL if anything went wrong. */
static void *alloc_with_a_refill_meanwhile(size_t size)
{
	hook_size = size;
	hook_got = NULL;
	mheap_test_hook = refill_meanwhile;
	void *p = spanheap_alloc(&sh, size, 0);
	mheap_test_hook = NULL;
	return hook_size == 0 && hook_got ? p : NULL;
}

/* The span cached meanwhile has objects left: the refill takes the next
 * one and gives back the span it made (empty: freed). */
KTEST(spanheap_fail, refill_takes_from_a_span_cached_meanwhile)
{
	size_t nobj;
	KASSERT(heap_with_structs_used_up(&nobj));
	unsigned cls = sizeclass_of(64);
	uint64_t freed0 = sh.n.freed_spans;
	char *p = alloc_with_a_refill_meanwhile(64);
	KASSERT(p != NULL);
	char *q = hook_got;
	struct mspan *s = span_at(q);
	KEXPECT(span_at(p) == s);
	KEXPECT(p == q + 64);
	KEXPECT(sh.caches[0].alloc[cls] == s);
	KEXPECT_EQ(atomic_load(&sh.central[cls].nspans), 1);
	KEXPECT_EQ(sh.n.freed_spans, freed0 + 1); /* the one it made */
	SH_CHECK(&sh, "after the refill");
	spanheap_free(&sh, p);
	spanheap_free(&sh, q);
	free_all(objs, nobj);
	sh_heap_release(&heap, &sh);
}

/* The span cached meanwhile is full (its class holds one object): the
 * refill hands it back, on the full list, and caches the one it made. */
KTEST(spanheap_fail, refill_hands_back_a_full_span_cached_meanwhile)
{
	size_t nobj;
	KASSERT(heap_with_structs_used_up(&nobj));
	unsigned cls = SC_NCLASSES - 1;
	KASSERT_EQ(sizeclass_info[cls].nelems, 1);
	size_t size = sizeclass_info[cls].size;
	void *p = alloc_with_a_refill_meanwhile(size);
	KASSERT(p != NULL);
	struct mspan *s = span_at(hook_got), *t = span_at(p);
	KEXPECT(s != t);
	KEXPECT(sh.caches[0].alloc[cls] == t);
	KEXPECT_EQ(s->list, MSPAN_LIST_FULL);
	KEXPECT_EQ(s->alloc_count, 1);
	KEXPECT_EQ(atomic_load(&sh.central[cls].nspans), 2);
	SH_CHECK(&sh, "after the refill");
	spanheap_free(&sh, p);
	spanheap_free(&sh, hook_got);
	free_all(objs, nobj);
	sh_heap_release(&heap, &sh);
}

/* ---- Out of pages, with frees not yet swept -------------------------------
 */

/* 16 MiB of 64-byte objects: more than the tests' 8 MiB arena holds,
 * every page of which may be a span's (the span heap's own pages are
 * its metadata heap's: 1 << 17 filled it exactly). */
static void *many[1 << 18];

/* A large object: a span of its own, freed at once. */
enum { LARGE = 64 << 10 };

/* Allocates objects of size bytes into many[] until one fails; their
 * number. */
static size_t fill_many(size_t size)
{
	size_t n = 0;
	while (n < sizeof many / sizeof many[0] &&
	       (many[n] = spanheap_alloc(&sh, size, 0)) != NULL)
		n++;
	return n;
}

static void free_many(size_t n)
{
	for (size_t i = 0; i < n; i++)
		spanheap_free(&sh, many[i]);
}

/*
 * The arena is used up by 64-byte objects, which are then all freed; no
 * sweep has run (no sweeper thread here). A thread allocation of another
 * class, and then large objects, must get that memory (all but the span
 * heap's own pages), not NULL: the page heap's refusal makes the span
 * heap sweep first (Go's mheap.reclaim).
 */
KTEST(spanheap_fail, out_of_pages_sweeps_before_it_fails)
{
	KASSERT(sh_heap_tight(&heap, &sh, 4));
	mm_port_set_cpu(0);
	size_t n = fill_many(64);
	KASSERT(n > 0 && n < sizeof many / sizeof many[0]);
	free_many(n);
	size_t m = fill_many(256);
	KEXPECT(m * 256 >= n * 64 / 8 * 7);
	free_many(m);
	size_t k = fill_many(LARGE);
	KEXPECT(k * LARGE >= n * 64 / 8 * 7);
	free_many(k);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "after the frees");
	KEXPECT_EQ(sh_span_pages(&heap, &sh), 0);
	sh_heap_release(&heap, &sh);
}
