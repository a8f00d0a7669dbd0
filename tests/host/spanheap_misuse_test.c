/*
 * Misuse of the span heap (mm/spanheap.c), double frees and writes after a
 * free aside (spanheap_double_free_test.c): a write into the last object
 * handed out after its free (the checker finds it), interior pointers (into
 * a span's tail past its last object too), foreign and never-allocated
 * pointers,
 * a large span freed twice or its tail given back by a shrink,
 * page-heap memory freed as an object, a realloc or a usable size of a
 * freed object, a pointer into the free pages around an aligned large
 * object. Each must
 * mm_panic with a message that names the problem and the pointer; the port's
 * catch turns the panic into a longjmp back here.
 *
 * A caught panic abandons the call where it was, possibly pinned and with
 * a bit already set, so each case runs on a heap of its own, made for it
 * and given back after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;
static int a_static_object;

static bool fresh_heap(void)
{
	return sh_heap_fresh(&heap, &sh);
}

KTEST(spanheap_misuse, interior_pointer)
{
	KASSERT(fresh_heap());
	char *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	/* Each message names the call it was given to. */
	EXPECT_MISUSE(spanheap_free(&sh, p + 16), "free of an interior pointer",
	              p + 16);
	EXPECT_MISUSE(spanheap_usable_size(&sh, p + 8),
	              "usable size of an interior pointer", p + 8);
	EXPECT_MISUSE(spanheap_realloc(&sh, p + 8, 32, 0),
	              "realloc of an interior pointer", p + 8);
	char *big = spanheap_alloc(&sh, 100000, 0);
	KASSERT(big);
	EXPECT_MISUSE(spanheap_free(&sh, big + 4096),
	              "free of an interior pointer of a large object",
	              big + 4096);
	EXPECT_MISUSE(spanheap_free(&sh, big + 16),
	              "free of an interior pointer of a large object",
	              big + 16);
	EXPECT_MISUSE(spanheap_realloc(&sh, big + 16, 200000, 0),
	              "realloc of an interior pointer of a large object",
	              big + 16);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_misuse, foreign_pointer)
{
	KASSERT(fresh_heap());
	int on_stack = 0;
	EXPECT_MISUSE(spanheap_free(&sh, &on_stack), "foreign pointer",
	              &on_stack);
	EXPECT_MISUSE(spanheap_free(&sh, &a_static_object), "foreign pointer",
	              &a_static_object);
	void *past = (void *)(heap.arena_base + heap.cfg.arena_bytes);
	EXPECT_MISUSE(spanheap_free(&sh, past), "foreign pointer", past);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_misuse, large_freed_twice)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 200000, 0);
	KASSERT(p);
	spanheap_free(&sh, p);
	EXPECT_MISUSE(spanheap_free(&sh, p), "large span freed twice", p);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_misuse, page_heap_memory)
{
	KASSERT(fresh_heap());
	void *p = mheap_alloc_pages(&heap, 2, 0);
	KASSERT(p);
	EXPECT_MISUSE(spanheap_free(&sh, p), "page-heap memory", p);
	mheap_free_pages(&heap, p, 2);
	/* The heap's own pages are named too (the message said only
	 * mheap_alloc_pages, which a malloc's user never calls). */
	spanheap_free(&sh, spanheap_alloc(&sh, 64, 0)); /* a slab */
	void *slab = sh.caches[0].slab;
	KASSERT(slab);
	EXPECT_MISUSE(spanheap_free(&sh, slab), "magazine slabs", slab);
	sh_heap_release(&heap, &sh);
}

/* A span's marked count is one past the highest object it has handed
 * out: the free of an object at or past it (never handed out) is refused,
 * and nothing is written into such objects ahead of their allocation. */
KTEST(spanheap_misuse, object_past_the_marked_ones)
{
	KASSERT(fresh_heap());
	unsigned cls = sizeclass_of(64);
	KASSERT(sizeclass_info[cls].nelems > 128);
	char *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KASSERT(mheap_span_is_span(s));
	KEXPECT_EQ((uintptr_t)p, s->base);
	KEXPECT_EQ(atomic_load(&s->marked), 1);
	char *next = (char *)s->base + 64, *far = (char *)s->base + 100 * 64;
	KEXPECT_EQ(((uintptr_t *)far)[1], 0);
	EXPECT_MISUSE(spanheap_free(&sh, next), "not allocated", next);
	EXPECT_MISUSE(spanheap_free(&sh, far), "not allocated", far);
	for (int i = 0; i < 64; i++)
		KASSERT(spanheap_alloc(&sh, 64, 0));
	KEXPECT_EQ(atomic_load(&s->marked), 65);
	KEXPECT_EQ(((uintptr_t *)far)[1], 0);
	EXPECT_MISUSE(spanheap_free(&sh, far), "not allocated", far);
	sh_heap_release(&heap, &sh);
}

