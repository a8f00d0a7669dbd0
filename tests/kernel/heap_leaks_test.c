/*
 * The leak scan in the kernel (kernel/heap_leaks.c over
 * mm/spanheap_leak.c; Linux's kmemleak), with mm.debug_poison: an object
 * whose only pointer was dropped is reported, with the stack that
 * allocated it named; objects pointed to from the kernel's bss, from
 * another heap object, from this thread's stack and from the stack of a
 * thread on another CPU (parked by the scan's stop of the world) are
 * not; with mm.guard=1 too, the objects are the guarded pool's, judged
 * the same way. The shell's leaks prints the report, or says the heap
 * keeps no records without the mode. A constructor cache's dropped
 * object (a slab of its own) is reported with its cache and stack.
 *
 * The leaked object's address is kept XORed with a mask, so that no word
 * of memory points to it; the dead frames below the scanner's, which
 * may hold a copy, are not read (thread_each_live_stack).
 */
#include <stdatomic.h>

#include "arch/x86_64/layout.h"
#include "arch/x86_64/paging.h"
#include "kernel/heap.h"
#include "kernel/heap_debug.h"
#include "kernel/kmem_cache.h"
#include "kernel/ksyms.h"
#include "kernel/format.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/heap_util.h"
#include "mm/mheap_testing.h"
#include "mm/spanheap_internal.h"

#define HIDE 0x5a5a5a5a5a5a5a5aull

static void **kept_in_bss;            /* a root: and its [0] a chained one */
static _Atomic uintptr_t held_hidden; /* the other thread's object ^ HIDE */
static _Atomic bool holder_go, holder_ready;

/* Out of line, so that its return address names the leak's stack: a
 * 72-byte object whose address is kept hidden. */
__attribute__((noinline)) static uintptr_t leaks_make_lost(void)
{
	uintptr_t hidden = (uintptr_t)kmalloc(72, 0) ^ HIDE;
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return hidden;
}

/* An object kept from bss, and one chained from it. */
static bool make_kept(void)
{
	kept_in_bss = kmalloc(72, KM_ZERO);
	if (kept_in_bss)
		kept_in_bss[0] = kmalloc(40, 0);
	return kept_in_bss && kept_in_bss[0];
}

static void free_kept(void)
{
	kfree(kept_in_bss[0]);
	kfree(kept_in_bss);
	kept_in_bss = NULL;
}

/* A thread that holds its object's only pointer on its own stack until
 * told to go. */
static void holder(void *arg)
{
	(void)arg;
	void *volatile mine = kmalloc(56, 0);
	atomic_store(&held_hidden, (uintptr_t)mine ^ HIDE);
	atomic_store(&holder_ready, true);
	while (!atomic_load(&holder_go))
		thread_sleep_ns(1000000);
	kfree(mine);
}

/* The words of the image's data and bss (the scan's roots there, less
 * the guarded pool's slots, which it does not read either) that point
 * into [a, a + size): stale pointers of earlier tests, each of which
 * keeps whatever is allocated at its address now. Said. */
static unsigned say_referrers(uintptr_t a, size_t size)
{
	uintptr_t r[2][2] = {
	        {(uintptr_t)__data_start, (uintptr_t)__boot_stack_guard},
	        {(uintptr_t)__boot_stack_top, (uintptr_t)__bss_end}};
	uintptr_t slots = (uintptr_t)kspanheap.guard.slot;
	size_t slots_bytes = sizeof(kspanheap.guard.slot);
	unsigned n = 0;
	for (int k = 0; k < 2; k++)
		for (uintptr_t w = r[k][0]; w + 8 <= r[k][1]; w += 8)
			if (*(const uintptr_t *)w - a < size &&
			    w - slots >= slots_bytes) {
				ktest_diag(
				        "%#lx in data/bss points to %#lx",
				        (unsigned long)w,
				        (unsigned long)*(const uintptr_t *)w);
				n++;
			}
	return n;
}

