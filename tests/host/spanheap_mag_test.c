/*
 * The span heap's free paths and magazines (mm/spanheap.c,
 * mm/spanheap_cache.c) through the POSIX port: a free from another CPU
 * (another thread) takes the pending path and the owner's the local one;
 * a refill fills the empty magazine from its span (past allocated objects
 * and holes, no more than it holds, no slab under MM_NO_GROW); the owner's
 * frees wait in the magazine, and a full one spills its older half.
 * spanheap_check runs at every quiet point.
 */
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;
static struct spanheap sh;

/* ---- The free paths ------------------------------------------------------ */

enum { XN = 700 }; /* objects handed from thread A to thread B */

struct xcpu {
	unsigned cpu;
	size_t size;
	void **objs;
	size_t n; /* allocated (A), or freed (B) */
	bool flush;
	/* A: what the refills put into the magazines and no allocation
	 * took (mag_fill), before the flush gives it back */
	size_t left;
};

static void xcpu_alloc(void *arg)
{
	struct xcpu *x = arg;
	mm_port_set_cpu(x->cpu);
	for (x->n = 0; x->n < XN; x->n++) {
		x->objs[x->n] = spanheap_alloc(&sh, x->size, 0);
		if (!x->objs[x->n])
			break;
		memset(x->objs[x->n], 0x11, x->size);
	}
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	x->left = st.mag_objects;
	if (x->flush)
		spanheap_flush_cache(&sh);
}

static void xcpu_free(void *arg)
{
	struct xcpu *x = arg;
	mm_port_set_cpu(x->cpu);
	for (x->n = 0; x->n < XN; x->n++)
		spanheap_free(&sh, x->objs[x->n]);
	/* The frees wait in this CPU's magazine (the newest) or went to
	 * their spans; the flush sends the rest. */
	if (x->flush)
		spanheap_flush_cache(&sh);
}

/* Runs fn(x) on a thread of its own and waits for it. */
static bool on_thread(void (*fn)(void *), struct xcpu *x)
{
	struct mm_thread *t = mm_port_thread_start("xcpu", fn, x);
	if (t)
		mm_port_thread_join(t);
	return t != NULL;
}

KTEST(spanheap, cross_cpu_free)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	void **objs = calloc(XN, sizeof(*objs));
	KASSERT(objs);
	unsigned cls = sizeclass_of(128);
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	size_t nspans = (XN + ci->nelems - 1) / ci->nelems;
	/* Thread A, CPU 1, allocates and hands its cached span back;
	 * thread B, CPU 2, frees everything: the pending path. */
	struct xcpu a = {.cpu = 1, .size = 128, .objs = objs, .flush = true};
	struct xcpu b = {.cpu = 2, .size = 128, .objs = objs, .flush = true};
	KASSERT(on_thread(xcpu_alloc, &a));
	KASSERT_EQ(a.n, XN);
	size_t held = sh_span_pages(&heap, &sh);
	KASSERT(on_thread(xcpu_free, &b));
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.remote_frees, XN);
	KEXPECT_EQ(st.local_frees, a.left); /* A's flush, the owner's */
	KEXPECT_EQ(st.cls[cls].objects_in_use, 0);
	KEXPECT_EQ(st.cls[cls].spans, nspans); /* not swept yet */
	KEXPECT_EQ(sh_span_pages(&heap, &sh), held);
	SH_CHECK(&sh, "pending cross-CPU frees");
	/* The sweep makes them free, and gives the spans back. */
	KEXPECT_EQ(spanheap_sweep_cycle(&sh), nspans);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "after the sweep");

	/* Again, but A keeps its span cached until B's frees are in: the
	 * pending bits of a cached span are folded when A hands it back. */
	a.flush = false;
	KASSERT(on_thread(xcpu_alloc, &a));
	KASSERT(on_thread(xcpu_free, &b));
	spanheap_sweep_cycle(&sh);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].spans, 1); /* the one still cached on CPU 1 */
	SH_CHECK(&sh, "a cached span with pending frees");
	mm_port_set_cpu(1);
	spanheap_flush_cache(&sh);
	mm_port_set_cpu(0);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].spans, 0);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "after CPU 1's flush");
	free(objs);
	sh_heap_release(&heap, &sh);
}

