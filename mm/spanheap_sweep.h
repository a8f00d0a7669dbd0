/*
 * mm/spanheap_sweep.h: sweep cycles (spanheap_sweep.c) and when they run
 * (spanheap_sweeper.c: the pending frees and the sweeper thread), as the
 * span heap's other files use them. Included by spanheap_internal.h; not
 * for the heap's users, whose calls (spanheap_sweep_cycle, the sweeper's
 * start and stop, release-everything) are in spanheap.h.
 */
#ifndef MM_SPANHEAP_SWEEP_H
#define MM_SPANHEAP_SWEEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap.h"

/* ---- spanheap_sweep.c ---- */

/* The cycle semaphore (invariant 5): held from a cycle's flip to its
 * finish, and by the checker. Thread context. */
void spanheap_cycle_acquire(struct spanheap *sh);
void spanheap_cycle_release(struct spanheap *sh);
/* A cycle holds the semaphore or waits for it. Any context but NMI. */
bool spanheap_cycle_running(struct spanheap *sh);

/* One whole cycle: flip, sweep, finish; the number of spans it freed. The
 * sweeper thread yields between batches (yield). Thread context, nothing
 * pinned, no mm lock held. */
size_t spanheap_run_cycle(struct spanheap *sh, bool yield);

/* The page heap refused a thread allocation: sweeps now; true if memory
 * may have come back. */
bool spanheap_reclaim(struct spanheap *sh);

/* ---- spanheap_sweeper.c ---- */

/* Wakes the sweeper if pending frees passed the threshold. Any context
 * but NMI, no lock held. */
void spanheap_sweeper_kick(struct spanheap *sh);

/* Bytes of remote frees counted on every CPU so far: a flip's base. Any
 * context but NMI. */
uint64_t spanheap_pending_total(struct spanheap *sh);

/* Bytes of remote frees counted since the last flip's base: above 0, the
 * sweeper's threshold or a reclaim will run a cycle. Any context but
 * NMI. */
uint64_t spanheap_pending_since_flip(struct spanheap *sh);

/* True if a class's fold queue or backlog holds spans (a cycle is owed
 * even with nothing pending). Takes each class's lock: thread context. */
bool spanheap_queues_hold_spans(struct spanheap *sh);

/* Before the page heap grows for a thread allocation of npages: if
 * pending frees passed the sweeper's threshold or a cycle runs, folds
 * queued spans until npages came back (at most
 * SPANHEAP_GROWTH_FOLD_BUDGET; spanheap_sweeper.c says why); true if it
 * did any work. Thread context, nothing pinned, no mm lock held. */
bool spanheap_sweep_before_growth(struct spanheap *sh, size_t npages);

/* How long a quiet visit waits after its mark: period_ns doubled
 * backoff times, UINT64_MAX if that overflows. Any context. */
uint64_t spanheap_visit_wait_ns(uint64_t period_ns, unsigned backoff);

/* Cache refills on every CPU so far: the heap's activity. Any context. */
uint64_t spanheap_refills_total(struct spanheap *sh);

#endif