/* The kept leak at address a, or NULL. */
static const struct spanheap_leak *found(const struct heap_leaks *hl,
                                         uintptr_t a)
{
	size_t n;
	const struct spanheap_leak *l = heap_leaks_list(hl, &n);
	for (size_t i = 0; i < n; i++)
		if (l[i].addr == a)
			return &l[i];
	return NULL;
}

/*
 * Makes a 72-byte object and drops its pointer, into lost[*n] (hidden:
 * the address ^ HIDE), until a scan (into hl, kept for the caller)
 * reports one: *a, hidden too, as a plain copy in the caller's frame,
 * which the scan reads, would keep it.
 * A stale pointer in data or bss (an earlier test's static that still
 * points to an object it freed) keeps whatever is allocated at its
 * address now, and no scan can tell it from a real one; such an object
 * stays allocated (the next is elsewhere) and is said, up to 8 of them.
 * So does a stale word on a live stack (a register a thread saved, a
 * spill slot) or in a live object, which the test cannot name: until a
 * flake audit one of those failed the test at once.
 * No stack is scrubbed first: the dead frames that hold the address are
 * not read (thread_each_live_stack).
 */
static bool make_reported_leak(struct heap_leaks *hl, uintptr_t *lost,
                               unsigned *n, uintptr_t *a)
{
	for (*n = 0; *n < 8; (*n)++) {
		*a = lost[*n] = leaks_make_lost();
		long k = heap_leaks_scan(hl, 0, 256);
		if (k > 256) { /* every leak kept, to look ours up */
			heap_leaks_done(hl);
			k = heap_leaks_scan(hl, 0, (size_t)k + 256);
		}
		if (k > 0 && found(hl, *a ^ HIDE)) {
			(*n)++;
			return true;
		}
		heap_leaks_done(hl);
		if (!say_referrers(*a ^ HIDE, 72))
			ktest_diag("%#lx kept by no word of data or bss: a "
			           "stale word on a live stack or in a live "
			           "object; trying another",
			           (unsigned long)(*a ^ HIDE));
	}
	return false;
}

static void free_lost(const uintptr_t *lost, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		kfree((void *)(lost[i] ^ HIDE));
}

KTEST(heap_leaks, reports_what_nothing_points_to)
{
	if (!kspanheap.track)
		KTEST_SKIP("no records (mm.debug_poison)");
	unsigned me = this_cpu()->id, ncpu = atomic_load(&ncpus_online);
	atomic_store(&holder_go, false);
	atomic_store(&holder_ready, false);
	struct thread_handle t =
	        thread_create("leak_holder", holder, NULL, (me + 1) % ncpu);
	KASSERT(thread_handle_ok(t));
	while (!atomic_load(&holder_ready))
		thread_yield();
	KASSERT(make_kept());
	void *volatile on_stack = kmalloc(24, 0);
	KASSERT(on_stack);
	struct heap_leaks hl;
	uintptr_t lost[8], a;
	unsigned n;
	KEXPECT(make_reported_leak(&hl, lost, &n, &a));
	const struct spanheap_leak *l = found(&hl, a ^ HIDE);
	if (l) {
		KEXPECT_EQ(l->asked, 72);
		KEXPECT(l->alloc.ns != 0 && l->alloc.cpu == me);
		KEXPECT(track_names(&l->alloc, "leaks_make_lost"));
		KEXPECT(hl.r.objects >= 5 && hl.r.reachable >= 4);
		KEXPECT(!found(&hl, (uintptr_t)kept_in_bss));
		KEXPECT(!found(&hl, (uintptr_t)kept_in_bss[0]));
		KEXPECT(!found(&hl, (uintptr_t)on_stack));
		KEXPECT(!found(&hl, atomic_load(&held_hidden) ^ HIDE));
	}
	heap_leaks_done(&hl);
	/* The list went with the work area: none is left to read (the count
	 * of the scan stayed, with a NULL list, until a review). */
	size_t left = ~(size_t)0;
	KEXPECT(heap_leaks_list(&hl, &left) == NULL);
	KEXPECT_EQ(left, 0);
	atomic_store(&holder_go, true);
	thread_join(t);
	free_lost(lost, n);
	free_kept();
	kfree(on_stack);
}