/*
 * An empty magazine's refill hands out the cached span's next object and
 * puts the k after it into the magazine (mag_fill), lowest on top, each
 * with its free marker; the pops then hand them out in address order with
 * the marker cleared, and the refill after them does it again. A CPU that
 * has freed nothing makes its slab of slots for it.
 */
KTEST(spanheap, refill_fills_the_magazine)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	unsigned cls = sizeclass_of(64);
	unsigned k = sh.mag_fill[cls];
	KASSERT_EQ(k, 16);                     /* 1 KiB of 64-byte objects */
	char *p0 = spanheap_alloc(&sh, 64, 0); /* a new span's object 0 */
	KASSERT(p0);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p0);
	KASSERT(mheap_span_is_span(s) && s->base == (uintptr_t)p0);
	KEXPECT_EQ(atomic_load(&sh.mag_slabs), 0);
	KEXPECT_EQ(atomic_load(&s->marked), 1);
	char *p1 = spanheap_alloc(&sh, 64, 0); /* the refill */
	KEXPECT(p1 == p0 + 64);
	KEXPECT_EQ(atomic_load(&sh.mag_slabs), 1);
	KASSERT(sh.caches[0].slab != NULL);
	KEXPECT_EQ(atomic_load(&s->marked), 2 + k);
	struct mmag *m = &sh.caches[0].mag[cls];
	uintptr_t *base = sh.caches[0].slab + sh.mag_off[cls];
	KASSERT_EQ(m->top - base, k);
	for (unsigned j = 0; j < k; j++) {
		uintptr_t o = (uintptr_t)p0 + (2 + j) * 64;
		KEXPECT_EQ(m->top[-1 - (int)j], o);
		KEXPECT_EQ(((uintptr_t *)o)[1], sh.mag_cookie ^ o);
	}
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].objects_in_use, 2);
	KEXPECT_EQ(st.mag_objects, k);
	SH_CHECK(&sh, "a filled magazine");
	for (unsigned j = 0; j < k; j++) {
		uintptr_t *q = spanheap_alloc(&sh, 64, 0);
		KEXPECT(q == (uintptr_t *)(p0 + (2 + j) * 64));
		KEXPECT(q && q[1] == 0);
	}
	KEXPECT(m->top == base);
	/* Empty again: the next object, and the k after it. */
	char *q = spanheap_alloc(&sh, 64, 0);
	KEXPECT(q == p0 + (2 + k) * 64);
	KEXPECT_EQ(m->top - base, k);
	KEXPECT_EQ(atomic_load(&s->marked), 3 + 2 * k);
	KEXPECT_EQ(atomic_load(&sh.mag_slabs), 1);
	SH_CHECK(&sh, "filled again");
	sh_heap_release(&heap, &sh);
}

/* The same with free objects scattered among allocated ones: the refill
 * skips the allocated ones, and the magazine gets the free ones in
 * address order. */
KTEST(spanheap, refill_fills_past_allocated_objects)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	unsigned cls = sizeclass_of(64);
	unsigned n = sizeclass_info[cls].nelems, k = sh.mag_fill[cls];
	KASSERT(n <= SC_MAX_NELEMS && n >= 2 * (k + 2));
	static char *p[SC_MAX_NELEMS];
	KASSERT(sh_alloc_n(&sh, (void **)p, n, 64)); /* one whole span */
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p[0]);
	KASSERT(mheap_span_is_span(s));
	for (unsigned i = 0; i < n; i++)
		KASSERT(p[i] == (char *)s->base + i * 64);
	/* Every odd object of the first 2(k + 2) freed, and folded. */
	for (unsigned i = 1; i < 2 * (k + 2); i += 2)
		spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh);
	spanheap_sweep_cycle(&sh);
	SH_CHECK(&sh, "odd objects free");
	/* A new span for the cache: s, the one with free objects. */
	KEXPECT(spanheap_alloc(&sh, 64, 0) == p[1]);
	KEXPECT(spanheap_alloc(&sh, 64, 0) == p[3]); /* the refill */
	struct mmag *m = &sh.caches[0].mag[cls];
	uintptr_t *base = sh.caches[0].slab + sh.mag_off[cls];
	KASSERT_EQ(m->top - base, k);
	for (unsigned j = 0; j < k; j++) {
		uintptr_t o = (uintptr_t)p[5 + 2 * j];
		KEXPECT_EQ(m->top[-1 - (int)j], o);
		KEXPECT_EQ(((uintptr_t *)o)[1], sh.mag_cookie ^ o);
	}
	SH_CHECK(&sh, "a magazine filled past allocated objects");
	/* Every object was handed out before: marked stays where it was. */
	KEXPECT_EQ(atomic_load(&s->marked), n);
	for (unsigned j = 0; j < k; j++)
		KEXPECT(spanheap_alloc(&sh, 64, 0) == p[5 + 2 * j]);
	sh_heap_release(&heap, &sh);
}

