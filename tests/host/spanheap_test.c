/*
 * The span heap's allocation calls (mm/spanheap.c) through the POSIX
 * port: every size class (alignment, usable size), large spans, aligned
 * allocation, impossible requests, MM_NO_GROW and MM_ZERO.
 * spanheap_check runs at every quiet point. calloc and realloc are in
 * spanheap_realloc_test.c, the pages a large object's zeroing writes in
 * spanheap_zero_pages_test.c, the free paths, sweeping and statistics in
 * spanheap_sweep_test.c, misuse in
 * spanheap_misuse_test.c, failed set-up and out of memory in
 * spanheap_fail_test.c, the fold queues in spanheap_queue_test.c, the
 * per-CPU caches' refills across cycles in spanheap_cache_test.c, the
 * sweeper thread's triggers and wake-ups in spanheap_sweeper_test.c,
 * boundaries a mutation review found untested in spanheap_edge_test.c.
 *
 * Each test makes its own heap over a 1 GiB arena and gives it back at
 * the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;
static struct spanheap sh;

static bool is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

/* ---- Size classes -------------------------------------------------------- */

/* How one_class_by allocates: spanheap_alloc; spanheap_alloc_class, as a
 * caller that knows the class at compile time does; spanheap_alloc_sized,
 * as one that knows its flags there. */
enum alloc_way { BY_SIZE, BY_CLASS, BY_SIZED };

static void *alloc_by(enum alloc_way way, unsigned cls, size_t size)
{
	return way == BY_CLASS   ? spanheap_alloc_class(&sh, cls, size, 0)
	       : way == BY_SIZED ? spanheap_alloc_sized(&sh, size, 0)
	                         : spanheap_alloc(&sh, size, 0);
}

/* Objects of one request size: 16-aligned, size-aligned for powers of two
 * up to a page, usable size the class's size, all distinct and writable. */
static void one_class_by(unsigned cls, size_t size, enum alloc_way way)
{
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	size_t n = ci->nelems + 3u; /* a second span */
	char *p[SC_MAX_NELEMS + 3];
	for (size_t i = 0; i < n; i++) {
		p[i] = alloc_by(way, cls, size);
		if (!p[i]) {
			ktest_fail_at(__FILE__, __LINE__,
			              "class %u: alloc %zu of %zu bytes failed",
			              cls, i, size);
			n = i;
			break;
		}
		uintptr_t a = (uintptr_t)p[i];
		if (a % 16 ||
		    (is_pow2(ci->size) && ci->size <= PG && a % ci->size) ||
		    spanheap_usable_size(&sh, p[i]) != ci->size)
			ktest_fail_at(
			        __FILE__, __LINE__,
			        "class %u (%u bytes), request %zu: object "
			        "%p, usable size %zu",
			        cls, ci->size, size, p[i],
			        spanheap_usable_size(&sh, p[i]));
		memset(p[i], (int)i, ci->size);
	}
	for (size_t i = 0; i < n; i++) {
		if (!all_bytes(p[i], ci->size, (unsigned char)i))
			ktest_fail_at(__FILE__, __LINE__,
			              "class %u: object %zu (%p) overwritten",
			              cls, i, p[i]);
		spanheap_free(&sh, p[i]);
	}
}

static void one_class(unsigned cls, size_t size)
{
	one_class_by(cls, size, BY_SIZE);
}

KTEST(spanheap, every_class)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		one_class(cls, sizeclass_info[cls].size);
		one_class(cls, sizeclass_info[cls - 1].size + 1);
		KEXPECT_EQ(sizeclass_of(sizeclass_info[cls].size), cls);
	}
	SH_CHECK(&sh, "after every class");
	/* Size 0: a unique minimal object each time. */
	void *a = spanheap_alloc(&sh, 0, 0), *b = spanheap_alloc(&sh, 0, 0);
	KEXPECT(a && b && a != b);
	KEXPECT_EQ(spanheap_usable_size(&sh, a), sizeclass_info[1].size);
	spanheap_free(&sh, a);
	spanheap_free(&sh, b);
	spanheap_free(&sh, NULL);
	SH_CHECK(&sh, "after size 0");
	sh_heap_release(&heap, &sh);
}

