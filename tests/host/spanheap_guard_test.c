/*
 * The guarded pool (mm/spanheap_guard.c) through the POSIX port: sampled
 * allocations land on pages of their own, zeroed, aligned, sized as
 * asked; a touch past a page-end object's end, before a page-start
 * object's start, or of a freed object faults, and spanheap_where names
 * the object, its state and its stacks; a double free, an interior
 * pointer, a guard page's address and a damaged canary panic; a free
 * that cannot unmap leaves the page to the drain, which checks the
 * poison; slots are reused the longest-freed first, and a full pool or a
 * port with no memory gives the heap's ordinary objects; realloc (kept in
 * place, its tail zeroed with MM_ZERO, when it shrinks and no memory is
 * left), usable
 * size, named caches (their class, and poison mode's owners, written by
 * the cache's own sampled allocation too) and the
 * checker know the pool; and four threads crossing frees agree with it
 * (under ThreadSanitizer too).
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/spanheap_internal.h"
#include "fault_touch_util.h"
#include "guard_test_util.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* A fresh heap on CPU 0 with a pool of slots slots, sampling every
 * interval-th refill or out-of-line allocation; poison mode if poison. */
static bool guard_heap(unsigned slots, unsigned interval, bool poison)
{
	return sh_guard_heap_fresh(&heap, &sh, slots, interval, poison);
}

/* Gives the pool's reservation back (every object freed and unmapped),
 * then the heap's. */
static void guard_release(void)
{
	sh_guard_give_back(&sh);
	sh_heap_release(&heap, &sh);
}

static void *guarded(size_t size)
{
	return spanheap_guard_alloc(&sh, size, 16, 0, sizeclass_of(size));
}

static uintptr_t page_end(const void *p)
{
	return ((uintptr_t)p | (MM_PAGE_SIZE - 1)) + 1;
}

/* Slot index of pool object p. */
static unsigned slot_of(const void *p)
{
	return (unsigned)((((uintptr_t)p - sh.guard.base) >> MM_PAGE_SHIFT) /
	                  2);
}

/* Frees p pinned: a caller that cannot sleep (an interrupt handler's
 * stand-in), whose free cannot unmap. */
static void free_pinned(void *p)
{
	struct mm_pin pin = mm_port_pin();
	spanheap_free(&sh, p);
	mm_port_unpin(pin);
}

KTEST(spanheap_guard, objects_are_alone_between_guard_pages)
{
	KASSERT(guard_heap(4, 1000, false));
	char *a = guarded(100), *b = guarded(100);
	KASSERT(a && b);
	KEXPECT(spanheap_guard_owns(&sh.guard, a));
	KEXPECT_EQ((uintptr_t)a % 16, 0);
	KEXPECT(all_bytes(a, 100, 0) && all_bytes(b, 100, 0));
	KEXPECT_EQ(spanheap_usable_size(&sh, a), 100);
	/* a ends at its page's end (rounded to 16), b starts at its page's
	 * start: one byte further either way is a guard page. */
	KEXPECT_EQ(page_end(a) - (uintptr_t)a, 112);
	KEXPECT_EQ((uintptr_t)b % MM_PAGE_SIZE, 0);
	KEXPECT(touch_faults(a + 112));
	KEXPECT_EQ((uintptr_t)fault_addr, (uintptr_t)(a + 112));
	KEXPECT(touch_faults(b - 1));
	KEXPECT(!touch_faults(a + 99) && !touch_faults(b + 4095));
	/* A power of two keeps its alignment, an aligned request its own. */
	char *c = guarded(256);
	void *d = spanheap_guard_alloc(&sh, 40, 128, 0, 0);
	KASSERT(c && d);
	KEXPECT_EQ((uintptr_t)c % 256, 0);
	KEXPECT_EQ((uintptr_t)d % 128, 0);
	struct spanheap_where w;
	KEXPECT(spanheap_where(&sh, a + 115, &w));
	KEXPECT_EQ(w.kind, SPANHEAP_WHERE_GUARD);
	KEXPECT_EQ(w.state, SPANHEAP_OBJ_ALLOCATED);
	KEXPECT_EQ(w.start, (uintptr_t)a);
	KEXPECT_EQ(w.offset, 115);
	KEXPECT(w.on_guard);
	KEXPECT(spanheap_where(&sh, b - 8, &w) && w.start == (uintptr_t)b &&
	        w.before == 8 && w.on_guard);
	/* A full pool gives nothing; the stats count it. */
	KEXPECT(guarded(16) == NULL);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT(st.guard_slots == 4 && st.guard_live == 4 &&
	        st.guard_allocs == 4 && st.guard_full == 1);
	SH_CHECK(&sh, "four live guarded objects");
	spanheap_free(&sh, a);
	spanheap_free(&sh, b);
	spanheap_free(&sh, c);
	spanheap_free(&sh, d);
	guard_release();
}