/*
 * A fill that steps over allocated objects (not a run) and then into
 * objects never handed out: those had no marker before, so the fill
 * writes it (a free of one of them must be refused by it), and marked
 * rises past them. Objects 0-7 are handed out with MM_NO_GROW on a CPU
 * with no slab (no fill), 1, 3 and 5 freed and folded: the refill that
 * takes 3 fills 5, then 8 on.
 */
KTEST(spanheap, refill_marks_objects_never_handed_out_past_a_hole)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(0);
	unsigned cls = sizeclass_of(64), k = sh.mag_fill[cls];
	KASSERT_EQ(k, 16);
	char *p[8];
	for (unsigned i = 0; i < 8; i++)
		KASSERT(p[i] = spanheap_alloc(&sh, 64, MM_NO_GROW));
	KASSERT(sh.caches[0].slab == NULL); /* nothing filled */
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)p[0]);
	KASSERT(mheap_span_is_span(s) && s->base == (uintptr_t)p[0]);
	for (unsigned i = 0; i < 8; i++)
		KASSERT(p[i] == p[0] + i * 64);
	KASSERT_EQ(atomic_load(&s->marked), 8);
	for (unsigned i = 1; i < 7; i += 2)
		spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh); /* 1, 3, 5 folded: free in s */
	SH_CHECK(&sh, "1, 3 and 5 free");
	KEXPECT(spanheap_alloc(&sh, 64, 0) == p[1]); /* s cached again */
	KEXPECT(spanheap_alloc(&sh, 64, 0) == p[3]); /* the refill */
	struct mmag *m = &sh.caches[0].mag[cls];
	uintptr_t *base = sh.caches[0].slab + sh.mag_off[cls];
	KASSERT_EQ(m->top - base, k);
	for (unsigned j = 0; j < k; j++) {
		uintptr_t o = (uintptr_t)p[0] + (j ? 7 + j : 5) * 64;
		KEXPECT_EQ(m->top[-1 - (int)j], o);
		KEXPECT_EQ(((uintptr_t *)o)[1], sh.mag_cookie ^ o);
	}
	KEXPECT_EQ(atomic_load(&s->marked), 8 + k - 1);
	SH_CHECK(&sh, "filled past a hole");
	char *last = p[0] + (7 + k - 1) * 64; /* the bottom, never handed out */
	KEXPECT(MM_PORT_PANICS(spanheap_free(&sh, last)));
	sh_unpin_after_panic();
	KEXPECT(strstr(mm_port_last_panic(), "double free") != NULL);
	for (unsigned j = 0; j < k; j++) {
		uintptr_t *q = spanheap_alloc(&sh, 64, 0);
		KEXPECT(q == (uintptr_t *)(p[0] + (j ? 7 + j : 5) * 64));
		KEXPECT(q && q[1] == 0);
	}
	sh_heap_release(&heap, &sh);
}

/*
 * With restartable sequences, the refill pins only after its pop found
 * the magazine empty (spanheap_alloc_refill_pin), and an interrupt
 * meanwhile may have freed objects into it: the fill then adds no more
 * than the magazine has room for. Here CPU 0's magazine holds all but 3
 * objects when the refill runs (called as the pinned way calls it).
 */