/* A constructor cache's objects (slabs of their own: large spans, whose
 * pages the scan read but whose objects it never judged until rv111)
 * are judged as small ones: one whose pointer was dropped is reported
 * with its cache and the stack that allocated it (the slab's records);
 * one kept from bss is not. Stale words are met as in
 * make_reported_leak: up to 8 tries. */
static struct objcache *ctor_cache;
static void *ctor_kept; /* a root */

static void leak_ctor(void *p)
{
	memset(p, 0x11, 48);
}

__attribute__((noinline)) static uintptr_t leaks_make_lost_ctor(void)
{
	uintptr_t hidden = (uintptr_t)kmem_cache_alloc(ctor_cache, 0) ^ HIDE;
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return hidden;
}

KTEST(heap_leaks, a_constructor_caches_dropped_object_is_reported)
{
	if (!kspanheap.track)
		KTEST_SKIP("no records (mm.debug_poison)");
	ctor_cache = kmem_cache_create_flags("leak-ctor", 48, 0, 0, leak_ctor);
	KASSERT(ctor_cache && (ctor_kept = kmem_cache_alloc(ctor_cache, 0)));
	struct heap_leaks hl;
	uintptr_t lost[8];
	const struct spanheap_leak *l = NULL;
	unsigned n;
	for (n = 0; n < 8 && !l; n++) {
		lost[n] = leaks_make_lost_ctor();
		KASSERT(lost[n] != HIDE);
		long k = heap_leaks_scan(&hl, 0, 256);
		if (k > 256) { /* every leak kept, to look ours up */
			heap_leaks_done(&hl);
			k = heap_leaks_scan(&hl, 0, (size_t)k + 256);
		}
		if (k > 0 && (l = found(&hl, lost[n] ^ HIDE)))
			continue;
		heap_leaks_done(&hl);
		say_referrers(lost[n] ^ HIDE, 48);
	}
	KEXPECT(l);
	if (l) {
		KEXPECT_EQ(l->asked, 48);
		KEXPECT_EQ(l->sizeclass, 0); /* a slab of its own */
		KEXPECT_EQ(l->owner, ctor_cache->owner);
		KEXPECT(track_names(&l->alloc, "leaks_make_lost_ctor"));
		KEXPECT(!found(&hl, (uintptr_t)ctor_kept));
#if KTEST_HOOKS
		/* The report's line names the slab and the cache (printed
		 * from this scan: a second one, the shell's, may meet a
		 * stale copy of the address, with mm.guard=1 it did). */
		capture_start();
		heap_leaks_print(&hl);
		capture_stop();
		/* With mm.guard the pool may hold it (rv123 samples such
		 * caches): said so, the cache still named. */
		KEXPECT(seen_has("(48 bytes, a slab of its own, cache "
		                 "'leak-ctor''s), allocated on CPU") ||
		        seen_has("(48 bytes, a slab of its own, in the guarded "
		                 "pool, cache 'leak-ctor''s), allocated on "
		                 "CPU") ||
		        hl.r.leaks > 16);
#endif
		heap_leaks_done(&hl);
	}
	for (unsigned i = 0; i < n; i++)
		kmem_cache_free(ctor_cache, (void *)(lost[i] ^ HIDE));
	kmem_cache_free(ctor_cache, ctor_kept);
	ctor_kept = NULL;
	KEXPECT(kmem_cache_destroy(ctor_cache));
	ctor_cache = NULL;
}

/*
 * kmalloc_plain (heap_util.h) sets the guarded pool's objects aside, in
 * a static of the tests that use it, and kmalloc_plain_done frees them:
 * a pointer left in the static kept whatever the pool put in that slot
 * next, and with mm.guard=1 the pool's few slots were soon all kept so
 * (the leak tests found no leak after addrinfo's, at -smp 4).
 */
