/*
 * mm/spanheap_meta_blocks.c: small blocks of the span heap's metadata
 * heap for the metadata of the heap's users: a named cache's struct and
 * the caches' counter area (objcache.c), a pool's reserve array
 * (mempool_setup.c).
 *
 * Purpose: those were objects of the heap among the objects, and an
 * overrun of a neighbour rewrote them: a reserve slot, handed out by a
 * later mempool_alloc as an address of the writer's choosing, or a
 * cache's counters' pointer, through which the next allocation counted.
 * In the metadata heap's arena (spanheap_meta.c) no write past an
 * object reaches them. The metadata heap gives whole pages, and a cache's
 * struct is 104 bytes, a small pool's array a few words: these blocks
 * share pages, as Linux's kmem_cache structs are a cache's objects and
 * the Go runtime's fixalloc carves its structs from persistentalloc's
 * chunks.
 *
 * Representation: a run (struct spanheap_meta_run, spanheap_meta_blocks.h)
 * is pages of the metadata heap with a 64-byte header: one page of
 * blocks of a class (64 << cls bytes, cls < SPANHEAP_META_CLASSES: 63
 * blocks of 64 bytes to 3 of 1024), or one larger block over as many
 * pages as it needs. Free blocks are chained through their first words.
 * The runs with a free block are on their class's partial list; full
 * runs and large ones on the full list (both lists for the leak scan).
 *
 * Algorithm: an allocation takes the first block of its class's first
 * partial run, or makes a run (the page asked for without the lock) and
 * takes one of its blocks; a free puts the block back on its run's chain
 * (the run is found by the metadata heap's span table, whose entries for
 * a run's pages name it while it lives: a foreign pointer, an inner one
 * or a second free panics, saying which) and gives the run's pages back
 * once none is used, so a destroy gives everything back. The memory: a
 * kernel with 50 caches and 20 pools of up to 8 elements takes 3 pages
 * (2 of 31 cache structs, 1 of 63 arrays), and the counters' area 9
 * pages once; a page each would have been 70 (280 KiB).
 *
 * Invariants, checked by spanheap_meta_blocks_check: a run's pages'
 * span table entries name it; its used count is its blocks less those
 * on its chain; a run on a partial list has a free block and one on the
 * full list none (or is large); no run is empty (its pages went back);
 * each run's prev link is the run before it.
 *
 * Locking: the lists, the runs' headers and the clearing of an emptied
 * run's span table entries are under the object heap's lock (heap->lock,
 * MM_RANK_HEAP, a leaf) for a few loads and stores, and a free's walk of
 * its run's chain (63 links at most); the metadata heap is called
 * outside it (the two heap locks never nest). Thread context: the users
 * make and destroy their metadata there.
 *
 * Limits: a freed block keeps its bytes but its first word until it is
 * reused or its run goes back (a destroyed cache's marks, objcache.c);
 * a run gone back may be unmapped (MHEAP_DEBUG_SCAV_ON_FREE, a scavenge),
 * and a read of its blocks then faults.
 * A second free after the block's pages went to a new run of its size
 * is not seen if the block there is in use: it frees that one.
 * A request past SPANHEAP_META_BLOCK_MAX pays a page for its header: the
 * 32 KiB counter area takes 9 pages.
 */
#include "spanheap_internal.h"

/* A run's free blocks fit a 64-bit mask (run_each, run_problem). */
_Static_assert((MM_PAGE_SIZE - SPANHEAP_META_RUN_HDR) / 64 <= 64,
               "a page holds at most 64 of the smallest blocks");

static uint32_t class_bytes(unsigned cls)
{
	return 64u << cls;
}

static unsigned class_of(size_t nbytes)
{
	unsigned cls = 0;
	while (class_bytes(cls) < nbytes)
		cls++;
	return cls;
}

static void run_unlink(struct spanheap_meta_run **list,
                       struct spanheap_meta_run *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		*list = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
}

static void run_push(struct spanheap_meta_run **list,
                     struct spanheap_meta_run *r)
{
	r->prev = NULL;
	r->next = *list;
	if (*list)
		(*list)->prev = r;
	*list = r;
}

/* A run of npages for blocks of block bytes (a large run: one block of
 * them), its blocks chained, linked on no list; NULL without memory. */
