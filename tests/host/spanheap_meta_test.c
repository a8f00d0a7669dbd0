/*
 * Where the span heap's own metadata live (mm/spanheap_meta.c): span
 * structs, the all-spans array, every CPU's magazine slab, poison mode's
 * side tables and the stack depot are runs of the span heap's metadata
 * heap, in an arena of its own, never among the object pages of the heap
 * it serves. Until a review they were runs of that heap, and a write past
 * the end of a span's last object could reach a CPU's magazine slab,
 * whose slots are handed out as they are: the overrun test below made the
 * next 16-byte allocation return the address the overrun wrote. Since a
 * later review, a pool's reserve array and a named cache's struct and
 * counters are blocks of the metadata heap too, which the same overrun
 * no longer reaches.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mempool.h"
#include "../../mm/spanheap_internal.h"
#include "objcache_test_util.h"
#include "spanheap_test_util.h"

/* True if [p, p + n) lies in h's arena. */
static bool in_arena(const struct mheap *h, const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p, lo = h->arena_base;
	uintptr_t hi = lo + h->arena_pages * MM_PAGE_SIZE;
	return a >= lo && a + n <= hi && a + n >= a;
}

/* Fails the test at the caller's line, naming what, unless the n bytes at
 * p are in the metadata heap's arena and none is in the object heap's. */
#define EXPECT_META(p, n, what)                                                \
	do {                                                                   \
		const void *p_ = (p);                                          \
		if (in_arena(&heap, p_, 1) ||                                  \
		    in_arena(&heap, (const char *)p_ + (n)-1, 1))              \
			ktest_fail_at(__FILE__, __LINE__,                      \
			              "%s at %p is among the objects", (what), \
			              p_);                                     \
		else if (!in_arena(&sh.meta, p_, (n)))                         \
			ktest_fail_at(__FILE__, __LINE__,                      \
			              "%s at %p is outside the metadata "      \
			              "heap",                                  \
			              (what), p_);                             \
	} while (0)

/* Every span struct, the live all-spans array, and each CPU's slab. */
static void expect_structs_and_slabs(void)
{
	EXPECT_META(sh.spans, sh.spans->npages * MM_PAGE_SIZE,
	            "the all-spans array");
	/* One struct in 16 (a page holds more): the first failure says
	 * enough. */
	for (size_t i = 0; i < sh.spans->len; i += 16)
		EXPECT_META(sh.spans->v[i], sizeof(struct mspan),
		            "a span struct");
	for (unsigned cpu = 0; cpu < MM_MAX_CPUS; cpu++)
		if (sh.caches[cpu].slab)
			EXPECT_META(sh.caches[cpu].slab,
			            sh.mag_slab_pages * MM_PAGE_SIZE,
			            "a magazine slab");
}

KTEST(spanheap_meta, structs_array_and_slabs_lie_apart_from_objects)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	enum { N = 600 };
	static void *p[N];
	/* Small objects on two CPUs (a slab each), large ones, and enough
	 * spans that the array grows past its first pages. */
	for (unsigned cpu = 0; cpu < 2; cpu++) {
		mm_port_set_cpu(cpu);
		for (size_t i = 0; i < N / 2; i++) {
			size_t size = i % 3 == 0 ? 64 << 10 : 16 << (i % 8);
			p[cpu * (N / 2) + i] = spanheap_alloc(&sh, size, 0);
			KASSERT(p[cpu * (N / 2) + i]);
		}
	}
	KASSERT(sh.caches[0].slab && sh.caches[1].slab);
	expect_structs_and_slabs();
	for (size_t i = 0; i < N; i++)
		spanheap_free(&sh, p[i]);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_meta, side_tables_and_depot_lie_apart_from_objects)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	KASSERT(sh.track);
	enum { N = 64 };
	static void *p[N];
	for (size_t i = 0; i < N; i++)
		KASSERT(p[i] = spanheap_alloc(&sh, 8 << (i % 10), 0));
	expect_structs_and_slabs();
	size_t tables = 0;
	for (size_t i = 0; i < sh.spans->len; i++) {
		struct mspan *s = sh.spans->v[i];
		if (s->redzone && tables++ % 4 == 0)
			EXPECT_META(s->redzone, MM_PAGE_SIZE, "a side table");
	}
	KEXPECT(tables > 0);
	KASSERT(sh.depot.buckets);
	EXPECT_META(sh.depot.buckets, MM_PAGE_SIZE, "the depot's buckets");
	size_t chunks = 0;
	for (size_t c = 0; c < SPANHEAP_DEPOT_CHUNKS; c++) {
		void *chunk = atomic_load(&sh.depot.chunks[c]);
		if (chunk) {
			EXPECT_META(chunk,
			            SPANHEAP_DEPOT_CHUNK_PAGES * MM_PAGE_SIZE,
			            "a depot chunk");
			chunks++;
		}
	}
	KEXPECT(chunks > 0);
	for (size_t i = 0; i < N; i++)
		spanheap_free(&sh, p[i]);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/* Where the overrun points the heap: writable (the old heap's pop cleared
 * its second word), and never an object. */
