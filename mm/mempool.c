/*
 * mm/mempool.c: reserved elements for allocations that must make
 * progress when memory runs out (mempool.h).
 *
 * Purpose: Linux's mempool_t over the span heap. The reserve lets the
 * code that frees memory (an I/O completion, a message handler) get the
 * little it needs when the heap has none to give.
 *
 * Representation: struct mempool (mempool.h): the element source (the
 * span heap, a named cache, or a struct mempool_source), the reserve (an
 * array of cap pointers, cap >= min, curr <= min of them elements, a
 * block of the span heap's metadata heap, where no overrun of an object
 * reaches it: mempool_setup.c), the marker, and counters.
 *
 * Algorithm, as Linux's mempool_alloc and mempool_free: an allocation
 * asks the source with MM_ATOMIC first (no reclaim, no sleep: the
 * reserve is used before the heap sweeps for the caller), then takes
 * the reserve's last element; a caller that may sleep then asks the
 * source with its own flags (the heap's reclaim) and, failing that,
 * sleeps on the pool's event until a free puts an element into the
 * reserve or the pool's wait_ns pass, and tries again (no hand-off: as
 * Linux's mempool_free, a free fills the reserve and wakes all waiters,
 * and whoever comes first takes the element; docs/DESIGN.md says why).
 * A free goes to the reserve while it is short (curr read without the
 * lock first, then again under it), else to the source. Linux reads
 * curr_nr without its lock in the same way; a stale read sends an
 * element to the source that the reserve could have kept, which costs a
 * waiter one period at most.
 * A resize takes the elements it grows by before the lock (chained
 * through their first words), then under it swaps in a larger array if
 * it needs one, sets min, pops a shrink's surplus and pushes the new
 * elements while the reserve is short; what is left goes back after.
 *
 * The marker: an element in the reserve holds marker ^ its address in
 * its first word (its other bytes are left as they were), and loses it
 * when it is handed out (zeroed with MM_ZERO, else the word cleared).
 * Every free reads the word; only when it matches does it take the lock
 * and scan the reserve, and panic if the element is there (a free of an
 * element already freed into the reserve). A free that pushes into the
 * reserve scans it whatever the word holds: an element whose marker was
 * written over after its free (a use after free) is told there, not
 * pushed twice. One whose marker was written over while the reserve is
 * full goes to the source unseen (a scan on every free to the source
 * would cost O(min) on the common path). marker is drawn from the
 * pool's address and the clock, so a caller's data matches it by chance
 * about never, and a match that is not in the reserve is no error. A
 * free that gives e to the source marks it leaving first (marker ^ e ^
 * MEMPOOL_LEAVING, by atomic exchange; the push writes the marker by
 * compare-and-swap), so that a racing free of e is told whichever comes
 * second; an element from the source has its first word cleared.
 *
 * An unmarked pool (a cache with slabs of its own: a constructor's state
 * and a typesafe object's bytes are the cache's while the element is in
 * the reserve) writes nothing into its elements: every free takes the
 * lock and scans the reserve, O(curr), and panics if e is there; the
 * cache's checks (objcache_slab_of) stand for the heap's, and its view of
 * e (free in its slab or stashed) for the leaving mark. A double free
 * racing the first one's way into the cache is not told.
 *
 * Locking: p->lock (MM_RANK_HEAP, a leaf, irqsave) guards the reserve,
 * curr's writes and waiters; nothing is called under it (the source, the
 * event and the log are all called outside). Waking: a thread about to
 * sleep reads the event's count, then under the lock finds the reserve
 * empty and counts itself in waiters; a free that fills the reserve
 * reads waiters under the same lock and wakes the event after it. So
 * either the waiter saw the element, or the free saw the waiter and its
 * wake moves the count the waiter read: no wake-up is lost.
 *
 * Set-up, resize and destroy are mempool_setup.c's; the checker and the
 * counters' reader are mempool_check.c's.
 *
 * Limits: MEMPOOL_MIN_MAX reserved elements (a double free's scan is
 * O(min), under the lock, on a marker match or a push into the reserve).
 * Elements of a caller's source get no heap checks, and an element of another
 * pool of the same size class passes for this one's.
 */
