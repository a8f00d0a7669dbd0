/*
 * mm/spanheap_internal.h: what spanheap.c and spanheap_sweep.c share. Not
 * for the span heap's users (spanheap.h).
 */
#ifndef MM_SPANHEAP_INTERNAL_H
#define MM_SPANHEAP_INTERNAL_H

#include "mheap_internal.h"
#include "spanheap.h"

extern struct mspan spanheap_empty_span;

/* A walk of the all-spans array (invariant 2): arr stays allocated until
 * spanheap_snapshot_put, whatever replaces it meanwhile. */
struct spanheap_snapshot {
	struct spanheap_spans *arr;
	size_t len;
	uint32_t sweepgen; /* sh->sweepgen when it was taken */
};

static inline void spanheap_assert_can_sleep(const char *fn)
{
	mheap_assert_can_sleep(fn);
}

/* The page heap's flags for the span heap's. */
unsigned mheap_flags_of(unsigned flags);

/* Takes a snapshot under the heap lock; put it back when done. */
void spanheap_snapshot(struct spanheap *sh, struct spanheap_snapshot *snap);
void spanheap_snapshot_put(struct spanheap *sh, struct spanheap_snapshot *snap);
void spanheap_spans_put(struct spanheap *sh, struct spanheap_spans *a);

/* Folds a span's frees into its bitmaps (the caller owns it); returns the
 * objects freed. */
unsigned spanheap_span_fold(struct spanheap *sh, struct mspan *s);

/* Frees an empty span the caller owns, or puts a non-empty one on its
 * class's swept list. Any context but NMI, no lock held. */
void spanheap_span_place(struct spanheap *sh, struct mspan *s);
void spanheap_span_free(struct spanheap *sh, struct mspan *s);

/* The first slot of CPU cpu's magazine of class cls; its slab is made
 * (sh->caches[cpu].slab not NULL). */
static inline uintptr_t *mag_base(struct spanheap *sh, unsigned cpu,
                                  unsigned cls)
{
	return sh->caches[cpu].slab + sh->mag_off[cls];
}

/* ---- Central lists (locking: the class's lock) ---- */

/* The index of the swept lists for sweepgen sg; 1 - it, the unswept. */
static inline unsigned swept_idx(uint32_t sg)
{
	return (sg / 2) % 2;
}

static inline void list_push(struct mspan_list_head *l, struct mspan *s,
                             enum mspan_list which)
{
	s->prev = NULL;
	s->next = l->first;
	if (l->first)
		l->first->prev = s;
	l->first = s;
	l->n++;
	s->list = (uint8_t)which;
}

static inline void list_remove(struct mspan_list_head *l, struct mspan *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		l->first = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->list = MSPAN_LIST_NONE;
	l->n--;
}

static inline struct mspan *list_pop(struct mspan_list_head *l)
{
	struct mspan *s = l->first;
	if (s)
		list_remove(l, s);
	return s;
}

/* Takes s off the list it is on: its sweepgen (sg swept, sg - 2 not) and
 * s->list say which. */
static inline void list_remove_any(struct mcentral *c, struct mspan *s,
                                   uint32_t sg)
{
	uint32_t v = atomic_load_explicit(&s->sweepgen, memory_order_relaxed);
	unsigned i = v == sg ? swept_idx(sg) : 1 - swept_idx(sg);
	list_remove(s->list == MSPAN_LIST_PARTIAL ? &c->partial[i]
	                                          : &c->full[i],
	            s);
}

/* Folds spans off class cls's fold queue (spanheap.c). */
struct mspan *spanheap_fold_queue(struct spanheap *sh, unsigned cls, bool take);

/* Gives this CPU's magazines back to their spans (pins). Any context but
 * NMI; returns true if the sweeper should be kicked. */
bool spanheap_mags_drain_here(struct spanheap *sh);

/* Wakes the sweeper if pending frees passed the threshold. Any context
 * but NMI, no lock held. */
void spanheap_sweeper_kick(struct spanheap *sh);

#endif
