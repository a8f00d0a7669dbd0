/*
 * mm/mempool_setup.c: a reserved-element pool's set-up, resize and
 * destroy (mempool.h); allocation and free are mempool.c's.
 *
 * Purpose: fill a pool's reserve from its source before anyone relies on
 * it, change its size, and give it all back.
 *
 * Algorithm: elements are taken from the source before the pool's lock
 * (into an array of the metadata heap, struct batch) and pushed under it while
 * the reserve is short; a resize swaps in a larger array under the lock when it
 * needs one. What is left over goes back to the source after. The reserve's
 * array is a block of the heap's metadata heap (spanheap_meta_blocks.c), apart
 * from the objects: until a review it was an object of the heap, and an overrun
 * of its neighbour rewrote a slot, which a later mempool_alloc handed out, an
 * address of the writer's choosing.
 *
 * Locking: p->lock (MM_RANK_HEAP, a leaf, irqsave), as in mempool.c;
 * the source and the heap are called outside it. Thread context: every
 * call here may sleep.
 */
#include "mempool.h"

#include <stdatomic.h>

#include "mempool_internal.h"
#include "spanheap_internal.h"

#define MARKER_SEED 0x6d656d706f6f6c21ull /* "mempool!" */

/* Why p's name, min and size cannot make a pool, or NULL if they can. */
static const char *refusal(const char *name, uint32_t min, size_t size)
{
	size_t len = mm_name_len(name, MEMPOOL_NAME_MAX);
	if (len == 0)
		return "no name";
	if (len > MEMPOOL_NAME_MAX)
		return "a name longer than MEMPOOL_NAME_MAX characters";
	if (min == 0)
		return "a reserve of 0 elements";
	if (min > MEMPOOL_MIN_MAX)
		return "a reserve above MEMPOOL_MIN_MAX elements";
	if (size < sizeof(uintptr_t))
		return "elements smaller than a pointer (the reserve's marker)";
	return NULL;
}

/* Why a reserve of min elements of size bytes cannot be the heap's (its
 * arena holds less; a source of the caller's is not asked), or NULL:
 * refused before the elements are taken, not after the arena's worth of
 * them (review). min and size within refusal's bounds. */
static const char *reserve_problem(const struct spanheap *sh, bool heap_elems,
                                   uint32_t min, size_t size)
{
	uint64_t arena = (uint64_t)sh->heap->arena_pages * MM_PAGE_SIZE;
	if (heap_elems && (uint64_t)min * size > arena)
		return "a reserve larger than the heap's arena";
	return NULL;
}

/* Elements on their way into or out of the reserve, outside the lock:
 * v[done..n) of cap slots, a block of the metadata heap. An array, not a
 * chain through the elements' first words, since a pool over a cache
 * with slabs of its own must leave those words as the cache's
 * constructor made them. */
struct batch {
	void **v;
	uint32_t n, done, cap;
};

/* An empty batch of cap slots; false if the metadata heap has none. */
static bool batch_new(struct mempool *p, uint32_t cap, struct batch *b)
{
	*b = (struct batch){.cap = cap};
	b->v = cap ? spanheap_meta_alloc(p->sh, cap * sizeof(void *)) : NULL;
	return b->v || !cap;
}

/* Gives back b's elements not pushed (a marked pool's first word
 * cleared of the marker) and frees its array. */
static void batch_give(struct mempool *p, struct batch *b)
{
	for (uint32_t i = b->done; i < b->n; i++) {
		if (!p->unmarked)
			*mempool_first_word(b->v[i]) = 0;
		mempool_source_free(p, b->v[i]);
	}
	spanheap_meta_free(p->sh, b->v, b->cap * sizeof(void *));
	*b = (struct batch){0};
}

/* Takes n elements from the source (thread context) into a new batch;
 * false, having given back what it took, if the source has too few. */
static bool batch_take(struct mempool *p, uint32_t n, struct batch *b)
{
	if (!batch_new(p, n, b))
		return false;
	for (uint32_t i = 0; i < n; i++) {
		void *e = mempool_source_alloc(p, 0);
		if (!e) {
			batch_give(p, b);
			return false;
		}
		b->v[b->n++] = e;
	}
	return true;
}

/* Moves b's elements into the reserve while it is short (under the
 * lock); b->done counts those moved. */
static void batch_push_locked(struct mempool *p, struct batch *b)
{
	while (b->done < b->n &&
	       mempool_push_locked(p, b->v[b->done]) == MEMPOOL_PUSH_KEPT)
		b->done++;
}

/* Takes min elements from the source into a new reserve; false, having
 * given back what it took, if the heap has too little for them. */
static bool reserve_fill(struct mempool *p)
{
	uint32_t min = mempool_min_of(p);
	struct batch b;
	p->reserve = spanheap_meta_alloc(p->sh, min * sizeof(void *));
	if (p->reserve && batch_take(p, min, &b)) {
		p->cap = min;
		batch_push_locked(p, &b);
		if (b.done < b.n)
			mm_panic("mempool %s: its reserve is full before it is "
			         "filled",
			         p->name);
		batch_give(p, &b);
		return true;
	}
	spanheap_meta_free(p->sh, p->reserve, min * sizeof(void *));
	p->reserve = NULL;
	return false;
}