#include "mempool.h"

#include <stdatomic.h>

#include "mempool_internal.h"
#include "objcache_internal.h"
#include "spanheap_internal.h"

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* The first word is cleared (or the whole element, MM_ZERO): a leaving
 * mark left there by a free to the source (mark_leaving) would make the
 * element's next free to this pool look like a double free. A caller's
 * source must give elements aligned to a pointer: the marks are atomic
 * operations on that word, which arm64 and riscv64 fault on unaligned
 * (x86 takes them), so one that is not panics here, at once. */
void *mempool_source_alloc(struct mempool *p, unsigned flags)
{
	void *e;
	if (p->cache)
		e = objcache_alloc(p->cache, flags);
	else if (p->src)
		e = p->src->alloc(p->data, flags & ~(unsigned)MM_ZERO);
	else
		e = spanheap_alloc(p->sh, p->size, flags);
	if (p->src && (uintptr_t)e % _Alignof(uintptr_t))
		mm_panic("mempool %s: its source gave %p, not aligned to a "
		         "pointer (the pool marks an element's first word "
		         "atomically)",
		         p->name, e);
	if (e && p->src && (flags & MM_ZERO))
		mm_memset(e, 0, p->size);
	else if (e && !(flags & MM_ZERO) && !p->unmarked)
		*mempool_first_word(e) = 0;
	return e;
}

void mempool_source_free(struct mempool *p, void *e)
{
	if (p->cache)
		objcache_free(p->cache, e);
	else if (p->src)
		p->src->free(p->data, e);
	else
		spanheap_free(p->sh, e);
}

void mempool_assert_set_up(const struct mempool *p, const char *op)
{
	/* A destroyed pool went on as a thin wrapper of its source (an
	 * allocation from a dry one waited for a reserve of 0 for ever),
	 * and a failed init's stored through its NULL array (review). */
	if (__builtin_expect(mempool_min_of(p) == 0, 0))
		mm_panic("mempool %s (%p): %s a pool not set up or destroyed "
		         "(its init failed, or mempool_destroy emptied it)",
		         p->name, (const void *)p, op);
}

static bool in_reserve_locked(struct mempool *p, const void *e);

/* Puts e into the reserve if it is short; under the lock.
 * MEMPOOL_PUSH_TWICE if e is in it already: a double free that raced with
 * the first one past check_free (each tested the marker before the other
 * wrote it); MEMPOOL_PUSH_LEFT if a free gave it to the source (or is
 * about to: mark_leaving). The marker goes in by compare-and-swap, as the
 * leaving mark does by exchange: of the two, the later sees the other. */
int mempool_push_locked(struct mempool *p, void *e)
{
	uint32_t n = atomic_load_explicit(&p->curr, memory_order_relaxed);
	if (p->unmarked) {
		/* Membership is the array's alone, e's bytes its cache's:
		 * free_push_locked has scanned it (a resize's are fresh). */
		if (n >= mempool_min_of(p))
			return MEMPOOL_PUSH_FULL;
		p->reserve[n] = e;
		atomic_store_explicit(&p->curr, n + 1, memory_order_relaxed);
		return MEMPOOL_PUSH_KEPT;
	}
	uintptr_t mk = p->marker ^ (uintptr_t)e;
	uintptr_t old =
	        __atomic_load_n(mempool_first_word(e), __ATOMIC_RELAXED);
	do {
		if (old == mk && in_reserve_locked(p, e))
			return MEMPOOL_PUSH_TWICE;
		if (old == (mk ^ MEMPOOL_LEAVING))
			return MEMPOOL_PUSH_LEFT;
		if (n >= mempool_min_of(p))
			return MEMPOOL_PUSH_FULL;
	} while (!__atomic_compare_exchange_n(mempool_first_word(e), &old, mk,
	                                      false, __ATOMIC_RELAXED,
	                                      __ATOMIC_RELAXED));
	p->reserve[n] = e;
	atomic_store_explicit(&p->curr, n + 1, memory_order_relaxed);
	return MEMPOOL_PUSH_KEPT;
}