KTEST(spanheap_guard, a_use_after_free_faults_and_is_named)
{
	KASSERT(guard_heap(4, 1000, false));
	char *a = guarded(40);
	KASSERT(a);
	memset(a, 7, 40);
	spanheap_free(&sh, a);
	KEXPECT(touch_faults(a + 3));
	KEXPECT(touch_access_faults(a, true, 1));
	struct spanheap_where w;
	KEXPECT(spanheap_where(&sh, a + 3, &w));
	KEXPECT(w.kind == SPANHEAP_WHERE_GUARD &&
	        w.state == SPANHEAP_OBJ_FREE && w.offset == 3 && !w.on_guard);
	char log[2048];
	sh_where_log(&sh, a + 3, log, sizeof(log));
	KEXPECT(strstr(log, "3 bytes into guarded object") != NULL);
	KEXPECT(strstr(log, "(free; 40 bytes asked") != NULL);
	KEXPECT(strstr(log, "last allocated on CPU 0") != NULL);
	KEXPECT(strstr(log, "last freed on CPU 0") != NULL);
	KEXPECT(strstr(log, "(no stack)") == NULL);
	guard_release();
}

/* In production mapping (the hosted malloc's: arena pages stay
 * read-write, scavenged ones read zero) the pool's port promise holds
 * (mm_port_prepare_guarded): its guard pages and its freed objects'
 * pages still fault. Until the promise was a port hook, the malloc's
 * port made the whole pool read-write and nothing faulted. */
KTEST(spanheap_guard, production_mapping_keeps_the_pool_faulting)
{
	mm_port_set_production_mapping(true);
	KASSERT(guard_heap(4, 1000, false));
	char *a = guarded(100), *b = guarded(100);
	KASSERT(a && b);
	KEXPECT(touch_faults(a + 112));
	KEXPECT(touch_faults(b - 1));
	KEXPECT(!touch_faults(a + 99) && !touch_faults(b + 4095));
	spanheap_free(&sh, a);
	KEXPECT(touch_faults(a));
	/* The slot's page is made usable again for its next object. */
	char *c = guarded(100), *d = guarded(100);
	KASSERT(c && d);
	memset(c, 1, 100);
	memset(d, 1, 100);
	spanheap_free(&sh, b);
	spanheap_free(&sh, c);
	spanheap_free(&sh, d);
	guard_release();
	mm_port_set_production_mapping(false);
}

KTEST(spanheap_guard, misuse_panics_naming_the_object)
{
	KASSERT(guard_heap(4, 1000, false));
	char *a = guarded(20), *b = guarded(20);
	KASSERT(a && b);
	EXPECT_MISUSE(spanheap_free(&sh, a + 16), "an interior pointer",
	              a + 16);
	EXPECT_MISUSE(spanheap_free(&sh, (char *)sh.guard.base + 8),
	              "one of its guard pages", (char *)sh.guard.base + 8);
	/* An overrun shorter than the slack: the canary, at the free. */
	a[20] = 'x';
	SH_EXPECT_PANIC(spanheap_free(&sh, a),
	                "seen at its free: byte 20 of it was written, past "
	                "its end (an overrun)");
	/* The slot stayed BUSY after the caught panic: give it back. */
	a[20] = (char)(0xa5 ^ (((uintptr_t)a + 20) & 0x3f));
	atomic_store(&sh.guard.slot[slot_of(a)].state, GUARD_LIVE);
	spanheap_free(&sh, a);
	EXPECT_MISUSE(spanheap_free(&sh, a), "a double free", a);
	/* An underrun of a page-end object, on its page. */
	char *c = guarded(20);
	KASSERT(c && page_end(c) - (uintptr_t)c == 32);
	c[-2] = 0;
	KEXPECT(sh_check_panics(&sh) &&
	        strstr(mm_port_last_panic(), "seen by the check: the byte 2 "
	                                     "before its start was written"));
	SH_EXPECT_PANIC(spanheap_free(&sh, c), "(an underrun)");
	c[-2] = (char)(0xa5 ^ (((uintptr_t)c - 2) & 0x3f));
	atomic_store(&sh.guard.slot[slot_of(c)].state, GUARD_LIVE);
	SH_CHECK(&sh, "the canary mended");
	spanheap_free(&sh, c);
	/* Not a free: a use after free (it said "a double free" until a
	 * review). */
	EXPECT_MISUSE(spanheap_usable_size(&sh, c), "(a use after free?)", c);
	spanheap_free(&sh, b);
	guard_release();
}

