/*
 * mm/spanheap_internal.h: what the span heap's files share. Not for its
 * users (spanheap.h). The files, by layer:
 *   spanheap_span.c     spans: making, folding and freeing them; misuse
 *   spanheap_large.c    large objects, a span of their own each
 *   spanheap_structs.c  the span-struct allocator, the all-spans array
 *   spanheap_central.c  the central lists and fold queues (mcentral)
 *   spanheap_cache.c    the per-CPU caches' slow paths: refill and the
 *                       magazines' spills (mcache)
 *   spanheap_flush.c    the magazines' drains, a cache's flush, an idle
 *                       CPU's flush
 *   spanheap.c          allocation's paths and the API
 *   spanheap_free.c     the free's paths (spanheap_free, _free_held)
 *   spanheap_realloc.c  calloc, realloc, usable size; refused frees
 *   spanheap_init.c     set-up
 *   spanheap_sweep.c    sweep cycles, reclaim and release
 *   spanheap_sweeper.c  pending frees and the sweeper thread
 *   spanheap_stats.c    statistics and the slabinfo dump
 *   spanheap_check.c    the checker; spanheap_check_cache.c its per-CPU
 *                       checks
 *   spanheap_fail.c     allocation-failure injection (spanheap_fail.h),
 *                       deciding through failpoint.c (failpoint.h)
 * spanheap_span.h, _central.h, _cache.h and _sweep.h (included below)
 * declare what those layers give the others.
 */
#ifndef MM_SPANHEAP_INTERNAL_H
#define MM_SPANHEAP_INTERNAL_H

#include "mheap_internal.h"
#include "spanheap.h"

extern struct mspan spanheap_empty_span;

/* Slots left unused at the start of a CPU's slab (see spanheap_init):
 * the first class's 0 is the last of them, its first slot at byte 512.
 * Few enough that the slab stays 8 pages (half a page took it to 9). */
#define MAG_SLAB_SKEW (512 / sizeof(uintptr_t) - 1)

/* An empty magazine's refill puts up to MAG_FILL_BYTES of the span's next
 * objects, and at most MAG_FILL_MAX, into it (mag_fill). */
#define MAG_FILL_BYTES 1024u
#define MAG_FILL_MAX   16u
_Static_assert(MAG_FILL_MAX < 64, "mag_fill's run mask");

/* A walk of the all-spans array (invariant 2): arr stays allocated until
 * spanheap_snapshot_put, whatever replaces it meanwhile. */
struct spanheap_snapshot {
	struct spanheap_spans *arr;
	size_t len;
	uint32_t sweepgen; /* sh->sweepgen when it was taken */
};

/* The names callers give mm's objects (a named cache, a pool); mm/ has no
 * C library. mm_name_len: name's length, or max + 1 if it is longer than
 * max (0 for NULL). mm_name_copy: at most max characters of from, and a
 * NUL, into to. */
static inline size_t mm_name_len(const char *name, size_t max)
{
	size_t len = 0;
	while (name && name[len] && len <= max)
		len++;
	return len;
}

static inline void mm_name_copy(char *to, const char *from, size_t max)
{
	size_t i = 0;
	for (; from[i] && i < max; i++)
		to[i] = from[i];
	to[i] = '\0';
}

static inline void spanheap_assert_can_sleep(const char *fn)
{
	mheap_assert_can_sleep(fn);
}

/* The page heap's flags for the span heap's. */
static inline unsigned mheap_flags_of(unsigned flags)
{
	return ((flags & MM_ATOMIC) ? MHEAP_ATOMIC : 0) |
	       ((flags & MM_NO_GROW) ? MHEAP_NO_GROW : 0);
}

/* mm_panics, before any lock, if sh's spanheap_init failed or was not
 * called. Reads set_up, fixed once the init returns (sh->spans was a
 * race: TSan). Inline, a load and a branch on sh->heap's line, in each
 * call past the fast paths (a call, until a review). Not in NMI. */