/* The reserve's last element, or NULL; under the lock. */
void *mempool_pop_locked(struct mempool *p)
{
	uint32_t n = atomic_load_explicit(&p->curr, memory_order_relaxed);
	if (!n)
		return NULL;
	atomic_store_explicit(&p->curr, n - 1, memory_order_relaxed);
	void *e = p->reserve[n - 1];
	/* No copy of its address left behind: the leak scan reads the
	 * array whole (a metadata block), and a stale slot kept the element
	 * reachable after its caller lost it. */
	p->reserve[n - 1] = NULL;
	return e;
}

/* e, just taken from the reserve, as the caller asked for it. */
static void *handed_from_reserve(struct mempool *p, void *e, unsigned flags)
{
	if (flags & MM_ZERO)
		mm_memset(e, 0, p->size);
	else if (!p->unmarked)
		*mempool_first_word(e) = 0;
	count(&p->from_reserve);
	return e;
}

static void *reserve_take(struct mempool *p, unsigned flags)
{
	unsigned long irq = mm_lock_acquire(&p->lock);
	void *e = mempool_pop_locked(p);
	mm_lock_release(&p->lock, irq);
	return e ? handed_from_reserve(p, e, flags) : NULL;
}

/*
 * One round of a caller that may sleep, once the source without reclaim
 * and the reserve both failed: the source with the caller's flags, the
 * reserve again, else a sleep until an element comes back or the period
 * ends. Returns an element or NULL (go round again).
 */
static void *alloc_waiting(struct mempool *p, unsigned flags)
{
	void *e = mempool_source_alloc(p, flags);
	if (e)
		return e;
	uint64_t seen = mm_event_prepare(&p->returned);
	unsigned long irq = mm_lock_acquire(&p->lock);
	e = mempool_pop_locked(p);
	if (!e)
		p->waiters++;
	mm_lock_release(&p->lock, irq);
	if (e)
		return handed_from_reserve(p, e, flags);
	count(&p->waits);
	if (!mm_event_wait(&p->returned, seen, p->wait_ns))
		count(&p->timeouts);
	irq = mm_lock_acquire(&p->lock);
	p->waiters--;
	mm_lock_release(&p->lock, irq);
	return NULL;
}

/* The flags of an allocation's first ask of the source: MM_ATOMIC, so
 * that the reserve is used before the heap reclaims; but the heap's
 * atomic path serves no object over MHEAP_ATOMIC_MAX_PAGES pages (a
 * cache's alignment past a page counting its pages less one), and a
 * thread's ask for one that it would refuse anyway would take the reserve
 * while the heap has memory: such an ask is the caller's own. */
static unsigned first_ask(const struct mempool *p, unsigned flags)
{
	/* All the limit's pages: until a review a page short, so elements
	 * of exactly the limit were asked for without MM_ATOMIC. */
	size_t atomic_max = MHEAP_ATOMIC_MAX_PAGES * MM_PAGE_SIZE;
	size_t align = p->cache ? p->cache->align : 0;
	size_t extra = align > MM_PAGE_SIZE ? align - MM_PAGE_SIZE : 0;
	if (!(flags & MM_ATOMIC) && !p->src &&
	    (p->size > atomic_max || extra > atomic_max - p->size))
		return flags;
	return flags | MM_ATOMIC;
}