KTEST(heap_leaks, set_aside_objects_leave_no_pointer_behind)
{
	if (!kspanheap.guard.base)
		KTEST_SKIP("no guarded pool (mm.guard)");
	static struct guard_aside aside;
	void *p = kmalloc_plain(72, 0, &aside);
	KASSERT(p);
	ktest_diag("%u objects of the pool set aside", aside.n);
	kmalloc_plain_done(&aside);
	unsigned left = 0;
	for (unsigned i = 0; i < SPANHEAP_GUARD_MAX + 1; i++)
		left += aside.p[i] != NULL;
	KEXPECT_EQ(left, 0);
	kfree(p);
}

/*
 * A guarded object's free unmaps its page with a TLB shootdown, whose
 * request (kernel/tlb.c) kept the page's address in bss after it was
 * done: an object the pool put at the start of that page next was kept
 * by it, a leak never reported. Objects of the pool at the start of
 * their page, each looked for right after its free: no word of data or
 * bss is left pointing to it.
 */
KTEST(heap_leaks, a_freed_guarded_page_leaves_no_pointer_behind)
{
	if (!kspanheap.guard.base)
		KTEST_SKIP("no guarded pool (mm.guard)");
	unsigned n = 0, kept = 0;
	for (unsigned tries = 0; tries < 4096 && n < 8; tries++) {
		void *p = kmalloc(72, 0);
		KASSERT(p);
		uintptr_t hidden = (uintptr_t)p ^ HIDE; /* no copy kept */
		bool at_start = spanheap_guard_owns(&kspanheap.guard, p) &&
		                (uintptr_t)p % PAGE_SIZE == 0;
		kfree(p);
		p = NULL;
		if (!at_start)
			continue;
		kept += say_referrers(hidden ^ HIDE, 72) != 0;
		n++;
	}
	if (!n)
		KTEST_SKIP("the pool gave no object at a page's start");
	ktest_diag("%u of %u freed objects of the pool still pointed to", kept,
	           n);
	KEXPECT_EQ(kept, 0);
}

#if KTEST_HOOKS
/* The shell's leaks: the report's lines with poison mode's records, and
 * the refusal without them. */
KTEST(heap_leaks, the_shell_prints_the_report)
{
	if (!kspanheap.track) {
		KEXPECT_EQ(capture_run_line("leaks"), SHELL_FAILED);
		KEXPECT(seen_has("leaks: the heap keeps no records (boot with "
		                 "mm.debug_poison)"));
		return;
	}
	struct heap_leaks hl;
	uintptr_t lost[8], a;
	unsigned n;
	bool made = make_reported_leak(&hl, lost, &n, &a);
	KEXPECT(made);
	size_t total = (size_t)hl.r.leaks;
	heap_leaks_done(&hl);
	KEXPECT_EQ(capture_run_line("leaks 0"), SHELL_OK);
	char want[64];
	ksnprintf(want, sizeof(want), "unreferenced object %#lx (72 bytes",
	          (unsigned long)(a ^ HIDE));
	/* Printed, unless past the first 64 (then counted). */
	KEXPECT(!made || seen_has(want) ||
	        (total > 64 && seen_has("... and ")));
	/* A guarded object (mm.guard=1) is judged as the spans' are, and
	 * said to be one (tools/test-harness: leaks_guarded). */
	if (made &&
	    spanheap_guard_owns(&kspanheap.guard, (const void *)(a ^ HIDE)))
		KEXPECT(seen_has(", in the guarded pool), allocated on CPU"));
	KEXPECT(seen_has(" unreferenced of "));
	KEXPECT(seen_has(" live objects ("));
	KEXPECT_EQ(capture_run_line("leaks 1 2"), SHELL_USAGE);
	KEXPECT_EQ(capture_run_line("leaks x"), SHELL_USAGE);
	free_lost(lost, n);
}
#endif

#ifdef MM_TEST_HOOKS
/*
 * A span's poison table given back (mm.debug_pagealloc unmaps it at once)
 * while the span still looks live to the scan: until a review the table
 * went back before the span's state said DEAD (spanheap_span_free), so a
 * thread preempted or parked between the two left a small, tracked span
 * whose table was unmapped, and a leak scan then read it with the world
 * stopped, a page fault no hook catches: a panic. The hook holds the
 * freeing thread in that window (after the table's unmap,
 * mm/mheap_testing.h) while this thread scans.
 */