__attribute__((noreturn, cold)) void spanheap_not_set_up(const void *sh);
static inline void spanheap_assert_set_up(const struct spanheap *sh)
{
	if (__builtin_expect(!sh->set_up, 0))
		spanheap_not_set_up(sh);
}

/* Takes a snapshot under the heap lock; put it back when done. */
void spanheap_snapshot(struct spanheap *sh, struct spanheap_snapshot *snap);
void spanheap_snapshot_put(struct spanheap *sh, struct spanheap_snapshot *snap);
void spanheap_spans_put(struct spanheap *sh, struct spanheap_spans *a);
bool spanheap_spans_init(struct spanheap *sh);

/* ---- Helpers ---- */

/* True, having logged it naming fn, the size and the bits, if flags hold
 * a bit that is not an allocation flag (MM_ALLOC_FLAGS). Any context. */
static inline bool spanheap_bad_flags(const char *fn, size_t size,
                                      unsigned flags)
{
	if (__builtin_expect(!(flags & ~MM_ALLOC_FLAGS), 1))
		return false;
	mm_log("spanheap: %s of %zu bytes refused: unknown flags %#x", fn, size,
	       flags & ~MM_ALLOC_FLAGS);
	return true;
}

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* The size of s's objects for the misuse reports: a large span's whole
 * pages, since its elemsize saturates at UINT32_MAX above 4 GiB. */
static inline size_t spanheap_object_bytes(const struct mspan *s)
{
	return s->sizeclass ? s->elemsize : (size_t)s->npages * MM_PAGE_SIZE;
}

/* The pages that hold size bytes. */
static inline size_t spanheap_pages_for(size_t size)
{
	return size / MM_PAGE_SIZE + (size % MM_PAGE_SIZE != 0);
}

static inline unsigned popcount64(uint64_t x)
{
	return (unsigned)pallocbits_popcount(x);
}

static inline uint64_t load_relaxed64(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

/* An object's words: word 1 is the free marker (cookie ^ address), set
 * while the object is free. */
static inline uintptr_t *obj_words(uintptr_t a)
{
	return (uintptr_t *)a;
}

/* The index of the object at byte offset off of small span s (exact for
 * every offset of the span: tools/gen-sizeclasses.c checks divmul). */
static inline uint32_t obj_index(const struct mspan *s, uintptr_t off)
{
	return (uint32_t)(((uint64_t)off * s->divmul) >> 32);
}

/* Failure injection (spanheap_fail.c): armed, every call reaches a slow
 * path, which asks _should (counts it; true: fail it). _decided: realloc's. */
static inline bool spanheap_fail_armed(struct spanheap *sh)
{
	return failpoint_armed(&sh->fail);
}
bool spanheap_fail_should(struct spanheap *sh, bool large, unsigned flags);
void *spanheap_alloc_decided(struct spanheap *sh, size_t size, unsigned flags);

/* Poison mode: its checks and red zones, and its records of callers. */
#include "spanheap_redzone.h"
#include "spanheap_records.h"
#include "spanheap_meta.h"

/* The spans' calls, the central lists, the per-CPU caches and their
 * magazines. */
#include "spanheap_span.h"
#include "spanheap_central.h"
#include "spanheap_cache.h"

/* Sweep cycles and when they run. */
#include "spanheap_sweep.h"

/* The bits of a span's bitmap word w for the object indexes below n. */
static inline uint64_t spanheap_bits_below(uint32_t n, unsigned w)
{
	return n >= w * 64 + 64 ? ~(uint64_t)0
	       : n > w * 64     ? ((uint64_t)1 << (n - w * 64)) - 1
	                        : 0;
}

/* The walks of the spans' bitmaps spanheap_stats may take: it walks again
 * while a fold moves frees from the bits into the folded counts. */
#define SPANHEAP_STATS_WALKS 4

#ifdef MM_TEST_HOOKS
/* SPANHEAP_STATS_WALKS, or what a test sets (1: one walk's numbers, kept
 * in range by the clamps alone). */
extern _Atomic unsigned spanheap_test_stats_walks;
#endif

#endif