KTEST(spanheap, refill_fills_no_more_than_the_magazine_holds)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(64), k = sh.mag_fill[cls];
	unsigned max = sh.mag_max[cls];
	KASSERT(k == 16 && max > 3 && max <= SPANHEAP_MAG_MAX);
	mm_port_set_cpu(1);
	static void *q[SPANHEAP_MAG_MAX];
	KASSERT(sh_alloc_n(&sh, q, max - 3, 64)); /* CPU 1's span's */
	mm_port_set_cpu(0);
	char *a = spanheap_alloc(&sh, 64, 0); /* CPU 0's span, no slab */
	KASSERT(a && sh.caches[0].slab == NULL);
	struct mspan *s = mheap_span_lookup(&heap, (uintptr_t)a);
	KASSERT(mheap_span_is_span(s) && s->base == (uintptr_t)a);
	for (unsigned i = 0; i < max - 3; i++)
		spanheap_free(&sh, q[i]); /* CPU 0's magazine */
	struct mmag *m = &sh.caches[0].mag[cls];
	uintptr_t *base = sh.caches[0].slab + sh.mag_off[cls];
	KASSERT_EQ(m->top - base, max - 3);
	char *b = spanheap_alloc_refill(&sh, 64, 0, mm_port_pin());
	KEXPECT(b == a + 64);
	KEXPECT(m->top == m->limit);
	KEXPECT_EQ(m->top - base, max);
	for (unsigned j = 0; j < 3; j++)
		KEXPECT_EQ(m->top[-1 - (int)j], (uintptr_t)a + (2 + j) * 64);
	KEXPECT_EQ(base[max], 0); /* the next class's 0 */
	KEXPECT_EQ(atomic_load(&s->marked), 5);
	SH_CHECK(&sh, "a magazine filled to its limit");
	/* Full: the refill hands out the span's next object, fills none. */
	char *c = spanheap_alloc_refill(&sh, 64, 0, mm_port_pin());
	KEXPECT(c == a + 5 * 64);
	KEXPECT(m->top == m->limit);
	KEXPECT_EQ(base[max], 0);
	KEXPECT_EQ(atomic_load(&s->marked), 6);
	SH_CHECK(&sh, "a full magazine's refill");
	sh_heap_release(&heap, &sh);
}

/* A refill under MM_NO_GROW makes no slab (that could grow the heap): it
 * fills nothing, and the next refill without the flag makes it. */
KTEST(spanheap, refill_makes_no_slab_under_no_grow)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	mm_port_set_cpu(1);
	void *a = spanheap_alloc(&sh, 64, 0), *b = spanheap_alloc(&sh, 64, 0);
	KASSERT(a && b);
	KEXPECT_EQ(atomic_load(&sh.mag_slabs), 1); /* CPU 1's refill's */
	mm_port_set_cpu(0);
	void *c = spanheap_alloc(&sh, 64, MM_NO_GROW);
	void *d = spanheap_alloc(&sh, 64, MM_NO_GROW);
	KASSERT(c && d);
	KEXPECT(sh.caches[0].slab == NULL);
	KEXPECT_EQ(atomic_load(&sh.mag_slabs), 1);
	void *e = spanheap_alloc(&sh, 64, 0);
	KASSERT(e);
	KEXPECT(sh.caches[0].slab != NULL);
	KEXPECT_EQ(atomic_load(&sh.mag_slabs), 2);
	SH_CHECK(&sh, "after the refills");
	void *all[] = {a, b, c, d, e};
	for (unsigned i = 0; i < 5; i++)
		spanheap_free(&sh, all[i]);
	SH_CHECK(&sh, "after the frees");
	sh_heap_release(&heap, &sh);
}

/* A free of an object of this CPU's own cached span waits in the
 * magazine like any other (no local bit: the next allocation of the class
 * gets it back at once), and goes back to its span only when the
 * magazine spills or is flushed. */
KTEST(spanheap, owner_free_waits_in_the_magazine)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(64);
	unsigned n = sizeclass_info[cls].nelems;
	KASSERT(n >= 16 && n <= SC_MAX_NELEMS);
	static void *p[SC_MAX_NELEMS];
	KASSERT(sh_alloc_n(&sh, p, n, 64));
	spanheap_free(&sh, p[5]);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.local_frees, 0);
	KEXPECT_EQ(st.remote_frees, 0);
	KEXPECT_EQ(st.mag_objects, 1);
	KEXPECT_EQ(st.cls[cls].objects_in_use, (size_t)n - 1);
	SH_CHECK(&sh, "an owner's free");
	/* The span is full, but the magazine has p[5]. */
	char *q = spanheap_alloc(&sh, 64, 0);
	KEXPECT(q == p[5]);
	KEXPECT_EQ(((uintptr_t *)q)[1], 0); /* the canary is gone */
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].spans, 1);
	KEXPECT_EQ(st.mag_objects, 0);
	KEXPECT_EQ(st.local_frees, 0);
	for (unsigned i = 0; i < n; i++)
		spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].spans, 0);
	KEXPECT_EQ(st.mag_objects, 0);
	KEXPECT_EQ(st.local_frees + st.remote_frees, (uint64_t)n);
	SH_CHECK(&sh, "all freed");
	sh_heap_release(&heap, &sh);
}

