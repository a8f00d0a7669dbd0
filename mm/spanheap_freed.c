/*
 * mm/spanheap_freed.c: the large frees the span heap remembers, so that an
 * address on a freed large object's pages (a use after free, which
 * mm.debug_pagealloc turns into a page fault) is named: the object, where
 * in it, how long ago it was freed, on which CPU and, in poison mode, by
 * which stack (KASAN's "freed by task" for a large kmalloc).
 *
 * Purpose: a small object's free leaves a record in its span
 * (spanheap_track.c), which outlives the object; a large object's span
 * struct goes back at its free, and its pages' table entries become a mark
 * (MHEAP_SPAN_FREED_LARGE) that says only that a large object was freed
 * there.
 *
 * Representation: a ring of SPANHEAP_FREED_LARGE_RING entries in struct
 * spanheap (spanheap_types.h), each a sequence word, the object's first
 * byte and pages, the pages given back (all of them, or the tail a
 * realloc's shrink gave back) and a struct spanheap_track (time, CPU,
 * stack).
 *
 * Algorithm: spanheap_freed_large_note, before the free marks the pages:
 * the time, the CPU and (poison mode) the stack first, with no lock; then
 * under heap->lock the next entry: its sequence made odd, the fields
 * written, the sequence made even (a sequence lock with one writer at a
 * time; the orders are on the fields' loads and stores, STORE and LOAD).
 * spanheap_freed_large_find reads the entries newest first: the sequence, the
 * fields, the sequence again; an entry whose sequence is odd or moved is being
 * written over, and is passed by. It is asked only for a page the table marks
 * freed-large, so an entry whose pages were handed out again is never taken for
 * them.
 *
 * Locking: writers under heap->lock (the leaf: the stack is walked before
 * it is taken); readers take nothing, from any context but NMI.
 *
 * Limits: the last 32 large frees; an older one is said to be freed, with
 * nothing more. The stack starts with a frame or two of the heap's own
 * (as poison mode's records of small objects do).
 */
#include "spanheap_internal.h"

/* The return addresses a note's stack leaves out: into its caller. */
#define NOTE_SKIP 1

/* An entry's fields: stored release, so that the odd sequence before
 * them is seen by any reader that sees one of them, and loaded acquire,
 * so that the reader's second look at the sequence comes after them (no
 * fence: ThreadSanitizer knows none; on x86 all are plain moves). */
#define STORE(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELEASE)
#define LOAD(field)     __atomic_load_n(&(field), __ATOMIC_ACQUIRE)

__attribute__((noinline)) void
spanheap_freed_large_note(struct spanheap *sh, uintptr_t obj, uint32_t objpages,
                          uintptr_t from, uint32_t npages)
{
	/* The free's time, CPU and (if sh records callers) stack. */
	struct spanheap_track t = {0};
	spanheap_track_fill(&t, sh->track, NOTE_SKIP, 0);
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	unsigned next = LOAD(sh->freed_large_next);
	STORE(sh->freed_large_next, next + 1);
	struct spanheap_freed_large *e =
	        &sh->freed_large[next % SPANHEAP_FREED_LARGE_RING];
	uint32_t seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
	atomic_store_explicit(&e->seq, seq + 1, memory_order_relaxed);
	STORE(e->obj, obj);
	STORE(e->objpages, objpages);
	STORE(e->from, from);
	STORE(e->npages, npages);
	STORE(e->t.ns, t.ns);
	STORE(e->t.cpu, t.cpu);
	STORE(e->t.npcs, t.npcs);
	for (unsigned i = 0; i < SPANHEAP_TRACK_PCS; i++)
		STORE(e->t.pc[i], t.pc[i]);
	atomic_store_explicit(&e->seq, seq + 2, memory_order_release);
	mm_lock_release(&sh->heap->lock, irq);
}

/* Entry e into *out if it is not being written; false if it is. An entry
 * never written (sequence 0, its pages none) is read, and matches no
 * address: a sequence of 0 is also one wrapped after 2^31 writes. */
static bool entry_read(const struct spanheap_freed_large *e,
                       struct spanheap_freed_large *out)
{
	uint32_t seq = atomic_load_explicit(&e->seq, memory_order_acquire);
	if (seq & 1)
		return false;
	out->obj = LOAD(e->obj);
	out->objpages = LOAD(e->objpages);
	out->from = LOAD(e->from);
	out->npages = LOAD(e->npages);
	out->t.ns = LOAD(e->t.ns);
	out->t.cpu = LOAD(e->t.cpu);
	out->t.npcs = LOAD(e->t.npcs);
	for (unsigned i = 0; i < SPANHEAP_TRACK_PCS; i++)
		out->t.pc[i] = LOAD(e->t.pc[i]);
	return atomic_load_explicit(&e->seq, memory_order_relaxed) == seq;
}

bool spanheap_freed_large_find(const struct spanheap *sh, uintptr_t a,
                               struct spanheap_where *w)
{
	unsigned next = LOAD(sh->freed_large_next);
	for (unsigned k = 1; k <= SPANHEAP_FREED_LARGE_RING; k++) {
		struct spanheap_freed_large e;
		if (!entry_read(&sh->freed_large[(next - k) %
		                                 SPANHEAP_FREED_LARGE_RING],
		                &e) ||
		    a - e.from >= (uintptr_t)e.npages * MM_PAGE_SIZE)
			continue;
		w->start = e.obj;
		w->offset = a - e.obj;
		w->span_base = e.from;
		w->span_pages = e.objpages;
		w->elemsize = (size_t)e.objpages * MM_PAGE_SIZE;
		w->freed_pages = e.npages;
		w->freed = e.t;
		w->cpu = (int)e.t.cpu;
		return true;
	}
	return false;
}

void spanheap_freed_large_log(uintptr_t a, const struct spanheap_where *w)
{
	if (!w->freed.ns) {
		/* The mark is a free's or a shrink's: the object may
		 * live on. */
		mm_log("spanheap: %#lx: on pages a large object gave back "
		       "(its free, or a realloc's shrink of it: a use after "
		       "free?), one of the heap's last %u large frees no more",
		       (unsigned long)a, (unsigned)SPANHEAP_FREED_LARGE_RING);
		return;
	}
	uint64_t now = mm_port_now_ns();
	unsigned long ago =
	        (unsigned long)((now > w->freed.ns ? now - w->freed.ns : 0) /
	                        1000);
	if (w->span_base == w->start)
		mm_log("spanheap: %#lx: %zu bytes into a large object [%#lx, "
		       "+%u pages) freed %lu us before on CPU %u (a use after "
		       "free?)",
		       (unsigned long)a, w->offset, (unsigned long)w->start,
		       w->span_pages, ago, w->freed.cpu);
	else
		mm_log("spanheap: %#lx: %zu bytes into a large object [%#lx, "
		       "+%u pages), in the tail [%#lx, +%u pages) a realloc "
		       "gave back %lu us before on CPU %u (a use after free?)",
		       (unsigned long)a, w->offset, (unsigned long)w->start,
		       w->span_pages, (unsigned long)w->span_base,
		       w->freed_pages, ago, w->freed.cpu);
	if (w->freed.npcs)
		spanheap_track_log(w->start, &w->freed, "freed", now);
}