static struct thread *table_freer;
static _Atomic unsigned gone_tables; /* spans seen with their table gone */
static _Atomic int gone_step;        /* 1: in the window, 2: scanned, 3: done */

/* Spans whose poison table is unmapped, before they let go of it: the
 * window; *gone gets those of them still small, which a scan reads. */
static unsigned spans_losing_table(unsigned *gone)
{
	struct spanheap_snapshot snap;
	spanheap_snapshot(&kspanheap, &snap);
	unsigned n = 0;
	*gone = 0;
	for (size_t i = 0; i < snap.len; i++) {
		const struct mspan *s = snap.arr->v[i];
		const void *rz = __atomic_load_n(&s->redzone, __ATOMIC_ACQUIRE);
		if (!rz || vm_translate((uintptr_t)rz, NULL, NULL))
			continue;
		n++;
		*gone += atomic_load(&s->state) == MSPAN_SMALL &&
		         (s->poison & SPAN_TRACKED);
	}
	spanheap_snapshot_put(&kspanheap, &snap);
	return n;
}

/* At the first unmapping free of the freer's with a span on its way
 * out: held until this thread has scanned. The tables are the metadata
 * heap's (spanheap_meta.c): until this test looked there, it waited at
 * the object heap's frees, where no table goes, and never saw the
 * window. */
static void hold_in_table_window(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &kspanheap.meta || where != MHEAP_HOOK_FREE_UNMAPPED ||
	    thread_current() != table_freer || atomic_load(&gone_step) != 0)
		return;
	unsigned gone;
	if (!spans_losing_table(&gone))
		return;
	atomic_store(&gone_tables, gone);
	atomic_store(&gone_step, 1);
	while (atomic_load(&gone_step) != 2)
		thread_sleep_ns(1000000);
}

static void free_tables(void *arg)
{
	(void)arg;
	table_freer = thread_current();
	heap_release_all(); /* the empty spans, and their tables, go */
	atomic_store(&gone_step, 3);
}

KTEST(heap_leaks, a_scan_meets_no_span_whose_table_is_gone)
{
	if (!kspanheap.track || !(kheap.cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE))
		KTEST_SKIP("needs mm.debug_poison and mm.debug_pagealloc");
	heap_threads_stop(); /* the spans are this test's thread's to free */
	/* With mm.guard=1 too, every allocation (none is the fast path's in
	 * poison mode) is the guarded pool's while it has a slot: 64 more
	 * than its slots, so that some are the spans'. Chained through
	 * their first words. */
	void **chain = NULL;
	for (unsigned i = 0; i < 64 + kspanheap.guard.nslots; i++) {
		void **o = kmalloc(700, 0);
		if (!o)
			break;
		*o = chain;
		chain = o;
	}
	while (chain) {
		void **next = *chain;
		kfree(chain);
		chain = next;
	}
	atomic_store(&gone_step, 0);
	atomic_store(&gone_tables, 0);
	table_freer = NULL;
	mheap_test_hook = hold_in_table_window;
	struct thread_handle t =
	        thread_create("table_freer", free_tables, NULL, this_cpu()->id);
	KASSERT(thread_handle_ok(t));
	while (atomic_load(&gone_step) == 0)
		thread_sleep_ns(1000000);
	bool window = atomic_load(&gone_step) == 1;
	unsigned gone = atomic_load(&gone_tables);
	KEXPECT(window); /* the empty spans went, on the freer's thread */
	KEXPECT_EQ(gone, 0);
	if (window) {
		struct heap_leaks hl;
		KEXPECT(heap_leaks_scan(&hl, 0, 0) >= 0);
		heap_leaks_done(&hl);
		atomic_store(&gone_step, 2);
	}
	thread_join(t);
	mheap_test_hook = NULL;
	KEXPECT(heap_threads_start());
}
#endif
