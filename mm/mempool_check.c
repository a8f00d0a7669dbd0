/*
 * mm/mempool_check.c: a reserved-element pool's checker and counters
 * (mempool.h).
 *
 * Purpose: mempool_check finds a broken reserve (a count past its size,
 * a NULL slot, an element twice, a marker lost to a write, an element
 * the heap no longer holds) and names the slot; mempool_info reads the
 * counters.
 *
 * Algorithm: one walk under the pool's lock (mempool.c's), flipping each
 * element's marker as it is met so that a second meeting finds it
 * flipped, then putting every marker back: O(min), no memory. The heap's
 * view of each element is spanheap_where's, lock-free, so the walk may
 * run in any context but NMI.
 *
 * Locking: the pool's lock (MM_RANK_HEAP, a leaf) for the walk; the
 * panic comes after it is released. mempool_info takes none: each field
 * is read on its own.
 */
#include "mempool.h"

#include <stdatomic.h>

#include "mempool_internal.h"
#include "spanheap_internal.h"

/* What is wrong with e, an element of p's reserve, as the heap sees it;
 * NULL if nothing. Lock-free reads (spanheap_where): any context. */
static const char *heap_view(struct mempool *p, const void *e)
{
	struct spanheap_where w;
	if (!spanheap_where(p->sh, e, &w))
		return "not in the heap";
	bool live = w.kind == SPANHEAP_WHERE_LARGE ||
	            ((w.kind == SPANHEAP_WHERE_SMALL ||
	              w.kind == SPANHEAP_WHERE_GUARD) &&
	             w.state == SPANHEAP_OBJ_ALLOCATED);
	if (!live)
		return "not an allocated object of the heap (freed behind "
		       "the pool's back?)";
	if (w.start != (uintptr_t)e || w.before)
		return "not the start of an object";
	return NULL;
}

/* An unmarked pool's walk (a cache with slabs of its own, whose
 * objects' bytes the pool leaves alone): no element NULL or met twice, by
 * a scan of the slots before it, O(curr^2) (a checker's cost, not a
 * free's). */
static const char *walk_unmarked_locked(struct mempool *p, uint32_t n,
                                        uint32_t *slot)
{
	for (uint32_t i = 0; i < n; i++) {
		*slot = i;
		if (!p->reserve[i])
			return "a NULL slot";
		for (uint32_t j = 0; j < i; j++)
			if (p->reserve[j] == p->reserve[i])
				return "an element met twice";
	}
	*slot = 0;
	return NULL;
}

/* The reserve's checks, under the lock: each element, for the heap's and
 * a named cache's pools, as the heap sees it, then its marker, flipped
 * as it is met (a second meeting finds it flipped) and put back. Returns
 * what is wrong, *slot naming where; NULL if nothing. */
static const char *walk_locked(struct mempool *p, uint32_t *slot)
{
	uint32_t n = atomic_load_explicit(&p->curr, memory_order_relaxed);
	*slot = 0;
	if (n > mempool_min_of(p) || mempool_min_of(p) > p->cap)
		return "more elements than the reserve's size";
	if (p->unmarked)
		return walk_unmarked_locked(p, n, slot);
	const char *why = NULL;
	uint32_t i = 0;
	for (; i < n && !why; i++) {
		void *e = p->reserve[i];
		uintptr_t want = e ? p->marker ^ (uintptr_t)e : 0;
		/* The heap's view before the element's word is read: a slot
		 * an overrun wrote may hold any address (until a review the
		 * word came first, and the checker faulted on it). */
		const char *view = e && !p->src ? heap_view(p, e) : NULL;
		if (!e)
			why = "a NULL slot";
		else if (view)
			why = view;
		else if (*mempool_first_word(e) == (want ^ 1))
			why = "an element met twice";
		else if (*mempool_first_word(e) != want)
			why = "its first word is not the pool's marker "
			      "(written "
			      "while in the reserve?)";
		else
			*mempool_first_word(e) = want ^ 1;
	}
	/* The bad slot's word is left as it was found. */
	uint32_t met = why ? i - 1 : i;
	*slot = why ? met : 0;
	for (uint32_t j = 0; j < met; j++)
		if (p->reserve[j])
			*mempool_first_word(p->reserve[j]) =
			        p->marker ^ (uintptr_t)p->reserve[j];
	return why;
}

void mempool_check(struct mempool *p)
{
	uint32_t slot;
	unsigned long irq = mm_lock_acquire(&p->lock);
	const char *why = walk_locked(p, &slot);
	uint32_t min = mempool_min_of(p);
	void *e = why && slot < min && p->reserve ? p->reserve[slot] : NULL;
	uint32_t n = atomic_load_explicit(&p->curr, memory_order_relaxed);
	mm_lock_release(&p->lock, irq);
	if (why)
		mm_panic("mempool %s: reserve slot %u of %u (%u held): %p: %s",
		         p->name, slot, min, n, e, why);
}

void mempool_info(struct mempool *p, struct mempool_info *out)
{
	mm_name_copy(out->name, p->name, MEMPOOL_NAME_MAX);
	out->size = p->size;
	out->min = mempool_min_of(p);
	out->curr = atomic_load_explicit(&p->curr, memory_order_relaxed);
	out->out = atomic_load_explicit(&p->out, memory_order_relaxed);
	out->from_reserve =
	        atomic_load_explicit(&p->from_reserve, memory_order_relaxed);
	out->waits = atomic_load_explicit(&p->waits, memory_order_relaxed);
	out->timeouts =
	        atomic_load_explicit(&p->timeouts, memory_order_relaxed);
	out->atomic_fails =
	        atomic_load_explicit(&p->atomic_fails, memory_order_relaxed);
	out->refills = atomic_load_explicit(&p->refills, memory_order_relaxed);
}