/* An object a refill put into CPU 0's magazine (mag_fill) and no one
 * has taken is free: a free of it, from CPU 0 or from another CPU, is a
 * double free (said so, not "not allocated (a double free?)", the free
 * of an object never handed out), and the magazine is left as it was. */
KTEST(spanheap_misuse, free_of_an_object_a_refill_put_in_a_magazine)
{
	KASSERT(fresh_heap());
	char *p = spanheap_alloc(&sh, 64, 0);
	char *q = spanheap_alloc(&sh, 64, 0); /* the refill fills */
	KASSERT(p && q == p + 64 && sh.mag_fill[sizeclass_of(64)] >= 2);
	char *r = p + 128; /* on top of CPU 0's magazine */
	EXPECT_MISUSE(spanheap_free(&sh, r), "double free: pointer", r);
	mm_port_set_cpu(1);
	EXPECT_MISUSE(spanheap_free(&sh, r), "double free: pointer", r);
	mm_port_set_cpu(0);
	SH_CHECK(&sh, "after the refused frees");
	KEXPECT(spanheap_alloc(&sh, 64, 0) == r);
	spanheap_free(&sh, r);
	spanheap_free(&sh, q);
	spanheap_free(&sh, p);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/*
 * An object freed into CPU 0's magazine while CPU 1 caches its span, then
 * its span folded (CPU 1's flush): the fold counts it allocated (its bit in
 * alloc_bits, freeindex back at 0), as it is in no span's bits but a
 * magazine's. A second free, a usable size or a realloc of it is told as
 * one of an object already freed, not of one never handed out: the
 * verdict reads alloc_bits (spanheap_free_refused, use_refused).
 */
KTEST(spanheap_misuse, refused_use_of_an_object_in_a_magazine_after_a_fold)
{
	KASSERT(fresh_heap());
	mm_port_set_cpu(1);
	char *x = spanheap_alloc(&sh, 1024, 0);
	void *keep = spanheap_alloc(&sh, 1024, 0);
	KASSERT(x && keep);
	mm_port_set_cpu(0);
	spanheap_free(&sh, x); /* CPU 0's magazine */
	mm_port_set_cpu(1);
	spanheap_flush_cache(&sh); /* folds x's span: x counted allocated */
	mm_port_set_cpu(0);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)x);
	uint32_t idx = (uint32_t)(((uintptr_t)x - s->base) / s->elemsize);
	KASSERT_EQ(atomic_load(&s->freeindex), 0);
	KASSERT(atomic_load(&s->alloc_bits[idx / 64]) >> (idx % 64) & 1);
	EXPECT_MISUSE(spanheap_free(&sh, x), "double free: pointer", x);
	EXPECT_MISUSE(spanheap_usable_size(&sh, x),
	              "usable size of an object already freed", x);
	EXPECT_MISUSE(spanheap_realloc(&sh, x, 1024, 0),
	              "realloc of an object already freed", x);
	SH_CHECK(&sh, "after the refused calls");
	spanheap_free(&sh, keep);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_misuse, never_allocated)
{
	KASSERT(fresh_heap());
	void *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	/* The last page of the first chunk, grown but never handed out,
	 * and a page of the arena never grown. */
	void *unused = (void *)(heap.arena_base + PALLOC_CHUNK_BYTES - 4096);
	void *ungrown = (void *)(heap.arena_base + heap.cfg.arena_bytes / 2);
	EXPECT_MISUSE(spanheap_free(&sh, unused), "in no span", unused);
	EXPECT_MISUSE(spanheap_free(&sh, ungrown), "in no span", ungrown);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/*
 * A write after free erases the marker of an object already folded free
 * into its span (no bit of it left anywhere), and a second free from
 * another CPU then passes the marker test and sets its pending bit. The
 * fold that meets a freed bit of an object its span does not count
 * allocated is the last place that can tell: without its check the second
 * free passes unnoticed (and is booked as one more remote free).
 */
KTEST(spanheap_misuse, double_free_of_an_object_folded_free)
{
	KASSERT(fresh_heap());
	uintptr_t *p = spanheap_alloc(&sh, 64, 0);
	void *keep = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && keep);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	mm_port_set_cpu(1);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh); /* p's pending bit */
	mm_port_set_cpu(0);
	spanheap_flush_cache(&sh); /* folds it: p free, the span uncached */
	KASSERT_EQ(atomic_load(&s->pending[0]), 0);
	KASSERT_EQ(atomic_load(&s->alloc_bits[0]) & 1, 0);
	SH_CHECK(&sh, "after the fold");
	p[1] = 0; /* the write after free */
	mm_port_set_cpu(1);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh); /* the pending bit again */
	mm_port_set_cpu(0);
	EXPECT_MISUSE(spanheap_sweep_cycle(&sh), "was not allocated", p);
	sh_heap_release(&heap, &sh);
}