/* A full magazine keeps its newest half and gives the older half back
 * to the spans in one batch (spanheap_mag_full). */
KTEST(spanheap, full_magazine_spills_its_older_half)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(1024);
	uint32_t max = sh.mag_max[cls];
	uint32_t n = max + 8;
	KASSERT(max >= 4 && n <= 96);
	void *p[96];
	KASSERT(sh_alloc_n(&sh, p, n, 1024));
	for (uint32_t i = 0; i < n; i++)
		spanheap_free(&sh, p[i]);
	/* max went in; the next free found it full: max / 2 stayed, the
	 * free went in, and 7 more after it. */
	uint32_t kept = max / 2 + 1 + 7;
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.mag_objects, (size_t)kept);
	KEXPECT_EQ(st.local_frees + st.remote_frees, (uint64_t)(n - kept));
	KEXPECT_EQ(st.cls[cls].objects_in_use, 0);
	SH_CHECK(&sh, "after a spill");
	/* The magazine gives the newest first. */
	for (uint32_t i = 0; i < kept; i++) {
		char *q = spanheap_alloc(&sh, 1024, 0);
		KEXPECT(q == p[n - 1 - i]);
		p[n - 1 - i] = q;
	}
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.mag_objects, 0);
	for (uint32_t i = n - kept; i < n; i++)
		spanheap_free(&sh, p[i]);
	spanheap_flush_cache(&sh);
	SH_CHECK(&sh, "after the flush");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap, magazine_reuses_then_local_free)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	/* 1024-byte objects: n to a span (32 in today's table). */
	unsigned cls = sizeclass_of(1024);
	int n = sizeclass_info[cls].nelems;
	size_t span_pages = sizeclass_info[cls].npages;
	KASSERT(n >= 4 && n <= 64);
	KASSERT(sh.mag_max[cls] >= (uint32_t)n);
	void *p[64];
	KASSERT(sh_alloc_n(&sh, p, (size_t)n, 1024));
	for (int i = 1; i < n; i++)
		KEXPECT_EQ((uintptr_t)p[i], (uintptr_t)p[0] + 1024u * i);
	/* The free waits in this CPU's magazine: free, though its span
	 * still counts it allocated. */
	spanheap_free(&sh, p[2]);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.mag_objects, 1);
	KEXPECT_EQ(st.local_frees, 0);
	KEXPECT_EQ(st.remote_frees, 0);
	KEXPECT_EQ(st.cls[cls].objects_in_use, (size_t)n - 1);
	SH_CHECK(&sh, "a free in the magazine");
	/* The next allocation of the class takes it back, newest first. */
	char *q = spanheap_alloc(&sh, 1000, 0);
	KEXPECT(q == p[2]);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.mag_objects, 0);
	KEXPECT_EQ(st.cls[cls].spans, 1);
	for (int i = 0; i < n; i++)
		spanheap_free(&sh, i == 2 ? q : p[i]);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.mag_objects, (size_t)n);
	KEXPECT_EQ(st.cls[cls].objects_in_use, 0);
	SH_CHECK(&sh, "all freed into the magazine");
	/* Flushing the cache gives the magazine back to the span, which
	 * this CPU caches: the local path, no atomic. Then the span is
	 * folded, found empty and goes back. */
	size_t before = sh_in_use_pages(&heap);
	spanheap_flush_cache(&sh);
	KEXPECT_EQ(sh_in_use_pages(&heap), before - span_pages);
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.local_frees, (uint64_t)n);
	KEXPECT_EQ(st.remote_frees, 0);
	KEXPECT_EQ(st.mag_objects, 0);
	SH_CHECK(&sh, "after the flush");
	sh_heap_release(&heap, &sh);
}

/* A stop with no sweeper does nothing; a second start keeps the thread
 * the first made (a second thread would sweep the same heap, unjoined);
 * after a stop a start makes a new one. */