static uintptr_t target[4];

/* Makes sure the object heap's page at a is allocated, and so mapped, as
 * an overrun would find it in a busy heap: in a fresh heap the page heap
 * gives its lowest free pages first, so single pages are taken until a is
 * (at most max of them, kept in held[]). False if it never is. */
static bool page_taken(uintptr_t a, void **held, size_t max)
{
	uint64_t alloc[PALLOCBITS_WORDS], scav[PALLOCBITS_WORDS];
	size_t ci = (a - heap.arena_base) / PALLOC_CHUNK_BYTES;
	size_t pi = (a - heap.arena_base) / MM_PAGE_SIZE % PALLOC_CHUNK_PAGES;
	if (mheap_chunk_bits(&heap, ci, alloc, scav) &&
	    (alloc[pi / 64] >> (pi % 64) & 1))
		return true;
	for (size_t i = 0; i < max; i++) {
		held[i] = mheap_alloc_pages(&heap, 1, 0);
		if ((uintptr_t)held[i] == a)
			return true;
	}
	return false;
}

/* A page and 64 bytes of words at where, each the address of decoy: an
 * overrun of the writer's choosing. */
static void overrun_with_decoys(uintptr_t where, const void *decoy)
{
	static uintptr_t w[(64 + MM_PAGE_SIZE) / sizeof(uintptr_t)];
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		w[i] = (uintptr_t)decoy;
	memcpy((void *)where, w, sizeof(w));
}

/*
 * The review's overrun: a copy past the last 64-byte object of a span
 * through the whole next page, with the address of a static variable in
 * every word, then 16-byte allocations. In the old heap, a CPU's first
 * free made its magazine slab right after the span made last (the struct
 * page of the first span came before it), and the next 16-byte
 * allocation popped &target[0] from the slot below its empty magazine.
 */
/* The objects of first's span (64-byte ones) taken until its last is
 * (into obj, at most max): that object's address, or 0; *end: the span's
 * end, where the next span the heap makes begins (in a fresh heap the
 * page heap gives its lowest free pages first). */
static uintptr_t last_of_the_span(void *first, void **obj, size_t max,
                                  uintptr_t *end)
{
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)first);
	if (!mheap_span_is_span(s) || s->elemsize != 64)
		return 0;
	uintptr_t last = s->base + (uintptr_t)(s->nelems - 1) * 64;
	*end = s->base + s->npages * MM_PAGE_SIZE;
	if (last + 64 != *end || (uintptr_t)first == last)
		return 0;
	for (size_t n = 0; n < s->nelems && n < max; n++) {
		obj[n] = spanheap_alloc(&sh, 64, 0);
		if ((uintptr_t)obj[n] == last)
			return last;
	}
	return 0;
}

KTEST(spanheap_meta, an_overrun_past_a_span_reaches_no_magazine)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *small = spanheap_alloc(&sh, 16, 0); /* a page of structs */
	void *first = spanheap_alloc(&sh, 64, 0);
	KASSERT(small && first && !sh.caches[0].slab);
	/* Every object of the span ours, the last one among them. */
	static void *obj[4096];
	uintptr_t end, last = last_of_the_span(first, obj, 4096, &end);
	KASSERT(last);
	spanheap_free(&sh, first); /* the CPU's first free: its slab */
	KASSERT(sh.caches[0].slab);
	static void *held[64];
	KASSERT(page_taken(end, held, 64));
	overrun_with_decoys(last, target);
	for (size_t i = 0; i < 8; i++) {
		void *q = spanheap_alloc(&sh, 16, 0);
		KASSERT(q);
		KEXPECT(q != (void *)target);
		KEXPECT(mheap_span_is_span(
		        mheap_span_lookup(&heap, (uintptr_t)q)));
	}
	SH_CHECK(&sh, "after the overrun");
	sh_heap_release(&heap, &sh);
}

/*
 * A pool's reserve array and a named cache's struct and counters are
 * blocks of the metadata heap too (mm/spanheap_meta_blocks.c): until a
 * review they were objects of the heap beside others of their class.
 */