/* spanheap_alloc_sized, spanheap_alloc without its flags' test (the
 * kernel's kmalloc with flags fixed at compile time): every class, size 0
 * a unique minimal object, a large object of whole pages, an impossible
 * size NULL, MM_ATOMIC and MM_NO_GROW as spanheap_alloc takes them. */
KTEST(spanheap, alloc_sized_is_alloc_without_the_flags_test)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		one_class_by(cls, sizeclass_info[cls].size, BY_SIZED);
		one_class_by(cls, sizeclass_info[cls - 1].size + 1, BY_SIZED);
	}
	void *a = spanheap_alloc_sized(&sh, 0, 0);
	void *b = spanheap_alloc_sized(&sh, 0, MM_ATOMIC);
	KEXPECT(a && b && a != b);
	KEXPECT_EQ(spanheap_usable_size(&sh, a), sizeclass_info[1].size);
	size_t big = (size_t)SC_MAX_SIZE + 1;
	char *l = spanheap_alloc_sized(&sh, big, MM_NO_GROW);
	KEXPECT(l && (uintptr_t)l % PG == 0);
	KEXPECT(l && spanheap_usable_size(&sh, l) >= big);
	if (l)
		memset(l, 7, big);
	mm_port_set_quiet(true);
	KEXPECT(spanheap_alloc_sized(&sh, SIZE_MAX / 2, 0) == NULL);
	mm_port_set_quiet(false);
	spanheap_free(&sh, a);
	spanheap_free(&sh, b);
	spanheap_free(&sh, l);
	SH_CHECK(&sh, "after the sized path");
	sh_heap_release(&heap, &sh);
}

/* spanheap_alloc_class, the inline path for a class known at compile
 * time: spans' objects at first (its refill), then the magazine's (the
 * objects just freed, newest first), each class up to SC_LINEAR_MAX with
 * the class spanheap_class_linear gives. */
KTEST(spanheap, alloc_class_inline)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	for (size_t size = 0; size <= SC_LINEAR_MAX; size += 8) {
		unsigned cls = spanheap_class_linear(size);
		KASSERT_EQ(cls, sizeclass_of(size));
		one_class_by(cls, size, BY_CLASS); /* from the spans */
		one_class_by(cls, size,
		             BY_CLASS); /* the magazine's, then spans */
		void *a = spanheap_alloc_class(&sh, cls, size, 0);
		KASSERT(a);
		spanheap_free(&sh, a);
		KEXPECT_EQ(spanheap_alloc_class(&sh, cls, size, 0), a);
		spanheap_free(&sh, a);
	}
	SH_CHECK(&sh, "after the inline path");
	sh_heap_release(&heap, &sh);
}

/* ---- Large spans --------------------------------------------------------- */

KTEST(spanheap, large_spans)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	/* Warm up: the span-struct allocator's first page. */
	spanheap_free(&sh, spanheap_alloc(&sh, SC_MAX_SIZE + 1, 0));
	static const size_t sizes[] = {SC_MAX_SIZE + 1, 40960, 65536,
	                               (1 << 20) + 1, 16 << 20};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t size = sizes[i], npages = (size + PG - 1) / PG;
		size_t before = sh_in_use_pages(&heap);
		char *p = spanheap_alloc(&sh, size, 0);
		KASSERT(p);
		KEXPECT_EQ((uintptr_t)p % PG, 0);
		KEXPECT_EQ(spanheap_usable_size(&sh, p), npages * PG);
		KEXPECT_EQ(sh_in_use_pages(&heap), before + npages);
		memset(p, 0x5a, npages * PG);
		struct spanheap_stats st;
		spanheap_stats(&sh, &st);
		KEXPECT_EQ(st.cls[0].objects_in_use, 1);
		KEXPECT_EQ(st.large_pages, npages);
		SH_CHECK(&sh, "a large span held");
		/* Freed at once: no sweep needed. */
		spanheap_free(&sh, p);
		KEXPECT_EQ(sh_in_use_pages(&heap), before);
		spanheap_stats(&sh, &st);
		KEXPECT_EQ(st.cls[0].objects_in_use, 0);
		KEXPECT_EQ(st.large_pages, 0);
	}
	SH_CHECK(&sh, "after large spans");
	sh_heap_release(&heap, &sh);
}