KTEST(spanheap_guard, a_free_that_cannot_unmap_waits_for_the_drain)
{
	KASSERT(guard_heap(4, 1000, false));
	char *a = guarded(64), *b = guarded(64);
	KASSERT(a && b);
	/* The page stays mapped, filled with the poison, until a drain. */
	free_pinned(a);
	KEXPECT_EQ(sh.guard.nfreed, 1);
	KEXPECT(all_bytes(a, 64, SPANHEAP_POISON_BYTE));
	struct spanheap_where w;
	KEXPECT(spanheap_where(&sh, a, &w) && w.state == SPANHEAP_OBJ_FREE);
	SH_CHECK(&sh, "a freed slot waiting");
	spanheap_guard_drain(&sh);
	KEXPECT(touch_faults(a));
	KEXPECT_EQ(sh.guard.ring_len, 3);
	/* A write after the free is seen before the page goes. */
	free_pinned(b);
	b[5] = 1;
	SH_EXPECT_PANIC(spanheap_guard_drain(&sh),
	                "seen before its page was unmapped: byte 5 of it was "
	                "written after its free");
	/* The caught panic left the slot off every list, and the drain's
	 * flag set: mend both. */
	atomic_store(&sh.guard.draining, false);
	b[5] = (char)SPANHEAP_POISON_BYTE;
	sh.guard.freed[sh.guard.nfreed++] = (uint16_t)slot_of(b);
	spanheap_guard_drain(&sh);
	KEXPECT(touch_faults(b));
	KEXPECT_EQ(sh.guard.ring_len, 4);
	guard_release();
}

KTEST(spanheap_guard, slots_are_reused_longest_freed_first)
{
	KASSERT(guard_heap(3, 1000, false));
	void *p[3];
	for (int i = 0; i < 3; i++)
		KASSERT((p[i] = guarded(32)) != NULL);
	spanheap_free(&sh, p[1]);
	spanheap_free(&sh, p[0]);
	spanheap_free(&sh, p[2]);
	/* p[1]'s slot, then p[0]'s, then p[2]'s. */
	for (int k = 0, order[3] = {1, 0, 2}; k < 3; k++) {
		void *q = guarded(32);
		KASSERT(q);
		KEXPECT_EQ((uintptr_t)q >> 12, (uintptr_t)p[order[k]] >> 12);
		p[order[k]] = q;
	}
	for (int i = 0; i < 3; i++)
		spanheap_free(&sh, p[i]);
	/* No memory for the page: nothing taken, counted. */
	mm_port_fail_maps(1);
	KEXPECT(guarded(32) == NULL);
	KEXPECT_EQ(sh.guard.nomem, 1);
	KEXPECT_EQ(sh.guard.ring_len, 3);
	/* MM_NO_GROW is never sampled. */
	KEXPECT(spanheap_guard_alloc(&sh, 32, 16, MM_NO_GROW, 2) == NULL);
	guard_release();
}

/* Allocations through the API until one is the pool's (interval 1: the
 * first refill or out-of-line call of a CPU). */
KTEST(spanheap_guard, the_api_samples_and_knows_its_objects)
{
	KASSERT(guard_heap(8, 1, false));
	char *z = spanheap_alloc(&sh, 50, MM_ZERO); /* out of line */
	KASSERT(z && spanheap_guard_owns(&sh.guard, z));
	KEXPECT(all_bytes(z, 50, 0));
	KEXPECT_EQ(spanheap_usable_size(&sh, z), 50);
	memset(z, 'q', 50);
	char *r = spanheap_realloc(&sh, z, 70, 0);
	KASSERT(r && r != z);
	KEXPECT(all_bytes(r, 50, 'q'));
	KEXPECT(touch_faults(z)); /* the old one freed and unmapped */
	spanheap_free(&sh, r);
	/* A fast-path allocation's refill is sampled too. */
	void *f = spanheap_alloc(&sh, 24, 0);
	KASSERT(f);
	KEXPECT(spanheap_guard_owns(&sh.guard, f));
	spanheap_free(&sh, f);
	/* Large requests and alignments above a page are not. */
	void *l = spanheap_alloc(&sh, 40000, 0);
	KASSERT(l && !spanheap_guard_owns(&sh.guard, l));
	spanheap_free(&sh, l);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT(st.guard_allocs >= 3 && st.guard_frees == st.guard_allocs);
	SH_CHECK(&sh, "after the API's guarded objects");
	spanheap_flush_cache(&sh);
	guard_release();
}