KTEST(spanheap_meta, reserves_and_caches_lie_apart_from_objects)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static struct mempool small_pool, big_pool;
	KASSERT(mempool_init_heap(&small_pool, &sh, "small", 4, 64));
	KASSERT(mempool_init_heap(&big_pool, &sh, "big", 600, 32));
	struct objcache *c = objcache_create(&sh, "inode", 40, 0);
	KASSERT(c);
	EXPECT_META(small_pool.reserve, 4 * sizeof(void *), "a reserve");
	EXPECT_META(big_pool.reserve, 600 * sizeof(void *), "a large reserve");
	EXPECT_META(c, sizeof(*c), "a cache's struct");
	EXPECT_META(sh.objcache_counts,
	            (size_t)MM_MAX_CPUS * OBJCACHE_MAX * sizeof(int64_t),
	            "the caches' counters");
	KEXPECT(mempool_resize(&small_pool, 300)); /* a new array */
	EXPECT_META(small_pool.reserve, 300 * sizeof(void *), "a grown one");
	KEXPECT(mempool_destroy(&small_pool) && mempool_destroy(&big_pool));
	KEXPECT(objcache_destroy(c));
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh); /* the blocks' pages went back */
	SH_CHECK(&sh, "after the pools and the cache");
	sh_heap_release(&heap, &sh);
}

/*
 * The overrun above into what follows a full span, where a pool made
 * next put its reserve's array in the old heap (a 32-byte object of the
 * span made right after): with the heap failing, mempool_alloc then took
 * a reserve slot the overrun wrote, and handed out &target.
 */
KTEST(spanheap_meta, an_overrun_past_a_span_reaches_no_reserve)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *elem = spanheap_alloc(&sh, 100, 0); /* the elements' span */
	void *first = spanheap_alloc(&sh, 64, 0);
	KASSERT(elem && first);
	static void *obj[4096], *held[64];
	uintptr_t end, last = last_of_the_span(first, obj, 4096, &end);
	KASSERT(last);
	static struct mempool pool;
	KASSERT(mempool_init_heap(&pool, &sh, "victim", 4, 100));
	KASSERT(page_taken(end, held, 64));
	overrun_with_decoys(last, target);
	struct spanheap_fail_attr all = {.interval = 1,
	                                 .probability = SPANHEAP_FAIL_PROB_ALL,
	                                 .times = -1};
	KASSERT(spanheap_fail_arm(&sh, &all));
	void *e[4];
	for (int i = 0; i < 4; i++) {
		e[i] = mempool_alloc(&pool, MM_ATOMIC);
		KASSERT(e[i] && e[i] != (void *)target);
		KEXPECT_EQ(spanheap_usable_size(&sh, e[i]), 112);
	}
	spanheap_fail_disarm(&sh);
	for (int i = 0; i < 4; i++)
		mempool_free(&pool, e[i]);
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	SH_CHECK(&sh, "after the overrun");
	sh_heap_release(&heap, &sh);
}

/*
 * The same overrun with copies of a cache's struct whose counters'
 * pointer is the writer's, a copy at every object of the struct's class
 * past the span: in the old heap the cache made next had its struct
 * there, and its next allocation counted into decoy. Its counters stay
 * its own.
 */
KTEST(spanheap_meta, an_overrun_past_a_span_reaches_no_cache)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *first = spanheap_alloc(&sh, 64, 0);
	KASSERT(first);
	static void *obj[4096], *held[64];
	uintptr_t end, last = last_of_the_span(first, obj, 4096, &end);
	KASSERT(last);
	struct objcache *c = objcache_create(&sh, "victim", 24, 0);
	KASSERT(c);
	KASSERT(page_taken(end, held, 64));
	static int64_t decoy[MM_MAX_CPUS * OBJCACHE_MAX]; /* a counter area */
	struct objcache fake = *c;
	fake.counts = decoy;
	size_t stride = sizeclass_info[sizeclass_of(sizeof(fake))].size;
	static unsigned char w[64 + MM_PAGE_SIZE];
	memset(w, 0, sizeof(w));
	for (size_t at = 64; at + sizeof(fake) <= sizeof(w); at += stride)
		memcpy(w + at, &fake, sizeof(fake));
	memcpy((void *)last, w, sizeof(w));
	void *p = objcache_alloc(c, 0);
	KASSERT(p);
	KASSERT_EQ(decoy[0], 0);
	KEXPECT_EQ(live(c), 1);
	objcache_free(c, p);
	KEXPECT(objcache_destroy(c));
	SH_CHECK(&sh, "after the overrun");
	sh_heap_release(&heap, &sh);
}