static struct spanheap_meta_run *run_new(struct spanheap *sh, size_t npages,
                                         uint32_t block, bool large)
{
	struct spanheap_meta_run *r = mheap_alloc_pages(&sh->meta, npages, 0);
	if (!r)
		return NULL;
	size_t room = npages * MM_PAGE_SIZE - SPANHEAP_META_RUN_HDR;
	*r = (struct spanheap_meta_run){.npages = (uint32_t)npages,
	                                .block = block,
	                                .nblocks = large ? 1 : room / block};
	char *first = (char *)r + SPANHEAP_META_RUN_HDR;
	for (uint32_t i = r->nblocks; i-- > 0;) {
		*(void **)(first + (size_t)i * block) = r->free;
		r->free = first + (size_t)i * block;
	}
	/* Its pages name it in the span table (spanheap_meta_free's test),
	 * before any block of it is handed out. */
	mheap_span_set(&sh->meta, (uintptr_t)r, npages, r);
	return r;
}

/* A block of class cls from its first partial run, after linking fresh
 * (if not NULL) there; NULL if the class has no free block. */
static void *block_take(struct spanheap *sh, unsigned cls,
                        struct spanheap_meta_run *fresh)
{
	struct spanheap_meta_blocks *mb = &sh->meta_blocks;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	if (fresh) {
		run_push(&mb->partial[cls], fresh);
		mb->pages += fresh->npages;
	}
	struct spanheap_meta_run *r = mb->partial[cls];
	void *b = r ? r->free : NULL;
	if (b) {
		r->free = *(void **)b;
		r->used++;
		if (!r->free) {
			run_unlink(&mb->partial[cls], r);
			run_push(&mb->full, r);
		}
	}
	mm_lock_release(&sh->heap->lock, irq);
	return b;
}

static void *large_alloc(struct spanheap *sh, size_t nbytes)
{
	size_t np = (nbytes + SPANHEAP_META_RUN_HDR + MM_PAGE_SIZE - 1) /
	            MM_PAGE_SIZE;
	if (nbytes > UINT32_MAX)
		return NULL;
	struct spanheap_meta_run *r = run_new(sh, np, (uint32_t)nbytes, true);
	if (!r)
		return NULL;
	r->free = NULL;
	r->used = 1;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	run_push(&sh->meta_blocks.full, r);
	sh->meta_blocks.pages += np;
	mm_lock_release(&sh->heap->lock, irq);
	return (char *)r + SPANHEAP_META_RUN_HDR;
}

size_t spanheap_meta_blocks_pages(size_t n, size_t nbytes)
{
	if (nbytes > SPANHEAP_META_BLOCK_MAX)
		return n *
		       ((nbytes + SPANHEAP_META_RUN_HDR + MM_PAGE_SIZE - 1) /
		        MM_PAGE_SIZE);
	size_t per = (MM_PAGE_SIZE - SPANHEAP_META_RUN_HDR) /
	             class_bytes(class_of(nbytes));
	return (n + per - 1) / per;
}

void *spanheap_meta_alloc(struct spanheap *sh, size_t nbytes)
{
	/* As the heap's own allocations were, when these were objects. */
	spanheap_assert_set_up(sh);
	spanheap_assert_can_sleep("spanheap_meta_alloc");
	if (failpoint_armed(&sh->fail) && spanheap_fail_should(sh, false, 0))
		return NULL;
	void *b;
	size_t zero = nbytes; /* the whole block: the leak scan reads it */
	if (nbytes > SPANHEAP_META_BLOCK_MAX) {
		b = large_alloc(sh, nbytes);
	} else {
		unsigned cls = class_of(nbytes);
		zero = class_bytes(cls);
		b = block_take(sh, cls, NULL);
		if (!b) {
			/* Another thread's run may come first: both stay. */
			struct spanheap_meta_run *r =
			        run_new(sh, 1, class_bytes(cls), false);
			b = r ? block_take(sh, cls, r) : NULL;
		}
	}
	if (b)
		mm_memset(b, 0, zero);
	return b;
}

/* The run whose pages hold p, by the metadata heap's span table (set by
 * run_new, cleared before the pages go back), or NULL: no page of a run
 * (a foreign pointer, a page of the span heap's own, a run gone back).
 * Not read off the page: a free page may be unmapped (the kernel's
 * scavenged pages are). */
static struct spanheap_meta_run *run_of(struct spanheap *sh, const void *p)
{
	if (!spanheap_meta_holds(sh, (uintptr_t)p))
		return NULL;
	struct spanheap_meta_run *r =
	        mheap_span_lookup(&sh->meta, (uintptr_t)p);
	/* Else MHEAP_SPAN_PAGES or NULL: no run's. */
	return spanheap_meta_holds(sh, (uintptr_t)r) ? r : NULL;
}

