/*
 * mm/spanheap_guard_own.c: the guarded pool's (spanheap_guard.c) calls
 * for the named caches: a cache's object given to the heap's own calls,
 * a freed slot's retirement (the poison, then the drain), the grace
 * period of a typesafe cache's freed object; and the drain that
 * release-all waits for.
 *
 * Purpose: a cache with slabs of its own (objcache_own.c) is sampled too
 * (objcache_guard.c), as Linux's KFENCE samples such caches. Its object
 * is constructed when handed out; and for OBJCACHE_TYPESAFE_BY_RCU a
 * freed one must stay an object of the type for its readers until a
 * grace period has passed: its slot is left mapped, as it was, in state
 * GUARD_RCU, and only the port's callback (mm_port_call_rcu) fills it
 * with the poison and hands it to the drain, which unmaps it. KFENCE
 * delays such a free the same way (its rcu_guarded_free).
 *
 * Locking: the heap lock (the leaf) for the state change and the count
 * of waiting slots, as spanheap_guard.c's; a slot waiting is its free's
 * until the callback runs, which owns it then.
 */
#include "objcache.h"
#include "spanheap_internal.h"

/* The bound of a wait for another thread's drain: its end wakes the
 * waiter, so this is only a defence. */
#define GUARD_DRAIN_WAIT_NS ((uint64_t)1000 * 1000 * 1000)

__attribute__((noreturn, noinline)) void
spanheap_guard_owned(struct spanheap *sh, const char *op, uintptr_t a,
                     uint32_t owner)
{
	char name[OBJCACHE_NAME_MAX + 1];
	objcache_owner_name(sh, owner, name);
	mm_panic("spanheap: %s of %#lx (a guarded object): the object is "
	         "cache '%s''s: free it to its cache (objcache_free)",
	         op, (unsigned long)a, name);
}

void spanheap_guard_retire(struct spanheap *sh, unsigned i, bool live)
{
	struct spanheap_guard *g = &sh->guard;
	struct spanheap_guard_slot *sl = &g->slot[i];
	mm_memset((void *)sl->obj, SPANHEAP_POISON_BYTE, sl->asked);
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	atomic_store_explicit(&sl->state, GUARD_FREED, memory_order_release);
	g->freed[g->nfreed++] = (uint16_t)i;
	if (live) {
		g->live--;
		g->frees++;
	} else {
		g->nrcu--;
	}
	mm_lock_release(&sh->heap->lock, irq);
	if (mm_port_can_sleep())
		spanheap_guard_drain(sh);
}

/* The grace period after slot i's free has passed: no reader still
 * reads its object. Thread context or a softirq (the port's), no mm lock
 * held: the drain unmaps it if this may sleep, else the next one. */
static void rcu_done(struct mm_rcu_head *head)
{
	struct spanheap_guard_rcu *r = (struct spanheap_guard_rcu *)head;
	struct spanheap *sh = r->sh;
	spanheap_guard_retire(sh, (unsigned)(r - sh->guard.rcu), false);
}

void spanheap_guard_rcu_wait(struct spanheap *sh, unsigned i)
{
	struct spanheap_guard *g = &sh->guard;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	atomic_store_explicit(&g->slot[i].state, GUARD_RCU,
	                      memory_order_release);
	g->nrcu++;
	g->live--;
	g->frees++;
	mm_lock_release(&sh->heap->lock, irq);
	g->rcu[i].sh = sh;
	mm_port_call_rcu(&g->rcu[i].head, rcu_done);
}

size_t spanheap_guard_drain_all(struct spanheap *sh)
{
	struct spanheap_guard *g = &sh->guard;
	size_t pages = 0;
	if (!g->base)
		return 0;
	for (;;) {
		/* Before the drain's flag is read: its end after this
		 * moves the count, and the wait returns at once. */
		uint64_t seen = mm_event_prepare(&g->drained);
		pages += spanheap_guard_drain(sh);
		unsigned long irq = mm_lock_acquire(&sh->heap->lock);
		bool left = g->nfreed != 0;
		mm_lock_release(&sh->heap->lock, irq);
		/* Another thread's drain may hold what it took off the
		 * list: sleep until it lets go. (A yield loop hung a
		 * SCHED_FIFO thread's trim beside a lower-priority drainer
		 * on its CPU, tests/real/malloc_api_rt.c.) */
		bool busy = atomic_load(&g->draining);
		if (!left && !busy)
			return pages;
		if (busy) {
			mheap_hook(sh->heap, MHEAP_HOOK_GUARD_DRAIN_WAITING);
			mm_event_wait(&g->drained, seen, GUARD_DRAIN_WAIT_NS);
		}
	}
}

uint32_t *spanheap_guard_owner_at(struct spanheap *sh, const void *p,
                                  unsigned *cls)
{
	struct spanheap_guard *g = &sh->guard;
	unsigned i = spanheap_guard_slot_at(g, (uintptr_t)p);
	if (i >= g->nslots || g->slot[i].obj != (uintptr_t)p ||
	    atomic_load_explicit(&g->slot[i].state, memory_order_acquire) !=
	            GUARD_LIVE)
		return NULL;
	*cls = g->slot[i].cls;
	return &g->slot[i].owner;
}