/* A pointer into the metadata is named as the heap's own: by
 * spanheap_where (and its line), and by a free or a usable size, which
 * panic saying so (until the metadata heap, a span struct was page-heap
 * memory among the objects, and a slab the same). */
KTEST(spanheap_meta, a_pointer_into_the_metadata_is_named)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	spanheap_free(&sh, spanheap_alloc(&sh, 16, 0)); /* CPU 0's slab */
	uintptr_t *slab = sh.caches[0].slab;
	struct mspan *s = sh.spans->v[0];
	KASSERT(slab && s);
	struct spanheap_where w;
	KEXPECT(spanheap_where(&sh, slab, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_META);
	KEXPECT(spanheap_where(&sh, s, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_META);
	char buf[512];
	sh_where_log(&sh, s, buf, sizeof(buf));
	KEXPECT(strstr(buf, "in the heap's own metadata") != NULL);
	/* The arena's bounds, half-open: its last byte is the metadata's,
	 * the byte past its end is not (a mutation audit found the bound
	 * unpinned: <= passed). */
	uintptr_t end = sh.meta.arena_base + sh.meta.arena_pages * MM_PAGE_SIZE;
	KEXPECT(spanheap_where(&sh, (void *)(end - 1), &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_META);
	KEXPECT(!spanheap_where(&sh, (void *)end, &w) ||
	        w.kind != SPANHEAP_WHERE_META);
	KEXPECT(!spanheap_meta_holds(&sh, end));
	KEXPECT(!spanheap_meta_holds(&sh, sh.meta.arena_base - 1));
	EXPECT_MISUSE(spanheap_free(&sh, s), "in the heap's own metadata", s);
	EXPECT_MISUSE(spanheap_usable_size(&sh, slab),
	              "in the heap's own metadata", slab);
	sh_heap_release(&heap, &sh);
}

/* spanheap_release_all gives back the metadata heap's free pages too:
 * poison mode's side tables of the spans a sweep freed, and the all-spans
 * arrays the growths replaced. */
KTEST(spanheap_meta, release_all_gives_back_free_metadata_pages)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	enum { N = 2000 };
	static void *p[N];
	for (size_t i = 0; i < N; i++)
		KASSERT(p[i] = spanheap_alloc(&sh, 8 << (i % 10), 0));
	for (size_t i = 0; i < N; i++)
		spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	struct mheap_stats ms;
	mheap_stats(&sh.meta, &ms);
	KASSERT(ms.free_backed_pages > 0);
	spanheap_release_all(&sh);
	mheap_stats(&sh.meta, &ms);
	KEXPECT_EQ(ms.free_backed_pages, 0);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}

/* spanheap_check checks the metadata heap as it checks the object heap
 * (mheap_check): a broken count of its pages is reported. */
KTEST(spanheap_meta, the_checker_checks_the_metadata_heap)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	SH_CHECK(&sh, "a fresh heap");
	sh.meta.taken_pages++; /* invariant 1 (mheap.c) broken */
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(), "mheap: check") != NULL);
	/* The panic abandoned the check holding the metadata heap's lock. */
	KEXPECT(mm_lock_held(&sh.meta.lock));
	if (mm_lock_held(&sh.meta.lock))
		mm_lock_release(&sh.meta.lock, 0);
	sh_unpin_after_panic();
	sh.meta.taken_pages--;
	SH_CHECK(&sh, "mended");
	sh_heap_release(&heap, &sh);
}

/* The statistics and the dump show the metadata heap: its pages in use
 * are the span heap's own (with no side table, all kept). */
KTEST(spanheap_meta, statistics_and_dump_show_the_metadata_heap)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	void *q = spanheap_alloc(&sh, 100, 0);
	KASSERT(q);
	spanheap_free(&sh, q);
	static struct spanheap_stats st; /* large: not on the stack */
	spanheap_stats(&sh, &st);
	KEXPECT(st.meta.in_use_pages > 0);
	KEXPECT_EQ(st.meta.in_use_pages, sh_kept_pages(&sh));
	KEXPECT_EQ(st.meta_arena_bytes, sh.meta.arena_pages * MM_PAGE_SIZE);
	static char buf[8192];
	sh_dump_log(&sh, buf, sizeof(buf));
	char want[64];
	snprintf(want, sizeof(want), "metadata heap: %zu pages in use",
	         st.meta.in_use_pages);
	KEXPECT(strstr(buf, want) != NULL);
	sh_heap_release(&heap, &sh);
}
