/*
 * mm/spanheap_cache.h: the per-CPU caches (mcache, spanheap_cache.c) as
 * the span heap's other files use them: the magazines' inline helpers
 * (top, push, a CPU's slots) and the caches' slow paths (refill, the
 * magazines' slab, spills and drains). Included by spanheap_internal.h;
 * not for the heap's users. The magazines' layout is in
 * spanheap_types.h, their algorithm in spanheap_cache.c.
 */
#ifndef MM_SPANHEAP_CACHE_H
#define MM_SPANHEAP_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "spanheap.h"

/* The newest object's end: written by the owner, pinned or by a
 * restartable sequence's commit; relaxed, as statistics read it from other
 * CPUs. */
static inline uintptr_t *mag_top(struct mmag *m)
{
	return __atomic_load_n(&m->top, __ATOMIC_RELAXED);
}

static inline void mag_set_top(struct mmag *m, uintptr_t *t)
{
	__atomic_store_n(&m->top, t, __ATOMIC_RELAXED);
}

/* The magazine's end (its size): written by the owner, pinned; relaxed,
 * as statistics read it from other CPUs (spanheap_stats.c, count_mags).
 * Until this version the stores were plain: a data race with that read
 * (ThreadSanitizer, malloc-tsan's stress with mallinfo2). */
static inline void mag_set_limit(struct mmag *m, uintptr_t *l)
{
	__atomic_store_n(&m->limit, l, __ATOMIC_RELAXED);
}

/* Puts object a (checked, free) at t, the top of magazine m, below its
 * limit, and writes its free marker. Pinned. */
static inline __attribute__((always_inline)) void
mag_push(struct mmag *m, uintptr_t *t, uintptr_t a, uintptr_t cookie)
{
	*t = a;
	obj_words(a)[1] = cookie ^ a;
	mag_set_top(m, t + 1);
}

/* The first slot of CPU cpu's magazine of class cls; its slab is made
 * (sh->caches[cpu].slab not NULL). */
static inline uintptr_t *mag_base(struct spanheap *sh, unsigned cpu,
                                  unsigned cls)
{
	return sh->caches[cpu].slab + sh->mag_off[cls];
}

/* The size a magazine of class cls shrinks to: SPANHEAP_MAG_FLOOR_BYTES
 * of objects, at least SPANHEAP_MAG_FLOOR of them, and at most the
 * class's most. */
static inline uint32_t mag_floor(const struct spanheap *sh, unsigned cls)
{
	uint32_t max = sh->mag_max[cls];
	uint32_t n = SPANHEAP_MAG_FLOOR_BYTES / sizeclass_info[cls].size;
	if (n < SPANHEAP_MAG_FLOOR)
		n = SPANHEAP_MAG_FLOOR;
	return max < n ? max : n;
}

/* An empty magazine of class cls on CPU cpu (pinned, its slab made) is
 * being refilled: the CPU allocates the class, so its spills are
 * forgotten and the magazine doubles, up to the class's most
 * (spanheap_cache.c, "Sizes"). */
static inline void mag_refilled(struct spanheap *sh, unsigned cpu, unsigned cls)
{
	struct mcache *mc = &sh->caches[cpu];
	if (mc->mag_spills[cls])
		mc->mag_spills[cls] = 0;
	uintptr_t *base = mag_base(sh, cpu, cls);
	uint32_t size = (uint32_t)(mc->mag[cls].limit - base);
	if (size < sh->mag_max[cls])
		mag_set_limit(&mc->mag[cls],
		              base + (2 * size < sh->mag_max[cls]
		                              ? 2 * size
		                              : sh->mag_max[cls]));
}

/* Sets up CPU cpu's cache, all zero until its first use (pinned, the
 * owner; spanheap_init.c). */
__attribute__((cold)) void spanheap_cache_set_up(struct spanheap *sh,
                                                 unsigned cpu);

/* True if CPU cpu's cache is set up: the fast paths' table gives it its
 * own magazines, not the shared empty ones of no CPU
 * (spanheap_cache_set_up's last store, read acquire); else it is all
 * zero, and no one but its owner may write it. Any CPU. Compared with
 * mags[MM_PIN_NONE], not with the cache's address: in the hosted
 * malloc's refill GCC kept that address from the slab's test for it,
 * an instruction more on the refill's common way. */