void *mempool_alloc(struct mempool *p, unsigned flags)
{
	if (flags & ~(unsigned)MM_ALLOC_FLAGS) {
		mm_log("mempool %s: allocation refused: flags %#x hold bits "
		       "no allocation takes",
		       p->name, flags);
		return NULL;
	}
	mempool_assert_set_up(p, "allocation from");
	if ((flags & MM_ZERO) && p->unmarked && p->cache->own->ctor) {
		/* As the cache refuses it: zeroing would undo the ctor, and a
		 * reserve's element would be zeroed where the cache's is not.
		 */
		mm_log("mempool %s: allocation refused: MM_ZERO on cache "
		       "'%s', which has a constructor",
		       p->name, p->cache->name);
		return NULL;
	}
	if (!(flags & MM_ATOMIC))
		spanheap_assert_can_sleep("mempool_alloc");
	void *e = mempool_source_alloc(p, first_ask(p, flags));
	if (!e)
		e = reserve_take(p, flags);
	if (!e && (flags & MM_ATOMIC)) {
		count(&p->atomic_fails);
		return NULL;
	}
	while (!e)
		e = alloc_waiting(p, flags);
	atomic_fetch_add_explicit(&p->out, 1, memory_order_relaxed);
	return e;
}

static bool in_reserve_locked(struct mempool *p, const void *e)
{
	uint32_t n = atomic_load_explicit(&p->curr, memory_order_relaxed);
	for (uint32_t i = 0; i < n; i++)
		if (p->reserve[i] == e)
			return true;
	return false;
}

static bool in_reserve(struct mempool *p, const void *e)
{
	unsigned long irq = mm_lock_acquire(&p->lock);
	bool found = in_reserve_locked(p, e);
	mm_lock_release(&p->lock, irq);
	return found;
}

/* True if e is in the reserve by its marker and the reserve's slots: the
 * marker, or the marker flipped by a mempool_check walking the reserve
 * (under the lock, which in_reserve waits for). Any context but NMI. */
static bool in_reserve_marked(struct mempool *p, void *e)
{
	return (*mempool_first_word(e) ^ p->marker ^ (uintptr_t)e) <= 1 &&
	       in_reserve(p, e);
}

static void double_free(struct mempool *p, void *e, bool left)
{
	mm_panic("mempool %s: double free of %p: %s", p->name, e,
	         left ? "the element was freed to the pool's source already"
	              : "the element is in the pool's reserve already");
}

/*
 * Marks e, on its way to the source, leaving: one atomic exchange of its
 * first word, in a single order with the reserve's pushes (a
 * compare-and-swap of that word), so that of this free and a racing free
 * of e that pushes it into the reserve, the later is told. Until a review
 * the free tested the marker and then gave e to the source: a second free
 * of e that found room in the reserve between the two (an allocation took
 * one) kept it there, and the heap then had it free under the reserve.
 * mm_panics if e carried the reserve's marker (it is in the reserve: its
 * word is put back) or the leaving mark (freed to the source already).
 */
static void mark_leaving(struct mempool *p, void *e)
{
	uintptr_t mk = p->marker ^ (uintptr_t)e;
	uintptr_t old = __atomic_exchange_n(
	        mempool_first_word(e), mk ^ MEMPOOL_LEAVING, __ATOMIC_RELAXED);
	bool in = (old ^ mk) <= 1 && in_reserve(p, e);
	if (!in && old != (mk ^ MEMPOOL_LEAVING))
		return;
	if (in)
		__atomic_store_n(mempool_first_word(e), old, __ATOMIC_RELAXED);
	atomic_fetch_add_explicit(&p->out, 1, memory_order_relaxed);
	double_free(p, e, !in);
}

#ifdef MM_TEST_HOOKS
void (*mempool_test_after_check)(struct mempool *p, void *e);
void (*mempool_test_before_source)(struct mempool *p, void *e);
#endif

