/*
 * Shrinkers and reclaim under memory pressure (shrinker.h).
 *
 * Representation: a singly linked list of registered shrinkers, newest
 * first, under reg_lock; each carries the count of scans of it running
 * now (active) and, once shrinker_unregister began, dying. Totals are
 * relaxed atomics.
 *
 * Algorithm: shrink_all walks the list one shrinker at a time: under the
 * lock it takes the next live one (not dying) and counts itself in its
 * active; without the lock it calls count and scan; under the lock again
 * it reads the next pointer (the node is still linked: an unregister
 * waits for active to fall to 0 before it unlinks) and counts itself out.
 * A dying shrinker is skipped. shrinker_unregister marks it dying, waits
 * on unreg_wq until its active is 0, and unlinks it: after that no scan
 * holds it, and none can begin.
 *
 * Recursion: the reclaiming thread is marked (struct thread's
 * reclaiming) for the length of its callbacks; shrink_all and
 * reclaim_frames do nothing for a marked thread, so a shrinker whose own
 * allocation fails gets NULL rather than reclaiming again. shrink_print
 * marks it around each count too, so that an unregister from a count
 * panics rather than wait for the listing's own hold.
 *
 * Locking: reg_lock (rank SHRINKERS, a leaf) for the list, each node's
 * next, active, dying and registered; nothing is called, allocated or
 * printed under it. unreg_wq's lock (WAITQ) is never taken under it: a
 * scan counts itself out, drops reg_lock, then wakes the queue.
 */
#include "kernel/shrinker.h"

#include <stdatomic.h>

#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/thread.h"
#include "mm/port.h"

/* The registry's lock: rank SHRINKERS, a leaf, irqsave. */
static struct spinlock reg_lock =
        SPINLOCK_INIT("shrinkers", LOCK_RANK_SHRINKERS);
/* Protected by reg_lock: */
static struct shrinker *reg_head;
static unsigned nregistered;

/* Unregisters waiting for a shrinker's scans to end; its lock (rank
 * WAITQ) is never taken under reg_lock, but reg_lock is under it (the
 * wait's condition, scans_ended). */
static struct waitq unreg_wq = WAITQ_INIT("shrinker_unregister");

static _Atomic uint64_t nreclaims, nskipped, nfreed;

void shrinker_register(struct shrinker *s)
{
	if (!s->count || !s->scan)
		panic("shrinker_register(%s): no count or scan callback",
		      s->name ? s->name : "(unnamed)");
	unsigned long irq = spin_lock_irqsave(&reg_lock);
	bool again = s->registered;
	if (!again) {
		s->active = 0;
		s->dying = false;
		s->registered = true;
		s->next = reg_head;
		reg_head = s;
		nregistered++;
	}
	spin_unlock_irqrestore(&reg_lock, irq);
	if (again)
		panic("shrinker_register(%s): registered already", s->name);
}

static bool scans_ended(void *arg)
{
	struct shrinker *s = arg;
	unsigned long irq = spin_lock_irqsave(&reg_lock);
	bool ended = s->active == 0;
	spin_unlock_irqrestore(&reg_lock, irq);
	return ended;
}

