/*
 * Poison mode's records read with no lock while their objects change
 * (mm/spanheap_track.c, mm/spanheap_guard_report.c), each window held
 * open by a test hook: an object handed out and not yet recorded is
 * no one's in the traces, and its record reads as changing, not as the
 * previous owner's; a guarded slot reused while a trace reads it is not
 * counted with half of each object's fields.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* Two allocation sites, each the only caller of the heap in its body. */
SH_ALLOC_SITE(site_a, &sh)
SH_ALLOC_SITE(site_b, &sh)

/* Whether one of t's return addresses lies in site_a's body (up to
 * site_b's start, or 512 bytes). */
static bool trace_in_a(const struct spanheap_trace *t)
{
	uintptr_t lo = (uintptr_t)site_a, hi = lo + 512;
	if ((uintptr_t)site_b > lo && (uintptr_t)site_b < hi)
		hi = (uintptr_t)site_b;
	for (uint32_t i = 0; i < t->npcs && i < SPANHEAP_TRACK_PCS; i++)
		if (t->pc[i] > lo && t->pc[i] < hi)
			return true;
	return false;
}

/* What the readers saw in each window: the most of site a's objects
 * counted live, and how many of its freed objects' records read as
 * changing (the one being handed out, if it is one of them). */
#define NOBJ 64
static void *objs[NOBJ];
static unsigned nobj, windows;
static size_t a_live_most, changing_most;

static void read_in_window(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	if (where != MHEAP_HOOK_TRACK_TAKEN)
		return;
	windows++;
	struct spanheap_trace t[8];
	size_t rest, live = 0, changing = 0;
	size_t n = spanheap_alloc_traces(&sh, 0, t, 8, &rest);
	for (size_t i = 0; i < n; i++)
		if (trace_in_a(&t[i]))
			live += t[i].objects;
	for (unsigned i = 1; i < nobj; i++) {
		struct spanheap_track a, f;
		if (spanheap_object_tracks(&sh, objs[i], &a, &f) &&
		    a.ns == SPANHEAP_TRACK_CHANGING)
			changing++;
	}
	if (live > a_live_most)
		a_live_most = live;
	if (changing > changing_most)
		changing_most = changing;
}

/* Site a's objects, a span's worth, all but one freed, are handed to
 * site b: between span_take's size entry and alloc_call's record, each
 * one's record is still site a's. Until the record was marked changing
 * first, the traces counted such an object live under site a's stack (2
 * of its objects, of 1), and objwho named site a as its last allocator. */
KTEST(spanheap_track_race, an_object_not_yet_recorded_is_no_one_s)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	unsigned cls = sizeclass_of(1000);
	size_t size = sh_poison_size(cls);
	nobj = sizeclass_info[cls].nelems;
	KASSERT(nobj > 1 && nobj <= NOBJ);
	for (unsigned i = 0; i < nobj; i++)
		KASSERT(objs[i] = site_a(size));
	for (unsigned i = 1; i < nobj; i++)
		spanheap_free(&sh, objs[i]);
	windows = 0;
	a_live_most = changing_most = 0;
	void *b[NOBJ];
	mheap_test_hook = read_in_window;
	for (unsigned i = 1; i < nobj; i++)
		b[i] = site_b(size);
	mheap_test_hook = NULL;
	KEXPECT_EQ(windows, nobj - 1);
	KEXPECT_EQ(a_live_most, 1);
	KEXPECT_EQ(changing_most, 1); /* they were handed out again */
	/* Recorded, every one of them is site b's, and no record changes. */
	struct spanheap_trace t[8];
	size_t rest;
	size_t n = spanheap_alloc_traces(&sh, 0, t, 8, &rest);
	size_t objects = 0;
	for (size_t i = 0; i < n; i++)
		objects += trace_in_a(&t[i]) ? 0 : t[i].objects;
	KEXPECT_EQ(objects, nobj - 1);
	for (unsigned i = 1; i < nobj; i++) {
		KASSERT(b[i]);
		struct spanheap_track a, f;
		KASSERT(spanheap_object_tracks(&sh, b[i], &a, &f));
		KEXPECT(a.ns != SPANHEAP_TRACK_CHANGING && a.ns > f.ns);
		spanheap_free(&sh, b[i]);
	}
	spanheap_free(&sh, objs[0]);
	sh_heap_release(&heap, &sh);
}

/* ---- The guarded pool ------------------------------------------------- */

static void *g_old, *g_new;
static bool g_done;

/* The reader has seen the slot live and read its class: its object is
 * freed, and the slot, the pool's only one, serves another class. */
static void reuse_slot(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	if (where != MHEAP_HOOK_GUARD_READING || g_done)
		return;
	g_done = true;
	spanheap_free(&sh, g_old); /* a thread's: unmapped, back in the ring */
	g_new = spanheap_guard_alloc(&sh, 200, 16, 0, sizeclass_of(200));
}

/* A fresh poison heap with a guarded pool of one slot, sampling only
 * what a test asks of it (spanheap_guard_alloc). */
static bool one_slot_heap(void)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.guard_slots = 1;
	sc.guard_interval = 1000;
	sc.poison = true;
	return sh_heap_fresh_with(&heap, &sh, &sc);
}

/* Until slots were read under their generation, the class's trace
 * counted the slot's new object, of another class, with the old one's
 * class test passed: 1 object of 200 bytes in the 40-byte class. */