/* ---- Aligned allocation -------------------------------------------------- */

KTEST(spanheap, aligned)
{
	static const size_t sizes[] = {0, 1, 16, 100, 1000, 3000, 5000, 40000};
	static const size_t big_aligns[] = {8192, 12288, 65536};
	static const size_t bad_aligns[] = {0,    3,    24,   48,    1000,
	                                    4097, 6144, 8193, 12289, 20000};
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	size_t aligns[16], na = 0;
	for (size_t a = 1; a <= PG; a *= 2)
		aligns[na++] = a;
	for (size_t i = 0; i < 3; i++)
		aligns[na++] = big_aligns[i];
	for (size_t i = 0; i < na; i++) {
		size_t align = aligns[i];
		for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
			size_t size = sizes[k];
			void *p[3];
			for (int j = 0; j < 3; j++) {
				p[j] = spanheap_alloc_aligned(&sh, size, align,
				                              0);
				if (!p[j] || (uintptr_t)p[j] % align ||
				    spanheap_usable_size(&sh, p[j]) < size)
					ktest_fail_at(
					        __FILE__, __LINE__,
					        "size %zu align %zu: got %p",
					        size, align, p[j]);
				else
					memset(p[j], 0x77, size);
			}
			for (int j = 0; j < 3; j++)
				spanheap_free(&sh, p[j]);
		}
	}
	for (size_t i = 0; i < sizeof(bad_aligns) / sizeof(bad_aligns[0]);
	     i++) {
		void *p = spanheap_alloc_aligned(&sh, 64, bad_aligns[i], 0);
		if (p)
			ktest_fail_at(__FILE__, __LINE__,
			              "align %zu: got %p, not NULL",
			              bad_aligns[i], p);
	}
	SH_CHECK(&sh, "after aligned allocations");
	sh_heap_release(&heap, &sh);
}

/* ---- Impossible requests, MM_NO_GROW, MM_ZERO ---------------------------- */

KTEST(spanheap, impossible_sizes)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_quiet(true); /* the page heap logs its refusals */
	KEXPECT(spanheap_alloc(&sh, SIZE_MAX, 0) == NULL);
	KEXPECT(spanheap_alloc(&sh, SIZE_MAX - PG + 2, 0) == NULL);
	KEXPECT(spanheap_alloc(&sh, SH_ARENA_BYTES + 1, 0) == NULL);
	KEXPECT(spanheap_alloc(&sh, SH_ARENA_BYTES * 4, MM_ZERO) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, SIZE_MAX, 16, 0) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, SIZE_MAX, 65536, 0) == NULL);
	KEXPECT(spanheap_alloc_aligned(&sh, SH_ARENA_BYTES - PG, 65536, 0) ==
	        NULL);
	KEXPECT(spanheap_calloc(&sh, SH_ARENA_BYTES, 2, 0) == NULL);
	/* Atomic callers get at most MHEAP_ATOMIC_MAX_PAGES pages. */
	KEXPECT(spanheap_alloc(&sh, (MHEAP_ATOMIC_MAX_PAGES + 1) * PG,
	                       MM_ATOMIC) == NULL);
	mm_port_set_quiet(false);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.n.atomic_fails, 1);
	KEXPECT_EQ(st.spans, 0);
	KEXPECT_EQ(st.n.large_allocs, 0);
	SH_CHECK(&sh, "after impossible requests");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap, no_grow)
{
	enum { MAX = 1000 };
	/* With the default reserve: the page heap used to refill it by
	 * growing after an allocation that left it short, MHEAP_NO_GROW or
	 * not (all 1000 allocations succeeded, the heap grew 11-fold). */
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = SH_ARENA_BYTES;
	KASSERT(sh_heap_new_with(&heap, &sh, &hc, NULL));
	struct mheap_stats hs0, hs;
	mheap_stats(&heap, &hs0);
	mm_port_set_quiet(true);
	/* More than the heap has grown: refused. */
	KEXPECT(spanheap_alloc(&sh, hs0.grown_pages * PG + 1, MM_NO_GROW) ==
	        NULL);
	/* What was grown is used, then the allocations fail. */
	void *p[MAX];
	int n = 0;
	while (n < MAX && (p[n] = spanheap_alloc(&sh, 20000, MM_NO_GROW)))
		n++;
	mm_port_set_quiet(false);
	mheap_stats(&heap, &hs);
	ktest_diag("%d objects of 20000 bytes in %zu grown pages", n,
	           hs.grown_pages);
	KEXPECT(n > 0 && n < MAX);
	KEXPECT_EQ(hs.grown_pages, hs0.grown_pages);
	KEXPECT(spanheap_alloc(&sh, 16, MM_NO_GROW) != NULL ||
	        hs.in_use_pages == hs.grown_pages);
	/* Without the flag the heap grows. */
	void *q = spanheap_alloc(&sh, 20000, 0);
	KEXPECT(q != NULL);
	mheap_stats(&heap, &hs);
	KEXPECT(hs.grown_pages > hs0.grown_pages);
	spanheap_free(&sh, q);
	for (int i = 0; i < n; i++)
		spanheap_free(&sh, p[i]);
	SH_CHECK(&sh, "after MM_NO_GROW");
	sh_heap_release(&heap, &sh);
}

