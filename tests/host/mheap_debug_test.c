/*
 * The page heap's debug mode (MHEAP_DEBUG_SCAV_ON_FREE) through the POSIX
 * port: a freed run is unmapped at once, so a use after free faults at
 * the freed address; a free from a context that cannot sleep frees the
 * ordinary way; a bad free panics before anything is unmapped.
 */
#include <stdatomic.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "../../mm/mheap_testing.h"
#include "fault_touch_util.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;

KTEST(mheap, debug_scavenge_on_free_faults)
{
	KASSERT(mh_new(&heap, 64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *a = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a);
	memset(a, 1, 4 * PG);
	KEXPECT(!touch_faults(a + PG + 5));
	mheap_free_pages(&heap, a, 4);
	fault_addr = NULL;
	KEXPECT(touch_faults(a + PG + 5));
	KEXPECT_EQ((uintptr_t)fault_addr, (uintptr_t)(a + PG + 5));
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.debug_pages, 4);
	KEXPECT_EQ(st.free_backed_pages, 0);
	MH_CHECK(&heap, "debug mode");
	char *b = mheap_alloc_pages(&heap, 4, 0);
	KEXPECT_EQ(b, a);
	KEXPECT(b && mh_all_bytes(b, 4 * PG, 0));
	mh_release(&heap);
}

/* In debug mode a free from a context that cannot sleep (an atomic
 * allocation trimming its run, a large object freed in an interrupt)
 * frees the pages the ordinary way; it panicked. */
KTEST(mheap, debug_mode_free_in_atomic_context)
{
	KASSERT(mh_new(&heap, 64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *a = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a);
	mm_port_set_atomic(true);
	bool panicked = MM_PORT_PANICS(mheap_free_pages(&heap, a, 4));
	mm_port_set_atomic(false);
	KEXPECT(!panicked);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.debug_pages, 0);
	KEXPECT_EQ(st.in_use_pages, 0);
	MH_CHECK(&heap, "after an atomic free in debug mode");
	mh_release(&heap);
}

/* In debug mode a bad free (here one too long, over a freed run and a
 * live neighbour) panics before anything is unmapped: the check came
 * after the unmap, which took the live neighbour's pages away. The
 * neighbour's first page is seen first (mheap_heads.c, before the lock),
 * but the freed run's page not allocated is what the line names. */
KTEST(mheap, debug_mode_bad_free_unmaps_nothing)
{
	KASSERT(mh_new(&heap, 64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *a = mheap_alloc_pages(&heap, 4, 0);
	char *b = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a && b == a + 4 * PG);
	memset(b, 2, 4 * PG);
	mheap_free_pages(&heap, a, 4);
	KEXPECT(MM_PORT_PANICS(mheap_free_pages(&heap, a, 8)));
	KEXPECT(strstr(mm_port_last_panic(), "is not allocated"));
	/* It panicked under the heap lock, which the catch left held. */
	if (mm_lock_held(&heap.lock))
		mm_lock_release(&heap.lock, 0);
	KEXPECT(!touch_faults(b + 3 * PG));
	KEXPECT(mh_all_bytes(b, 4 * PG, 2));
	mh_release(&heap);
}

/* In debug mode the freed run is unmapped with the lock released: a
 * second free of it meanwhile (an interrupt handler's, another CPU's)
 * must panic as a free of a page being scavenged does. It passed every
 * check (the run was allocated and on no batch's list), went back to
 * the free set backed, and was handed to the next allocation, whose
 * pages the debug free then unmapped and freed again under it. */
static void *twice;
static bool twice_panicked;

static void free_again(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_FREE_UNMAPPED || !twice)
		return;
	void *p = twice;
	twice = NULL;
	mm_port_set_atomic(true); /* the ordinary path, as a handler's */
	twice_panicked = MM_PORT_PANICS(mheap_free_pages(&heap, p, 4));
	mm_port_set_atomic(false);
	if (mm_lock_held(&heap.lock)) /* the catch left it held */
		mm_lock_release(&heap.lock, 0);
}