/*
 * A span whose objects do not fill its pages has a tail past its last
 * object; a pointer there, where object nelems would start, is inside the
 * span but no object's: its usable size and its free are refused as
 * interior pointers, as anywhere else inside the span.
 */
KTEST(spanheap_misuse, pointer_into_a_span_tail)
{
	KASSERT(fresh_heap());
	unsigned cls = 1;
	while (cls < SC_NCLASSES &&
	       (size_t)sizeclass_info[cls].nelems * sizeclass_info[cls].size ==
	               (size_t)sizeclass_info[cls].npages * MM_PAGE_SIZE)
		cls++;
	KASSERT(cls < SC_NCLASSES); /* some class has a tail */
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	void *p = spanheap_alloc(&sh, ci->size, 0);
	KASSERT(p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KASSERT(mheap_span_is_span(s));
	char *tail = (char *)s->base + (size_t)ci->nelems * ci->size;
	EXPECT_MISUSE(spanheap_usable_size(&sh, tail), "interior pointer",
	              tail);
	EXPECT_MISUSE(spanheap_free(&sh, tail), "interior pointer", tail);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}

/*
 * A large object shrunk in place gives its tail pages back, and their
 * span table entries with them: a pointer into the tail is then told as
 * one into the tail a realloc gave back of its object, not taken for part
 * of the span (whose struct, once the span is freed and reused, could lie
 * elsewhere), nor called a second free of a span that is still in use
 * (as it was until a review).
 */
KTEST(spanheap_misuse, pointer_into_a_shrunk_large_tail)
{
	KASSERT(fresh_heap());
	char *p = spanheap_alloc(&sh, 256 << 10, 0);
	KASSERT(p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	KASSERT(spanheap_realloc(&sh, p, 100 << 10, 0) == p);
	char *tail = p + (100 << 10);
	for (size_t off = 0; off < (156 << 10); off += MM_PAGE_SIZE)
		KEXPECT(mheap_span_lookup(&heap, (uintptr_t)tail + off) !=
		        (void *)s);
	char want[160];
	snprintf(want, sizeof(want),
	         "in the tail [%p, +39 pages) a realloc gave back of the large "
	         "object %p (+64 pages): used after the shrink",
	         (void *)tail, (void *)p);
	EXPECT_MISUSE(spanheap_free(&sh, tail), want, tail);
	KEXPECT(strstr(mm_port_last_panic(), "freed twice") == NULL);
	EXPECT_MISUSE(spanheap_usable_size(&sh, tail + 100), "usable size of",
	              tail + 100);
	KEXPECT(strstr(mm_port_last_panic(), want) != NULL);
	spanheap_free(&sh, p);
	/* Freed since: its tail is still the realloc's. */
	EXPECT_MISUSE(spanheap_free(&sh, tail), "a realloc gave back", tail);
	SH_CHECK(&sh, "after the free");
	sh_heap_release(&heap, &sh);
}

/*
 * A stale interior pointer of a freed large object is not its second
 * free: the free names the object it was in and where (until a review it
 * said "a large span freed twice" whatever the offset). The object's own
 * start still says that.
 */
KTEST(spanheap_misuse, interior_pointer_of_a_freed_large_object)
{
	KASSERT(fresh_heap());
	char *p = spanheap_alloc(&sh, 100000, 0); /* 25 pages */
	KASSERT(p);
	spanheap_free(&sh, p);
	char want[160];
	snprintf(want, sizeof(want),
	         "70000 bytes into the large object %p (+25 pages), freed "
	         "since",
	         (void *)p);
	EXPECT_MISUSE(spanheap_free(&sh, p + 70000), want, p + 70000);
	KEXPECT(strstr(mm_port_last_panic(), "freed twice") == NULL);
	EXPECT_MISUSE(spanheap_free(&sh, p), "a large span freed twice", p);
	sh_heap_release(&heap, &sh);
}

/* The marker test covers every object below marked, the last handed out
 * too: a span handed out whole, its last object freed and then written. */
KTEST(spanheap_misuse, checker_finds_a_lost_marker_on_the_last_object)
{
	KASSERT(fresh_heap());
	unsigned cls = sizeclass_of(64), n = sizeclass_info[cls].nelems;
	void **p = calloc(n, sizeof(*p));
	KASSERT(p && sh_alloc_n(&sh, p, n, 64));
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p[0]);
	KASSERT(s->base == (uintptr_t)p[0]);
	KASSERT_EQ(atomic_load(&s->marked), n);
	uintptr_t *last = p[n - 1];
	KASSERT((uintptr_t)last == s->base + (n - 1) * 64);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(1);
	spanheap_free(&sh, last);
	spanheap_flush_cache(&sh); /* a pending bit: on its list, queued */
	mm_port_set_cpu(0);
	SH_CHECK(&sh, "before the write");
	last[1] = 42;
	EXPECT_MISUSE(spanheap_check(&sh), "lost its free marker", last);
	free(p);
	sh_heap_release(&heap, &sh);
}

/* A realloc uses its object as a free does, with the same checks: one of
 * an object already freed (here to sizes that keep it where it is, which
 * handed the freed object back as the caller's) or of one never handed
 * out is refused, naming it. */
KTEST(spanheap_misuse, realloc_of_a_freed_object)
{
	KASSERT(fresh_heap());
	char *p = spanheap_alloc(&sh, 64, 0);
	KASSERT(p);
	spanheap_free(&sh, p);
	EXPECT_MISUSE(spanheap_realloc(&sh, p, 64, 0),
	              "realloc of an object already freed", p);
	EXPECT_MISUSE(spanheap_realloc(&sh, p, 48, 0),
	              "realloc of an object already freed", p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p);
	char *never = (char *)s->base + atomic_load(&s->marked) * 64;
	EXPECT_MISUSE(spanheap_realloc(&sh, never, 64, 0),
	              "realloc of an object that is not allocated", never);
	sh_heap_release(&heap, &sh);
}

/* An aligned large allocation takes more pages than its object and gives
 * back those before and after it: they are free, and a pointer into them
 * is told as one into no span, not as page-heap memory. */
KTEST(spanheap_misuse, pointer_into_pages_an_aligned_allocation_gave_back)
{
	KASSERT(fresh_heap());
	void *pad = spanheap_alloc(&sh, 40000, 0); /* 10 pages: a head */
	char *p = spanheap_alloc_aligned(&sh, 64 << 10, 64 << 10, 0);
	KASSERT(pad && p);
	char *head = p - MM_PAGE_SIZE, *tail = p + (64 << 10);
	KASSERT((uintptr_t)head >= (uintptr_t)pad + 40960);
	EXPECT_MISUSE(spanheap_free(&sh, head), "in no span", head);
	EXPECT_MISUSE(spanheap_free(&sh, tail), "in no span", tail);
	spanheap_free(&sh, p);
	spanheap_free(&sh, pad);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/* The usable size of a small object already freed, or never handed out,
 * is refused as a free of it is, naming it (spanheap.h promises it): it
 * returned the class's size, and a program that sized a copy by it read
 * or wrote an object that was no longer its own. */
KTEST(spanheap_misuse, usable_size_of_a_freed_object)
{
	KASSERT(fresh_heap());
	char *p = spanheap_alloc(&sh, 64, 0);
	char *q = spanheap_alloc(&sh, 64, 0);
	KASSERT(p && q);
	KEXPECT_EQ(spanheap_usable_size(&sh, p), 64);
	spanheap_free(&sh, p);
	EXPECT_MISUSE(spanheap_usable_size(&sh, p),
	              "usable size of an object already freed", p);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)q);
	char *never = (char *)s->base + atomic_load(&s->marked) * 64;
	EXPECT_MISUSE(spanheap_usable_size(&sh, never),
	              "usable size of an object that is not allocated", never);
	KEXPECT_EQ(spanheap_usable_size(&sh, q), 64); /* the live one */
	sh_heap_release(&heap, &sh);
}
