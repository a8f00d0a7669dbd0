/*
 * mm/spanheap_central.h: the span heap's central lists (mcentral,
 * spanheap_central.c) as its files use them: the list operations and the
 * calls of the central layer. Locking: the class's lock, for everything
 * here. Included by spanheap_internal.h; not for the heap's users.
 */
#ifndef MM_SPANHEAP_CENTRAL_H
#define MM_SPANHEAP_CENTRAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "spanheap.h"

/* The most queued spans a refill folds (spanheap_fold_queue): what is
 * left waits in the class's backlog, so a refill costs this many folds,
 * not the queue's length. */
#define SPANHEAP_FOLD_QUEUE_BUDGET 16

/* The most queued spans a thread allocation folds before the page heap
 * grows (spanheap_sweep_before_growth), fewer once its pages came back. */
#define SPANHEAP_GROWTH_FOLD_BUDGET 64

/* The most unswept spans a refill sweeps before it makes a new span
 * (spanheap_central_cache_span): spans still full after their fold go
 * on a swept full list, and the refill looks further. */
#define SPANHEAP_CACHE_SPAN_BUDGET 32

/* The index of the swept lists for sweepgen sg; 1 - it, the unswept. */
static inline unsigned swept_idx(uint32_t sg)
{
	return (sg / 2) % 2;
}

/* Class cls's central lists, cls checked (spanheap_class_checked, naming
 * fn). Any context. */
static inline struct mcentral *spanheap_central_of(struct spanheap *sh,
                                                   unsigned cls, const char *fn)
{
	return &sh->central[spanheap_class_checked(cls, fn)];
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

/* Folds spans off class cls's fold queue (spanheap_central.c). */
struct mspan *spanheap_fold_queue(struct spanheap *sh, unsigned cls, bool take);
/* Folds and places queued spans of class cls, at most *budget (less what
 * it folds), and none once the page heap would not grow for npages
 * (mheap_would_grow): a thread allocation's work before growth, in
 * proportion to its need. Nothing pinned, no mm lock held. */
void spanheap_fold_queue_for(struct spanheap *sh, unsigned cls, size_t npages,
                             unsigned *budget);
/* A cycle's finish: folds and places class cls's backlog and then its
 * queue, in chunks of SPANHEAP_GROWTH_FOLD_BUDGET. Nothing pinned. */
void spanheap_fold_queue_all(struct spanheap *sh, unsigned cls);
void spanheap_fold_queue_push(struct mcentral *c, struct mspan *s);

/* A span with free objects for a cache, or NULL (Go's cacheSpan); a
 * cached span handed back (uncacheSpan). Pinned. */
struct mspan *spanheap_central_cache_span(struct spanheap *sh, unsigned cls);
void spanheap_uncache_span(struct spanheap *sh, struct mspan *s);

#endif