KTEST(mheap, debug_mode_free_twice_while_unmapping_panics)
{
	KASSERT(mh_new(&heap, 64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *a = mheap_alloc_pages(&heap, 4, 0);
	KASSERT(a);
	twice = a;
	twice_panicked = false;
	mheap_test_hook = free_again;
	mheap_free_pages(&heap, a, 4);
	mheap_test_hook = NULL;
	KEXPECT(twice == NULL && twice_panicked);
	KEXPECT(strstr(mm_port_last_panic(), "double free"));
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT(st.in_use_pages == 0 && st.n.debug_pages == 4);
	MH_CHECK(&heap, "after the free and its second");
	mh_release(&heap);
}

/* Both large-free cases' start: no free page backed but atomic's 16,
 * freed the ordinary way (an atomic caller's free), within the goal.
 * True if so; *st the heap's statistics then. */
static bool leave_16_backed(char *atomic, struct mheap_stats *st)
{
	mheap_release_all(&heap); /* no free page stays backed */
	mm_port_set_atomic(true);
	mheap_free_pages(&heap, atomic, 16); /* the ordinary way: backed */
	mm_port_set_atomic(false);
	mheap_stats(&heap, st);
	KEXPECT_EQ(st->free_backed_pages, 16);
	return st->free_backed_pages == 16 &&
	       st->free_backed_pages <= st->goal_pages;
}

/* The debug mode's free gives its pages back scavenged, but the pages in
 * use fall and the goal with them: a large one that leaves the free
 * backed pages (here an atomic caller's free, which frees the ordinary
 * way) over the lower goal must wake the idle scavenger, as a backed free
 * does; one under MHEAP_WAKE_PAGES must not. It slept on, up to
 * MHEAP_IDLE_NS (10 s), with 16 free backed pages over a goal of 1. No
 * scavenger thread runs: idle is set by hand, as the thread sets it. */
KTEST(mheap, debug_mode_large_free_wakes_the_idle_scavenger)
{
	KASSERT(mh_new(&heap, 64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *big = mheap_alloc_pages(&heap, 480, 0);
	char *small = mheap_alloc_pages(&heap, 16, 0);
	char *atomic = mheap_alloc_pages(&heap, 16, 0);
	KASSERT(big && small && atomic);
	struct mheap_stats st;
	KASSERT(leave_16_backed(atomic, &st)); /* of 496 in use */
	heap.scav.idle = true;
	uint64_t woken = mm_event_prepare(&heap.scav.wake);
	mheap_free_pages(&heap, big, 480);
	mheap_stats(&heap, &st);
	KEXPECT(st.in_use_pages == 16 && st.n.debug_pages == 480);
	KEXPECT(st.free_backed_pages > st.goal_pages);
	KEXPECT(!heap.scav.idle);
	KEXPECT(mm_event_prepare(&heap.scav.wake) != woken);
	/* Over the goal still, but 15 pages: no wake. */
	heap.scav.idle = true;
	woken = mm_event_prepare(&heap.scav.wake);
	mheap_free_pages(&heap, small, 15);
	mheap_stats(&heap, &st);
	KEXPECT(st.free_backed_pages > st.goal_pages);
	KEXPECT(heap.scav.idle);
	KEXPECT_EQ(mm_event_prepare(&heap.scav.wake), woken);
	mheap_free_pages(&heap, small + 15 * PG, 1);
	MH_CHECK(&heap, "after the debug frees");
	mh_release(&heap);
}

/* Times the thread came to its idle decision. */
static atomic_int debug_idle_visits;

static void count_debug_idle(struct mheap *h, enum mheap_hook_point where)
{
	if (h == &heap && where == MHEAP_HOOK_SCAV_IDLE)
		atomic_fetch_add(&debug_idle_visits, 1);
}

/* Waits, with no time bound, until the thread is idle having come to its
 * idle decision more than `visits` times. */
static void wait_idle_after(int visits)
{
	for (;;) {
		unsigned long irq = mm_lock_acquire(&heap.lock);
		bool idle = heap.scav.idle;
		mm_lock_release(&heap.lock, irq);
		if (idle && atomic_load(&debug_idle_visits) > visits)
			return;
		mm_port_yield();
	}
}

/* The case above with the thread running: idle at its goal (its last
 * search found nothing), then the debug mode's large free lowers the
 * goal under the 16 free backed pages and wakes it, and it must take
 * them. That free frees no backed page; counted with the backed frees
 * (mheap_scav.h), it tells the thread its last search is stale: without
 * the count the thread, which searches a heap again only after one
 * (bg_turn), woke, searched nothing and slept with the 16 still backed. */
KTEST(mheap, debug_mode_large_free_gets_the_running_scavenger_to_take)
{
	KASSERT(mh_new(&heap, 64, MHEAP_DEBUG_SCAV_ON_FREE, 0));
	char *big = mheap_alloc_pages(&heap, 480, 0);
	char *atomic = mheap_alloc_pages(&heap, 16, 0);
	KASSERT(big && atomic);
	struct mheap_stats st;
	KASSERT(leave_16_backed(atomic, &st));
	atomic_store(&debug_idle_visits, 0);
	mheap_test_hook = count_debug_idle;
	KASSERT(mheap_scavenger_start(&heap));
	wait_idle_after(0);
	int visits = atomic_load(&debug_idle_visits);
	mheap_free_pages(&heap, big, 480); /* wakes it */
	wait_idle_after(visits);
	mheap_scavenger_stop(&heap);
	mheap_test_hook = NULL;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.n.bg_pages, 16);
	KEXPECT_EQ(st.free_backed_pages, 0);
	MH_CHECK(&heap, "after the scavenger");
	mh_release(&heap);
}