KTEST(spanheap_track_race, a_guarded_slot_reused_while_read_is_not_mixed)
{
	KASSERT(one_slot_heap());
	unsigned cls = sizeclass_of(40);
	KASSERT(cls != sizeclass_of(200));
	g_old = spanheap_guard_alloc(&sh, 40, 16, 0, cls);
	KASSERT(g_old);
	g_done = false;
	g_new = NULL;
	struct spanheap_trace t[4];
	size_t rest;
	mheap_test_hook = reuse_slot;
	size_t n = spanheap_alloc_traces(&sh, cls, t, 4, &rest);
	mheap_test_hook = NULL;
	KEXPECT(g_done);
	KASSERT(g_new);
	size_t objects = 0, bytes = 0;
	for (size_t i = 0; i < n; i++) {
		objects += t[i].objects;
		bytes += t[i].bytes;
	}
	KEXPECT_EQ(objects, 0);
	KEXPECT_EQ(bytes, 0);
	/* Read again, the slot's object is of the other class alone. */
	n = spanheap_alloc_traces(&sh, sizeclass_of(200), t, 4, &rest);
	KEXPECT(n == 1 && t[0].objects == 1 && t[0].bytes == 200);
	spanheap_free(&sh, g_new);
	spanheap_guard_drain(&sh);
	mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
	sh_heap_release(&heap, &sh);
}

/* The same window for the pool's other readers with no lock: the
 * guarded listing's (spanheap_guard_live, the shell's guarded) and
 * objwho's (spanheap_object_tracks). Each gives one object or says it
 * could not read one: the slot, reused, is not live as read, and the
 * records of its old object read as changing. */
KTEST(spanheap_track_race, guarded_readers_say_a_slot_changed)
{
	KASSERT(one_slot_heap());
	g_old = spanheap_guard_alloc(&sh, 40, 16, 0, sizeclass_of(40));
	KASSERT(g_old);
	struct spanheap_guard_obj o;
	struct spanheap_track a, f;
	KASSERT(spanheap_guard_live(&sh, 0, &o, &a));
	KEXPECT(o.obj == (uintptr_t)g_old && o.asked == 40 && a.npcs > 0);
	g_done = false;
	mheap_test_hook = reuse_slot;
	bool live = spanheap_guard_live(&sh, 0, &o, &a);
	mheap_test_hook = NULL;
	KEXPECT(g_done && !live);
	spanheap_free(&sh, g_new);
	g_old = spanheap_guard_alloc(&sh, 40, 16, 0, sizeclass_of(40));
	KASSERT(g_old);
	g_done = false;
	mheap_test_hook = reuse_slot;
	KEXPECT(spanheap_object_tracks(&sh, g_old, &a, &f));
	mheap_test_hook = NULL;
	KEXPECT(g_done);
	KEXPECT_EQ(a.ns, SPANHEAP_TRACK_CHANGING);
	KEXPECT_EQ(f.ns, SPANHEAP_TRACK_CHANGING);
	/* What is at the old object's address, as the slot is reused: not
	 * a mix of the two objects' fields. */
	spanheap_free(&sh, g_new);
	g_old = spanheap_guard_alloc(&sh, 40, 16, 0, sizeclass_of(40));
	KASSERT(g_old);
	g_done = false;
	struct spanheap_where w;
	mheap_test_hook = reuse_slot;
	KEXPECT(spanheap_where(&sh, g_old, &w));
	mheap_test_hook = NULL;
	KEXPECT(g_done);
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_NONE);
	/* Read again: the new object alone. */
	KASSERT(spanheap_guard_live(&sh, 0, &o, &a));
	KEXPECT(o.obj == (uintptr_t)g_new && o.asked == 200 &&
	        o.cls == sizeclass_of(200));
	spanheap_free(&sh, g_new);
	spanheap_guard_drain(&sh);
	mm_port_unreserve((void *)sh.guard.base, sh.guard.bytes);
	sh_heap_release(&heap, &sh);
}

/* ---- The depot a reader takes ------------------------------------------ */

/* A span's table given back while a reader holds it may be anything
 * once reused: here its head's depot word is overwritten, as a reuse
 * would, with the address of another depot (empty). Until the readers
 * that have the heap took its own depot, objwho followed that word and
 * gave the allocation's time and CPU with no stack (a wild word would
 * be a wild read). */
KTEST(spanheap_track_race, readers_take_the_heap_s_depot_not_the_table_s)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	void *p = site_a(24);
	KASSERT(p);
	struct mspan *s = mheap_span_lookup(sh.heap, (uintptr_t)p);
	KASSERT(mheap_span_is_span(s) && s->redzone);
	struct spanheap_rec_head *h =
	        (struct spanheap_rec_head *)((char *)s->redzone +
	                                     spanheap_track_offset(s->nelems));
	static struct spanheap_depot other; /* no chunk: every stack none */
	struct spanheap_depot *was = h->depot;
	KEXPECT(was == &sh.depot);
	h->depot = &other;
	struct spanheap_track a, f;
	bool found = spanheap_object_tracks(&sh, p, &a, &f);
	h->depot = was;
	KASSERT(found);
	KEXPECT(a.ns != 0 && a.ns != SPANHEAP_TRACK_CHANGING);
	KEXPECT(a.npcs > 0);
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);
}