/* Why p cannot be freed as a block of nbytes of run r (run_of's), or
 * NULL; under heap->lock, which keeps r's header and chain still. */
static const char *free_problem(const struct spanheap_meta_run *r,
                                const void *p, size_t nbytes)
{
	if (!r)
		return "not a block of the metadata heap's runs (a foreign "
		       "pointer, or a block whose run went back: freed "
		       "twice?)";
	bool large = nbytes > SPANHEAP_META_BLOCK_MAX;
	if (r->block != (large ? nbytes : class_bytes(class_of(nbytes))))
		return "no block of that size";
	uintptr_t off = (uintptr_t)p - ((uintptr_t)r + SPANHEAP_META_RUN_HDR);
	if (off % r->block || off / r->block >= r->nblocks)
		return "not the start of a block";
	/* At most 63 links: frees are a cache's or a pool's destroy. A
	 * link out of the run ends the walk (the checker names it). */
	uintptr_t first = (uintptr_t)r + SPANHEAP_META_RUN_HDR;
	uint32_t n = 0;
	for (const void *f = r->free;
	     f && n <= r->nblocks &&
	     (uintptr_t)f - first < (uintptr_t)r->nblocks * r->block;
	     f = *(void *const *)f, n++)
		if (f == p)
			return "freed already (it is on its run's free chain)";
	return NULL;
}

/* Puts block p back on run r (under heap->lock); true if r is empty now,
 * unlinked, and its pages are the caller's to give back. */
static bool block_put_locked(struct spanheap *sh, struct spanheap_meta_run *r,
                             void *p)
{
	struct spanheap_meta_blocks *mb = &sh->meta_blocks;
	bool empty = true;
	if (r->block > SPANHEAP_META_BLOCK_MAX) {
		run_unlink(&mb->full, r);
	} else {
		unsigned cls = class_of(r->block);
		bool was_full = r->free == NULL;
		*(void **)p = r->free;
		r->free = p;
		empty = --r->used == 0;
		if (was_full)
			run_unlink(&mb->full, r);
		else if (empty)
			run_unlink(&mb->partial[cls], r);
		if (was_full && !empty)
			run_push(&mb->partial[cls], r);
	}
	if (empty) {
		mb->pages -= r->npages;
		/* Under the lock: a second free of one of its blocks finds
		 * no run, not one whose pages went back. */
		mheap_span_set(&sh->meta, (uintptr_t)r, r->npages, NULL);
	}
	return empty;
}

void spanheap_meta_free(struct spanheap *sh, void *p, size_t nbytes)
{
	if (!p)
		return;
	/* Looked up under the lock, where an emptied run's entries are
	 * cleared: a run found is not on its way back. */
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	struct spanheap_meta_run *r = run_of(sh, p);
	const char *why = free_problem(r, p, nbytes);
	uint32_t block = r ? r->block : 0;
	bool empty = !why && block_put_locked(sh, r, p);
	mm_lock_release(&sh->heap->lock, irq);
	if (why && r)
		mm_panic("spanheap: metadata block %p freed as %zu bytes: %s "
		         "(its run %p holds %u-byte blocks)",
		         p, nbytes, why, (void *)r, block);
	if (why)
		mm_panic("spanheap: metadata block %p freed as %zu bytes: %s",
		         p, nbytes, why);
	if (empty)
		spanheap_pages_put(&sh->meta, r, r->npages);
}

/* Calls fn on r's allocated blocks. */
static void run_each(const struct spanheap_meta_run *r,
                     void (*fn)(uintptr_t lo, uintptr_t hi, void *arg),
                     void *arg)
{
	uint64_t free_mask = 0;
	uintptr_t first = (uintptr_t)r + SPANHEAP_META_RUN_HDR;
	for (void *f = r->free; f; f = *(void **)f)
		free_mask |= (uint64_t)1 << (((uintptr_t)f - first) / r->block);
	for (uint32_t i = 0; i < r->nblocks; i++)
		if (!(free_mask >> i & 1))
			fn(first + (uintptr_t)i * r->block,
			   first + (uintptr_t)(i + 1) * r->block, arg);
}