/*
 * A realloc that shrinks a guarded object when the heap has no memory for
 * the new object keeps the object where it is; with MM_ZERO the bytes it
 * gave up, past the new size up to those asked, are zero, as for any
 * object kept in place (a later growth reads zeros), and without it they
 * are as they were. With memory back, the same realloc moves the object
 * to the heap's, its bytes copied.
 */
KTEST(spanheap_guard, realloc_shrinking_without_memory_keeps_the_object)
{
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	hc.reserve_pages = 0;
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.guard_slots = 4;
	sc.guard_interval = 1000;
	KASSERT(sh_heap_new_with(&heap, &sh, &hc, &sc));
	mm_port_set_cpu(0);
	char *p = guarded(100);
	KASSERT(p && spanheap_guard_owns(&sh.guard, p));
	memset(p, 0xaa, 100);
	static void *held[64];
	static size_t held_pages[64];
	size_t n = 0;
	mm_port_set_quiet(true);
	for (size_t k = heap.arena_pages; k; k /= 2)
		while (n < 64 && (held[n] = mheap_alloc_pages(&heap, k, 0)))
			held_pages[n++] = k;
	mm_port_set_quiet(false);
	KASSERT(n < 64);
	KEXPECT(spanheap_realloc(&sh, p, 40, 0) == p);
	KEXPECT(all_bytes(p, 100, 0xaa)); /* as it was */
	KEXPECT(spanheap_realloc(&sh, p, 40, MM_ZERO) == p);
	KEXPECT(all_bytes(p, 40, 0xaa));
	KEXPECT(all_bytes(p + 40, 60, 0));
	while (n--)
		mheap_free_pages(&heap, held[n], held_pages[n]);
	char *q = spanheap_realloc(&sh, p, 40, MM_ZERO);
	KASSERT(q);
	KEXPECT(q != p && !spanheap_guard_owns(&sh.guard, q));
	KEXPECT(all_bytes(q, 40, 0xaa));
	spanheap_free(&sh, q);
	SH_CHECK(&sh, "after the guarded reallocs");
	spanheap_flush_cache(&sh);
	guard_release();
}

/* The named caches' case, in normal or poison mode. */
static void caches_case(bool poison)
{
	{
		KASSERT(guard_heap(8, 1000, poison));
		struct objcache *a = objcache_create(&sh, "g-a", 40, 16);
		struct objcache *b = objcache_create(&sh, "g-b", 200, 16);
		struct objcache *c = objcache_create(&sh, "g-c", 40, 16);
		/* Large objects: its class is 0, as a large span's. */
		struct objcache *big =
		        objcache_create(&sh, "g-big", 16 * MM_PAGE_SIZE, 16);
		KASSERT(a && b && c && big && big->sizeclass == 0);
		/* The pool's object with a's class, as objcache_alloc_slow
		 * would get it, then a's owner (poison mode). */
		unsigned cls = spanheap_class_serving(&sh, 40, 16);
		char *p = spanheap_guard_alloc(&sh, 40, 16, 0, cls), *q;
		KASSERT(p);
		unsigned got;
		uint32_t *own = spanheap_guard_owner_at(&sh, p, &got);
		KASSERT(own && got == cls);
		if (poison)
			*own = a->owner;
		objcache_count(a, 1);
		EXPECT_MISUSE(objcache_free(b, p), "to cache 'g-b'", p);
		EXPECT_MISUSE(objcache_free(big, p), "to cache 'g-big'", p);
		if (poison) {
			EXPECT_MISUSE(objcache_free(c, p), "cache 'g-a''s", p);
			EXPECT_MISUSE(spanheap_free(&sh, p), "cache 'g-a''s",
			              p);
			EXPECT_MISUSE(spanheap_realloc(&sh, p, 90, 0),
			              "cache 'g-a''s", p);
		}
		char log[1024];
		sh_where_log(&sh, p, log, sizeof(log));
		KEXPECT(!poison || strstr(log, "cache 'g-a''s") != NULL);
		objcache_free(a, p);
		KEXPECT(touch_faults(p));
		/* Through the cache's own calls, sampled or not. */
		for (int i = 0; i < 50; i++) {
			KASSERT((q = objcache_alloc(a, 0)) != NULL);
			memset(q, 1, 40);
			objcache_free(a, q);
		}
		KEXPECT(objcache_destroy(a) && objcache_destroy(b) &&
		        objcache_destroy(c) && objcache_destroy(big));
		spanheap_flush_cache(&sh);
		guard_release();
	}
}

