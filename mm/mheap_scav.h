/*
 * mm/mheap_scav.h: the page heap's background scavenger (mheap_scav.c):
 * its state in struct mheap, starting and stopping its thread, and the
 * arithmetic of its goal and its CPU budget (the sweeper paces itself
 * with the same). Included by mheap.h; not included on its own.
 */
#ifndef MM_MHEAP_SCAV_H
#define MM_MHEAP_SCAV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "port.h"

struct mheap;

/* The background scavenger's state (mheap_scav.c). */
struct mheap_scav {
	/* Owned by mheap_scavenger_start/stop (thread context): */
	struct mm_thread *thread;
	/* Protected by h->lock: */
	bool idle;   /* asleep, nothing to take: a large free wakes it */
	bool refill; /* an atomic caller found the reserve short */
	/* Frees that made pages free backed (mheap_free_pages) or may have
	 * made some takeable (an undone allocation, or a batch not the
	 * thread's, whose run made its chunk dense meanwhile; the debug
	 * mode's, mheap_free_unmapping), and their count when the thread
	 * last found nothing to take: equal, it neither searches the heap
	 * (bg_turn) nor stays awake for it (bg_idle) until the next. */
	uint64_t backed_frees, barren_frees;
	uint64_t barren_searches; /* background searches that found none */
	/* Atomic, no lock: */
	_Atomic bool stop;
	mm_event_t wake; /* frees over the goal, refills, stop */
	mm_event_t pace; /* a paced sleep: woken only by stop */
	/* The thread's own: */
	uint64_t reported_ns, reported_pages; /* the last "at goal" line */
};

/* Starts the background scavenger; false, saying why, if it cannot (no
 * thread, a heap not set up, or one another heap's thread serves: its
 * scav_by). Thread context. */
bool mheap_scavenger_start(struct mheap *h);

/* Stops it and joins it: when this returns the thread no longer touches h.
 * Thread context. */
void mheap_scavenger_stop(struct mheap *h);

/* Free backed pages the scavenger keeps for in_use pages in use;
 * goal_percent is at most MHEAP_MAX_GOAL_PERCENT (mheap_init refuses
 * more), so that it cannot overflow. */
#define MHEAP_MAX_GOAL_PERCENT 1000
size_t mheap_goal_pages(size_t in_use, unsigned goal_percent);

/* How long to sleep after work_ns of CPU so that the scavenger's share
 * stays within permille thousandths of one CPU: work * (1000 - b) / b,
 * at most MHEAP_PACE_MAX_NS. */
uint64_t mheap_pace_sleep_ns(uint64_t work_ns, unsigned permille);

/* The longest paced sleep, as long as an idle one (MHEAP_IDLE_NS). The
 * CPU time charged to a thread may hold a stall of its CPU (the kernel
 * charges all the time a CPU runs it: under TCG the host may stop a
 * virtual CPU for any length), and a paced sleep is deaf to frees and to
 * refill requests (only stop wakes it): a 10 s stall in one batch bought
 * the scavenger 990 s of it at 1%. The Go runtime's scavenger bounds the
 * time it paces by for the same reason (bgscavenge's maxCrit, 10 ms).
 * The share stays within the budget for work up to MHEAP_PACE_MAX_NS *
 * b / (1000 - b) between two sleeps: 101 ms at 1%. */
#define MHEAP_PACE_MAX_NS ((uint64_t)10 * 1000 * 1000 * 1000)

#endif