static void unlink(struct shrinker *s)
{
	unsigned long irq = spin_lock_irqsave(&reg_lock);
	for (struct shrinker **pp = &reg_head; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	s->registered = false;
	s->dying = false;
	nregistered--;
	spin_unlock_irqrestore(&reg_lock, irq);
}

void shrinker_unregister(struct shrinker *s)
{
	struct thread *self = thread_current();
	if (self && self->reclaiming)
		panic("shrinker_unregister(%s): called from a shrinker's "
		      "callback (it could wait for its own scan)",
		      s->name ? s->name : "(unnamed)");
	unsigned long irq = spin_lock_irqsave(&reg_lock);
	bool ok = s->registered && !s->dying;
	if (ok)
		s->dying = true;
	spin_unlock_irqrestore(&reg_lock, irq);
	if (!ok)
		panic("shrinker_unregister(%s): not registered",
		      s->name ? s->name : "(unnamed)");
	if (!waitq_wait_until(&unreg_wq, scans_ended, s))
		return; /* the lock checker's test mode: reported */
	unlink(s);
}

/* The first shrinker not dying from s on (under reg_lock, s linked or
 * NULL), counted in its active; NULL at the end. */
static struct shrinker *take_next_locked(struct shrinker *s)
{
	while (s && s->dying)
		s = s->next;
	if (s)
		s->active++;
	return s;
}

/* One shrinker's share of a reclaim: up to min(count, SCAN_MAX) objects
 * in calls of at most batch. */
static size_t scan_one(struct shrinker *s)
{
	size_t want = s->count(s), batch = s->batch ? s->batch : SHRINKER_BATCH;
	if (want > SHRINKER_SCAN_MAX)
		want = SHRINKER_SCAN_MAX;
	size_t freed = 0;
	while (want > 0) {
		size_t nr = want < batch ? want : batch;
		size_t got = s->scan(s, nr);
		__atomic_fetch_add(&s->scans, 1, __ATOMIC_RELAXED);
		if (got > nr)
			got = nr; /* a scan that says more than it was asked */
		freed += got;
		want -= nr;
		if (got == 0)
			break;
	}
	__atomic_fetch_add(&s->freed, freed, __ATOMIC_RELAXED);
	return freed;
}

/* Whether this caller may reclaim: it may sleep and is not reclaiming
 * already; counts a refusal. */
static bool may_reclaim(void)
{
	if (mm_port_can_sleep() && !thread_current()->reclaiming)
		return true;
	atomic_fetch_add_explicit(&nskipped, 1, memory_order_relaxed);
	return false;
}

/* Counts a scan of s (or a look at it) out, waking an unregister
 * waiting for the last. */
static void put(struct shrinker *s)
{
	unsigned long irq = spin_lock_irqsave(&reg_lock);
	bool wake = --s->active == 0 && s->dying;
	spin_unlock_irqrestore(&reg_lock, irq);
	if (wake)
		waitq_wake_all(&unreg_wq);
}

static size_t shrink_all_marked(void)
{
	size_t freed = 0;
	unsigned long irq = spin_lock_irqsave(&reg_lock);
	struct shrinker *s = take_next_locked(reg_head);
	spin_unlock_irqrestore(&reg_lock, irq);
	while (s) {
		freed += scan_one(s);
		irq = spin_lock_irqsave(&reg_lock);
		struct shrinker *next = take_next_locked(s->next);
		spin_unlock_irqrestore(&reg_lock, irq);
		put(s); /* after next is held: s may be unlinked then */
		s = next;
	}
	atomic_fetch_add_explicit(&nreclaims, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&nfreed, freed, memory_order_relaxed);
	return freed;
}

size_t shrink_all(void)
{
	if (!may_reclaim())
		return 0;
	struct thread *self = thread_current();
	self->reclaiming = true;
	size_t freed = shrink_all_marked();
	self->reclaiming = false;
	return freed;
}

/* reclaim_frames' generation: odd while one runs. A caller that finds
 * one running waits on frames_wq until the generation moves, then
 * retries its allocation with what that one gave back. */
static _Atomic uint64_t frames_gen;
/* Callers waiting for the running reclaim_frames; its lock (rank WAITQ)
 * is taken alone (the condition reads an atomic). */
static struct waitq frames_wq = WAITQ_INIT("reclaim_frames");

static bool gen_moved(void *arg)
{
	return atomic_load(&frames_gen) != *(uint64_t *)arg;
}

bool reclaim_frames(void)
{
	if (!may_reclaim())
		return false;
	uint64_t g = atomic_load(&frames_gen);
	do {
		if (g & 1) {
			/* false: the lock checker's test mode, reported */
			return waitq_wait_until(&frames_wq, gen_moved, &g);
		}
	} while (!atomic_compare_exchange_weak(&frames_gen, &g, g + 1));
	size_t before = frames_free_count();
	struct thread *self = thread_current();
	self->reclaiming = true;
	shrink_all_marked();
	heap_release_all();
	self->reclaiming = false;
	atomic_store(&frames_gen, g + 2);
	waitq_wake_all(&frames_wq);
	return frames_free_count() > before;
}

/* mm/port.h's hook: a thread allocation the page heap refused. */
bool mm_port_reclaim(void)
{
	return shrink_all() > 0;
}

void shrink_stats(struct shrink_stats *st)
{
	st->registered = __atomic_load_n(&nregistered, __ATOMIC_RELAXED);
	st->reclaims = atomic_load_explicit(&nreclaims, memory_order_relaxed);
	st->skipped = atomic_load_explicit(&nskipped, memory_order_relaxed);
	st->freed = atomic_load_explicit(&nfreed, memory_order_relaxed);
}

/* The i-th live shrinker, counted in its active so that it stays (NULL
 * past the end); the caller drops it with put. */
static struct shrinker *get_nth(unsigned i)
{
	unsigned long irq = spin_lock_irqsave(&reg_lock);
	struct shrinker *s = reg_head;
	for (; s; s = s->next)
		if (!s->dying && i-- == 0)
			break;
	if (s)
		s->active++;
	spin_unlock_irqrestore(&reg_lock, irq);
	return s;
}

void shrink_print(void)
{
	struct shrinker *s;
	struct thread *self = thread_current();
	for (unsigned i = 0; (s = get_nth(i)) != NULL; i++) {
		/* Marked as a scan is: the count holds s (active), so an
		 * unregister from it would wait for itself, and panics
		 * instead, naming it (it hung, until a review). */
		bool was = self->reclaiming;
		self->reclaiming = true;
		size_t n = s->count(s);
		self->reclaiming = was;
		printk("shrinker %s: %zu objects now, %lu scans, %lu freed\n",
		       s->name, n,
		       (unsigned long)__atomic_load_n(&s->scans,
		                                      __ATOMIC_RELAXED),
		       (unsigned long)__atomic_load_n(&s->freed,
		                                      __ATOMIC_RELAXED));
		put(s);
	}
	struct shrink_stats st;
	shrink_stats(&st);
	printk("shrinkers: %u registered; %lu reclaims, %lu skipped "
	       "(atomic or nested), %lu objects freed\n",
	       st.registered, (unsigned long)st.reclaims,
	       (unsigned long)st.skipped, (unsigned long)st.freed);
}