/* Where a pool's elements come from: one of the three, or none (sh). */
struct source {
	struct objcache *cache;
	const struct mempool_source *src;
	void *data;
};

static bool init_with(struct mempool *p, struct spanheap *sh, const char *name,
                      uint32_t min, size_t size, struct source from)
{
	spanheap_assert_can_sleep("mempool_init");
	/* A heap not set up: refused, where its NULL was followed (review);
	 * first, as a cache's pool over none has no size to judge. */
	const char *why = !sh || !sh->heap
	                          ? "no heap (spanheap_init not called)"
	                          : refusal(name, min, size);
	if (!why && from.src && (!from.src->alloc || !from.src->free))
		why = "a source without its alloc or free";
	if (!why && size > (size_t)sh->heap->arena_pages * MM_PAGE_SIZE)
		why = "elements larger than the heap's arena";
	if (!why)
		why = reserve_problem(sh, !from.src, min, size);
	if (why)
		mm_log("mempool %s: not made: %s (%u elements of %zu bytes)",
		       name ? name : "(null)", why, min, size);
	/* The name read before the struct is zeroed: it may be p->name (a
	 * pool made again under its own name). */
	char copy[MEMPOOL_NAME_MAX + 1] = "";
	if (!why)
		mm_name_copy(copy, name, MEMPOOL_NAME_MAX);
	mm_memset(p, 0, sizeof(*p));
	if (why)
		return false;
	mm_name_copy(p->name, copy, MEMPOOL_NAME_MAX);
	p->sh = sh;
	p->cache = from.cache;
	p->unmarked = from.cache && from.cache->own;
	p->src = from.src;
	p->data = from.data;
	p->size = size;
	atomic_store_explicit(&p->min, min, memory_order_relaxed);
	p->wait_ns = MEMPOOL_WAIT_NS;
	p->marker = (uintptr_t)(MARKER_SEED ^ ((uintptr_t)p << 16) ^
	                        mm_port_now_ns());
	mm_lock_init(&p->lock, "mempool", MM_RANK_HEAP);
	mm_event_init(&p->returned, "mempool");
	if (reserve_fill(p))
		return true;
	/* Not set up: its calls panic saying so (mempool_assert_set_up). */
	atomic_store_explicit(&p->min, 0, memory_order_relaxed);
	mm_log("mempool %s: not made: no memory for a reserve of %u elements "
	       "of %zu bytes",
	       p->name, min, size);
	return false;
}

bool mempool_init_heap(struct mempool *p, struct spanheap *sh, const char *name,
                       uint32_t min, size_t size)
{
	return init_with(p, sh, name, min, size, (struct source){0});
}

/* No cache: refused, with p zeroed, as init_with's refusals leave it. */
static bool no_cache(struct mempool *p, const char *name)
{
	mm_memset(p, 0, sizeof(*p));
	mm_log("mempool %s: not made: no cache", name ? name : "(null)");
	return false;
}

bool mempool_init_cache(struct mempool *p, struct objcache *c, const char *name,
                        uint32_t min)
{
	if (!c)
		return no_cache(p, name);
	/* A destroyed cache's slot is past the last (objcache.c), and its
	 * struct is a free block: said before its other fields are read;
	 * but the slot is read there, on a page that may be unmapped. */
	if (c->slot >= OBJCACHE_MAX)
		mm_panic("mempool %s: made over cache %p, destroyed",
		         name ? name : "(null)", (void *)c);
	return init_with(p, c->sh, name, min, c->size,
	                 (struct source){.cache = c});
}

/* As objcache_destroy_in: given the heap, a destroyed cache is told by
 * its absence from the heap's list, whatever became of its struct's
 * page (until a review only mempool_init_cache, which reads the struct's
 * slot, a fault once that page was unmapped). */
bool mempool_init_cache_in(struct mempool *p, struct spanheap *sh,
                           struct objcache *c, const char *name, uint32_t min)
{
	size_t size = 0;
	if (!c)
		return no_cache(p, name);
	if (sh && sh->heap && !objcache_size_in(sh, c, &size))
		mm_panic("mempool %s: made over cache %p, no cache of the "
		         "heap's (a cache destroyed?)",
		         name ? name : "(null)", (void *)c);
	return init_with(p, sh, name, min, size, (struct source){.cache = c});
}

bool mempool_init(struct mempool *p, struct spanheap *sh, const char *name,
                  uint32_t min, size_t size, const struct mempool_source *src,
                  void *data)
{
	return init_with(p, sh, name, min, size,
	                 (struct source){.src = src, .data = data});
}