void spanheap_meta_blocks_each(struct spanheap *sh,
                               void (*fn)(uintptr_t lo, uintptr_t hi,
                                          void *arg),
                               void *arg)
{
	struct spanheap_meta_blocks *mb = &sh->meta_blocks;
	for (unsigned cls = 0; cls <= SPANHEAP_META_CLASSES; cls++)
		for (const struct spanheap_meta_run *r =
		             cls < SPANHEAP_META_CLASSES ? mb->partial[cls]
		                                         : mb->full;
		     r; r = r->next)
			run_each(r, fn, arg);
}

/* Why run r, on the partial list of class cls (SPANHEAP_META_CLASSES: the
 * full list), is broken, or NULL. */
static const char *run_problem(const struct spanheap *sh,
                               const struct spanheap_meta_run *r, unsigned cls)
{
	if (!spanheap_meta_holds(sh, (uintptr_t)r) ||
	    (uintptr_t)r % MM_PAGE_SIZE)
		return "not a page of the metadata heap";
	if (r->npages == 0 || r->npages > sh->meta.arena_pages)
		return "a page count past the metadata heap's arena";
	for (uint32_t i = 0; i < r->npages; i++)
		if (mheap_span_lookup((struct mheap *)&sh->meta,
		                      (uintptr_t)r + i * MM_PAGE_SIZE) != r)
			return "a page whose span table entry does not name "
			       "it (its frees would not find it)";
	bool large = r->block > SPANHEAP_META_BLOCK_MAX;
	if (cls < SPANHEAP_META_CLASSES && r->block != class_bytes(cls))
		return "on another class's list";
	uint32_t nfree = 0;
	uintptr_t first = (uintptr_t)r + SPANHEAP_META_RUN_HDR;
	for (const void *f = r->free; f && nfree <= r->nblocks;
	     f = *(void *const *)f, nfree++)
		if ((uintptr_t)f < first || ((uintptr_t)f - first) % r->block ||
		    ((uintptr_t)f - first) / r->block >= r->nblocks)
			return "a free block not of the run";
	if (r->nblocks > 64 || nfree + r->used != r->nblocks)
		return "its used count is not its blocks less its free ones";
	if (r->used == 0)
		return "empty (its pages should have gone back)";
	if ((cls == SPANHEAP_META_CLASSES) != (nfree == 0 || large))
		return "on the wrong list for its free blocks";
	return NULL;
}

/* Why list's runs (of class cls, or the full list) are broken, or NULL;
 * *bad the run found so, *pages the pages met. At most counted pages are
 * walked: past them the list loops, or is longer than counted. */
static const char *list_problem(struct spanheap *sh,
                                const struct spanheap_meta_run *list,
                                unsigned cls, size_t counted,
                                const struct spanheap_meta_run **bad,
                                size_t *pages)
{
	const struct spanheap_meta_run *prev = NULL;
	for (*bad = list; *bad; prev = *bad, *bad = (*bad)->next) {
		const char *why = run_problem(sh, *bad, cls);
		if (why)
			return why;
		if ((*bad)->prev != prev)
			return "its prev link is not the run before it";
		*pages += (*bad)->npages;
		if (*pages > counted)
			return "past the pages counted (a list loops, or holds "
			       "runs not counted)";
	}
	return NULL;
}

void spanheap_meta_blocks_check(struct spanheap *sh)
{
	struct spanheap_meta_blocks *mb = &sh->meta_blocks;
	const struct spanheap_meta_run *bad = NULL;
	const char *why = NULL;
	size_t pages = 0;
	unsigned long irq = mm_lock_acquire(&sh->heap->lock);
	size_t counted = mb->pages;
	for (unsigned cls = 0; cls <= SPANHEAP_META_CLASSES && !why; cls++)
		why = list_problem(sh,
		                   cls < SPANHEAP_META_CLASSES
		                           ? mb->partial[cls]
		                           : mb->full,
		                   cls, counted, &bad, &pages);
	/* The run's fields for the message, read where they hold still. */
	struct spanheap_meta_run r = {0};
	if (why && spanheap_meta_holds(sh, (uintptr_t)bad) &&
	    (uintptr_t)bad % MM_PAGE_SIZE == 0)
		r = *bad;
	mm_lock_release(&sh->heap->lock, irq);
	if (why)
		mm_panic("spanheap: check: metadata block run %p (%u-byte "
		         "blocks, %u of %u used): %s",
		         (const void *)bad, r.block, r.used, r.nblocks, why);
	if (pages != counted)
		mm_panic("spanheap: check: metadata block runs hold %zu pages, "
		         "counted %zu",
		         pages, counted);
}