/* Poison mode with records: the allocation's stack goes to the depot,
 * whose chunk (16 pages) came from the page heap with MHEAP_ATOMIC
 * whatever the caller's flags, and grew the heap by a chunk under
 * MM_NO_GROW (review). The stack is lost instead; the object is made.
 * The depot and the side tables are the metadata heap's: it is left 12
 * free pages, room for a 16-byte span's table, not a chunk; the object
 * heap is grown once (a fresh one with no reserve has grown nothing),
 * for the span. */
KTEST(spanheap, no_grow_in_poison_mode_keeps_the_depot_from_growing)
{
	KASSERT(sh_heap_tight_poison(&heap, &sh, SH_ARENA_BYTES));
	KASSERT(sh.track);
	sh_heap_grow(&heap);
	struct mheap_stats hs0, hs, ms0, ms;
	mheap_stats(&heap, &hs0);
	mheap_stats(&sh.meta, &ms0);
	size_t left = ms0.free_backed_pages + ms0.free_scav_pages;
	KASSERT(left > 12);
	void *fill = mheap_alloc_pages(&sh.meta, left - 12, MHEAP_NO_GROW);
	KASSERT(fill);
	mm_port_set_quiet(true);
	void *p = spanheap_alloc(&sh, 16, MM_NO_GROW);
	mm_port_set_quiet(false);
	mheap_stats(&heap, &hs);
	mheap_stats(&sh.meta, &ms);
	KEXPECT(p != NULL);
	KEXPECT_EQ(hs.grown_pages, hs0.grown_pages);
	KEXPECT_EQ(ms.grown_pages, ms0.grown_pages);
	spanheap_free(&sh, p);
	mheap_free_pages(&sh.meta, fill, left - 12);
	SH_CHECK(&sh, "after the allocation");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap, zero_reused_object)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(300);
	size_t size = sizeclass_info[cls].size;
	/* a keeps the span alive (so b's memory stays an object of the
	 * class); b is dirtied and freed. */
	char *a = spanheap_alloc(&sh, 300, 0);
	char *b = spanheap_alloc(&sh, 300, 0);
	KASSERT(a && b);
	memset(b, 0xab, size);
	spanheap_free(&sh, b);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	char *c = spanheap_alloc(&sh, 300, MM_ZERO);
	KASSERT(c);
	KEXPECT(c == b); /* the free slot of the span is b's */
	KEXPECT(all_bytes(c, 300, 0));
	/* Without MM_ZERO the old contents may show: the flag did it. */
	memset(c, 0xcd, size);
	spanheap_free(&sh, c);
	spanheap_flush_cache(&sh);
	char *d = spanheap_alloc(&sh, 300, 0);
	KEXPECT(d == b);
	/* (A freed object's first 16 bytes are the magazine's: its link
	 * and its free marker.) */
	KEXPECT(d && all_bytes(d + 16, size - 16, 0xcd));
	spanheap_free(&sh, d);
	spanheap_free(&sh, a);
	SH_CHECK(&sh, "after MM_ZERO");
	sh_heap_release(&heap, &sh);
}