/* Under the lock: the reserve's size to new_min, in arr if it is not
 * NULL (its old array then into *old), and grow's elements pushed while
 * the reserve is short. A shrink's surplus is left in slots new_min to
 * the count returned, past curr and min: no push or pop reaches a slot
 * at or past min, and resizes come one at a time (mempool.h), so the
 * resize reads them after the lock. No array of its own: a shrink needs
 * no memory, as none did when the surplus was chained through the
 * elements' first words. */
static uint32_t resize_locked(struct mempool *p, uint32_t new_min, void **arr,
                              void ***old, struct batch *grow)
{
	uint32_t n = atomic_load_explicit(&p->curr, memory_order_relaxed);
	if (arr) {
		for (uint32_t i = 0; i < n; i++)
			arr[i] = p->reserve[i];
		*old = p->reserve;
		p->reserve = arr;
		p->cap = new_min;
	}
	atomic_store_explicit(&p->min, new_min, memory_order_relaxed);
	if (n > new_min)
		atomic_store_explicit(&p->curr, new_min, memory_order_relaxed);
	batch_push_locked(p, grow);
	return n;
}

/* Gives back the surplus resize_locked left in slots lo to hi. */
static void surplus_give(struct mempool *p, uint32_t lo, uint32_t hi)
{
	for (uint32_t i = lo; i < hi; i++) {
		void *e = p->reserve[i];
		p->reserve[i] = NULL; /* no stale copy for the leak scan */
		if (!p->unmarked)
			*mempool_first_word(e) = 0;
		mempool_source_free(p, e);
	}
}

bool mempool_resize(struct mempool *p, uint32_t new_min)
{
	spanheap_assert_can_sleep("mempool_resize");
	mempool_assert_set_up(p, "resize of");
	const char *why = refusal(p->name, new_min, p->size);
	if (!why)
		why = reserve_problem(p->sh, !p->src, new_min, p->size);
	uint32_t min = mempool_min_of(p), old_cap = p->cap;
	void **arr = NULL, **old = NULL;
	struct batch grow = {0};
	if (!why && new_min > p->cap &&
	    !(arr = spanheap_meta_alloc(p->sh, new_min * sizeof(void *))))
		why = "no memory for its array";
	if (!why && new_min > min && !batch_take(p, new_min - min, &grow))
		why = "no memory for the elements it grows by";
	if (why) {
		spanheap_meta_free(p->sh, arr, new_min * sizeof(void *));
		mm_log("mempool %s: not resized from %u to %u elements: %s",
		       p->name, min, new_min, why);
		return false;
	}
	unsigned long irq = mm_lock_acquire(&p->lock);
	uint32_t held = resize_locked(p, new_min, arr, &old, &grow);
	bool wake = p->waiters &&
	            atomic_load_explicit(&p->curr, memory_order_relaxed);
	mm_lock_release(&p->lock, irq);
	if (wake)
		mm_event_wake(&p->returned);
	/* What frees filled the reserve with meanwhile, and the surplus. */
	batch_give(p, &grow);
	surplus_give(p, new_min, held);
	spanheap_meta_free(p->sh, old, old_cap * sizeof(void *));
	return true;
}

/* Why p cannot be destroyed now, under its lock (out, the elements out
 * by its count); or NULL, with its reserve emptied into *arr (*n of its
 * *cap slots hold elements) and p left destroyed. One hold: until a
 * review two destroys at once both gave the reserve back, and one read
 * the array the other had taken. */
static const char *empty_locked(struct mempool *p, int64_t *out, void ***arr,
                                uint32_t *n, uint32_t *cap)
{
	*out = atomic_load_explicit(&p->out, memory_order_relaxed);
	if (*out > 0)
		return "elements still out";
	if (*out < 0)
		return "more elements freed to it than it handed out (another "
		       "pool's?)";
	*arr = p->reserve;
	*n = atomic_load_explicit(&p->curr, memory_order_relaxed);
	*cap = p->cap;
	p->reserve = NULL;
	p->cap = 0;
	atomic_store_explicit(&p->min, 0, memory_order_relaxed);
	atomic_store_explicit(&p->curr, 0, memory_order_relaxed);
	return NULL;
}

bool mempool_destroy(struct mempool *p)
{
	spanheap_assert_can_sleep("mempool_destroy");
	/* Not set up, or destroyed: nothing, and a failed init's zeroed
	 * lock is not taken. A destroy racing another finds min 0 under
	 * the lock. */
	if (mempool_min_of(p) == 0)
		return true;
	int64_t out = 0;
	void **arr = NULL;
	uint32_t n = 0, cap = 0;
	unsigned long irq = mm_lock_acquire(&p->lock);
	const char *why = mempool_min_of(p) == 0
	                          ? NULL
	                          : empty_locked(p, &out, &arr, &n, &cap);
	mm_lock_release(&p->lock, irq);
	if (why) {
		mm_log("mempool %s not destroyed: %lu %s", p->name,
		       (unsigned long)(out > 0 ? out : -out), why);
		return false;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (!p->unmarked)
			*mempool_first_word(arr[i]) = 0;
		mempool_source_free(p, arr[i]);
	}
	spanheap_meta_free(p->sh, arr, cap * sizeof(void *));
	return true;
}