KTEST(spanheap_guard, named_caches_check_class_and_owner)
{
	caches_case(false);
	caches_case(true);
}

/*
 * A poison-mode cache's own allocation that the pool samples: the cache
 * (objcache_alloc_slow) writes its owner into the object's slot, as it
 * does into a span's red-zone record, so that a free to another cache
 * of the same class, or to the heap, mm_panics naming the owner, where
 * names it, and the owner's free takes the object back and unmaps it.
 */
KTEST(spanheap_guard, a_poison_cache_s_sampled_object_gets_its_owner)
{
	KASSERT(guard_heap(4, 1, true));
	struct objcache *a = objcache_create(&sh, "g-own", 40, 16);
	struct objcache *c = objcache_create(&sh, "g-other", 40, 16);
	KASSERT(a && c && a->owner != 0);
	void *plain[64];
	size_t nplain = 0;
	char *p = NULL;
	while (!p && nplain < 64) {
		char *q = objcache_alloc(a, 0);
		KASSERT(q);
		if (spanheap_guard_owns(&sh.guard, q))
			p = q;
		else
			plain[nplain++] = q;
	}
	KASSERT(p);
	unsigned cls;
	uint32_t *own = spanheap_guard_owner_at(&sh, p, &cls);
	KASSERT(own);
	KEXPECT_EQ(*own, a->owner);
	KEXPECT_EQ(cls, a->sizeclass);
	memset(p, 1, 40);
	EXPECT_MISUSE(objcache_free(c, p), "cache 'g-own''s", p);
	EXPECT_MISUSE(spanheap_free(&sh, p), "cache 'g-own''s", p);
	char log[1024];
	sh_where_log(&sh, p, log, sizeof(log));
	KEXPECT(strstr(log, "cache 'g-own''s") != NULL);
	objcache_free(a, p);
	KEXPECT(touch_faults(p));
	for (size_t i = 0; i < nplain; i++)
		objcache_free(a, plain[i]);
	KEXPECT(objcache_destroy(a) && objcache_destroy(c));
	SH_CHECK(&sh, "after the cache's sampled object");
	spanheap_flush_cache(&sh);
	guard_release();
}

/* Objects counted by the traces of entries t[0..n). */
static size_t traced(const struct spanheap_trace *t, size_t n)
{
	size_t objects = 0;
	for (size_t i = 0; i < n; i++)
		objects += t[i].objects;
	return objects;
}

/* Poison mode's records and traces take the pool's objects in: their
 * slots' records, given as a span object's are. */
KTEST(spanheap_guard, poison_records_and_traces_count_guarded_objects)
{
	KASSERT(guard_heap(4, 1000, true));
	char *a = guarded(40), *b = guarded(72);
	KASSERT(a && b);
	struct spanheap_track al, fr;
	KEXPECT(spanheap_object_tracks(&sh, a + 3, &al, &fr));
	KEXPECT(al.ns != 0 && al.npcs > 0 && fr.ns == 0);
	KEXPECT(!spanheap_object_tracks(&sh, a - 4096, &al, &fr)); /* guard */
	struct spanheap_trace t[4];
	size_t rest;
	size_t n = spanheap_alloc_traces(&sh, 0, t, 4, &rest);
	KEXPECT_EQ(traced(t, n), 2);
	n = spanheap_alloc_traces(&sh, sizeclass_of(72), t, 4, &rest);
	KEXPECT(traced(t, n) == 1 && t[0].bytes == 72);
	spanheap_free(&sh, a);
	KEXPECT(spanheap_object_tracks(&sh, a, &al, &fr));
	KEXPECT(fr.ns != 0 && fr.ns >= al.ns && fr.npcs > 0);
	n = spanheap_alloc_traces(&sh, 0, t, 4, &rest);
	KEXPECT_EQ(traced(t, n), 1);
	spanheap_free(&sh, b);
	guard_release();
}