static inline bool spanheap_cache_used(struct spanheap *sh, unsigned long cpu)
{
	return __atomic_load_n(&sh->mags[cpu], __ATOMIC_ACQUIRE) !=
	       sh->mags[MM_PIN_NONE];
}

/* CPU cpu's cache (pinned, the owner), set up first if this is its first
 * use. The slow paths' way in; the fast paths reach an unused cache's
 * magazines only through mags[cpu], the shared empty and full ones. */
static inline struct mcache *spanheap_cache_ready(struct spanheap *sh,
                                                  unsigned cpu)
{
	if (__builtin_expect(!spanheap_cache_used(sh, cpu), 0))
		spanheap_cache_set_up(sh, cpu);
	return &sh->caches[cpu];
}

/* spanheap_alloc_refill's way on a CPU whose cache is not set up (its
 * first allocation): sets it up, then refills. Pinned by pin; unpins. */
__attribute__((cold)) void *spanheap_alloc_first_use(struct spanheap *sh,
                                                     size_t size,
                                                     unsigned flags,
                                                     struct mm_pin pin);

/* The refill: an object of class cls for size bytes (poison mode's red
 * zone) when the cached span has none in its allocation cache. Pinned
 * (*pin, which may change); sets *kick if the sweeper should be kicked
 * after the unpin. */
void *spanheap_cache_refill(struct spanheap *sh, unsigned cls, size_t size,
                            unsigned flags, struct mm_pin *pin, bool *kick);

/* Makes CPU cpu's slab of magazine slots (pinned; MHEAP_ATOMIC). */
bool spanheap_mag_slab_make(struct spanheap *sh, unsigned cpu);

/* A free (object a, checked) that found its magazine full, or its pin
 * pinning nothing; unpins. And a free with nothing pinned yet. */
void spanheap_mag_full(struct spanheap *sh, uintptr_t a, unsigned cls,
                       struct mm_pin pin);
void spanheap_free_unpinned(struct spanheap *sh, uintptr_t a, unsigned cls,
                            bool marked);

/* Gives n objects of class cls (CPU cpu's magazine's, pinned) back to
 * their spans; true if the sweeper should be kicked (after the unpin). */
bool spanheap_mag_give_back(struct spanheap *sh, unsigned cpu, unsigned cls,
                            const uintptr_t *obj, uint32_t n);

/* Hands back everything CPU cpu (pinned) caches: its magazines, then its
 * spans; true if the sweeper should be kicked (after the unpin). */
bool spanheap_cache_flush(struct spanheap *sh, unsigned cpu);

/* True if a sweep cycle began since CPU cpu's cache (set up; pinned, or
 * read by its own CPU) was last flushed: its refill, or its idle loop, flushes
 * it then. */
static inline bool spanheap_cache_stale(struct spanheap *sh, unsigned cpu)
{
	return sh->caches[cpu].flushgen !=
	       atomic_load_explicit(&sh->sweepgen, memory_order_relaxed);
}

/* True if CPU cpu's cache (set up; pinned or held) was last flushed before
 * cycle gen began: stale since then (the sweeper's visit, spanheap_flush.c). A
 * signed difference: right while the flush is less than 2^30 cycles older than
 * gen, which each visit keeps so (flush_stale_other). */
static inline bool spanheap_cache_stale_since(struct spanheap *sh, unsigned cpu,
                                              uint32_t gen)
{
	return (int32_t)(gen - sh->caches[cpu].flushgen) > 0;
}

/* Hands back, through mm_port_each_other_cpu, the caches of the other
 * CPUs that have not flushed since cycle gen began (the sweeper's visit,
 * config flush_quiet_cpus; the empty ones flushed too, uncounted, so that
 * no flushgen falls far behind); sets *kick if the sweeper should be
 * kicked. Returns true if the port reached every other CPU. Thread
 * context, nothing pinned, no mm lock. */
bool spanheap_flush_stale_others(struct spanheap *sh, uint32_t gen, bool *kick);

/* Gives this CPU's magazines back to their spans (pins). Any context but
 * NMI; returns true if the sweeper should be kicked. */
bool spanheap_mags_drain_here(struct spanheap *sh);

#endif