/* mm_panics if e cannot be an element of p being freed. */
static void check_free(struct mempool *p, void *e)
{
	if (p->unmarked) {
		/* The cache's checks (a foreign, interior or other cache's
		 * pointer panics naming it), then its view of e for the
		 * leaving mark's case: free in its slab or stashed is freed
		 * to the cache already (one in the reserve is out to it). */
		uint32_t idx;
		if (objcache_guard_check(p->cache, e))
			return; /* a guarded object of the cache's, live */
		struct objslab *sl = objcache_slab_of(p->cache, e, &idx);
		if ((objslab_free_word(sl, idx / 64) >> (idx % 64) & 1) ||
		    __atomic_load_n(&sl->stashed[idx], __ATOMIC_RELAXED))
			double_free(p, e, true);
		return;
	}
	if (!p->src) {
		/* The heap's checks: a foreign, interior or freed pointer
		 * panics there, as kfree's would. */
		size_t n = spanheap_usable_size(p->sh, e);
		const struct objcache *c = p->cache;
		/* A named cache's objects have its class's size (in poison
		 * mode and the guarded pool, the bytes asked): a larger
		 * object kept in the reserve would panic only at the cache's
		 * free, far from this one. */
		if (c && n != c->objsize && n != c->size)
			mm_panic("mempool %s: free of an object of %zu bytes "
			         "(%p) where the pool's elements are cache "
			         "'%s''s, of %zu: not an element of this pool",
			         p->name, n, e, c->name, c->objsize);
		if (n < p->size)
			mm_panic("mempool %s: free of an object of %zu bytes "
			         "(%p) where the pool's elements have %zu: not "
			         "an element of this pool",
			         p->name, n, e, p->size);
	}
	if (in_reserve_marked(p, e))
		double_free(p, e, false);
}

/*
 * A free's push: the reserve's slots are scanned first, whatever e's
 * first word holds, so that an element in the reserve whose marker the
 * program wrote over (a use after free) and then freed again is told
 * (MEMPOOL_PUSH_TWICE) and not pushed twice, to be handed out twice. The
 * scan is O(curr), curr < min <= MEMPOOL_MIN_MAX, with interrupts off:
 * a free pushes only while the reserve is short, which it is only after
 * allocations the source refused took from it, one push an element so
 * taken. A resize's pushes (fresh elements) are not scanned. Under the
 * lock.
 */
static int free_push_locked(struct mempool *p, void *e)
{
	uint32_t n = atomic_load_explicit(&p->curr, memory_order_relaxed);
	if ((p->unmarked || n < mempool_min_of(p)) && in_reserve_locked(p, e))
		return MEMPOOL_PUSH_TWICE;
	return mempool_push_locked(p, e);
}

void mempool_free(struct mempool *p, void *e)
{
	if (!e)
		return;
	mempool_assert_set_up(p, "free to");
	check_free(p, e);
	atomic_fetch_sub_explicit(&p->out, 1, memory_order_relaxed);
	if (p->unmarked ||
	    atomic_load_explicit(&p->curr, memory_order_relaxed) <
	            mempool_min_of(p)) {
#ifdef MM_TEST_HOOKS
		if (mempool_test_after_check)
			mempool_test_after_check(p, e);
#endif
		unsigned long irq = mm_lock_acquire(&p->lock);
		int put = free_push_locked(p, e);
		bool kept = put == MEMPOOL_PUSH_KEPT, wake = kept && p->waiters;
		mm_lock_release(&p->lock, irq);
		if (put == MEMPOOL_PUSH_TWICE || put == MEMPOOL_PUSH_LEFT) {
			atomic_fetch_add_explicit(&p->out, 1,
			                          memory_order_relaxed);
			double_free(p, e, put == MEMPOOL_PUSH_LEFT);
		}
		if (wake)
			mm_event_wake(&p->returned);
		if (kept) {
			count(&p->refills);
			return;
		}
	}
	if (!p->unmarked)
		mark_leaving(p, e);
#ifdef MM_TEST_HOOKS
	if (mempool_test_before_source)
		mempool_test_before_source(p, e);
#endif
	mempool_source_free(p, e);
}
