/*
 * mm/mspan.h: the span heap's spans and central lists: struct mspan (a
 * run of pages cut into objects of one class, with its bitmaps and
 * sweepgen) and struct mcentral (a class's partial and full sets, swept
 * and unswept, and its fold queue). The layout every layer of the heap
 * shares; what each field means and who may write it is said at the
 * field. Included by spanheap_types.h; a port never needs it directly.
 */
#ifndef MM_MSPAN_H
#define MM_MSPAN_H

#include <stdatomic.h>
#include <stdint.h>

#include "port.h"
#include "sizeclasses.h"

/* Span states (mspan.state). */
enum mspan_state {
	MSPAN_DEAD = 0, /* on the span-struct free list, or never used */
	MSPAN_SMALL,    /* objects of one size class */
	MSPAN_LARGE,    /* one large object */
};

/* Which central list a span is on (mspan.list), under the class's lock. */
enum mspan_list {
	MSPAN_LIST_NONE = 0, /* cached, being swept, large or dead */
	MSPAN_LIST_PARTIAL,
	MSPAN_LIST_FULL,
};

/*
 * A span. The fields say who may touch them:
 *   fixed   set when the span is made, under the heap lock, and read
 *           anywhere while the span is in use
 *   owner   the span's owner: the CPU that caches it (pinned), or the one
 *           sweeping it (sweepgen sg-1), or a central list's lock holder;
 *           others read some of them with relaxed atomics (free checks)
 */
struct mspan {
	/* Cache line 0: everything the fast paths read. */
	/* fixed */
	uintptr_t base;
	/* The class's size. A large span's is npages * page saturated at
	 * UINT32_MAX, so it is wrong for every one above 4 GiB: a large
	 * object's size is read from npages (spanheap_usable_size, the
	 * realloc, the statistics, spanheap_object_bytes for the misuse
	 * reports; spanheap_width_test.c pins them above 4 GiB). */
	uint32_t elemsize;
	uint32_t divmul; /* index = (off * divmul) >> 32 */
	/* nelems and sizeclass are also read by the statistics' walk
	 * (spanheap_stats.c), which owns no span and may meet one being
	 * made anew: both sides use relaxed atomic accesses (__atomic_*_n). */
	uint16_t nelems;
	uint8_t sizeclass;     /* 0 for a large span */
	_Atomic uint8_t state; /* enum mspan_state */
	/* The fold queue (mcentral.fold_queue): set by the first remote
	 * free since the span was last taken off the queue. A queued span
	 * is never given back to the page heap. */
	_Atomic uint8_t queued;
	/* The CPU whose cache holds the span, + 1; 0 if none. Written by
	 * that CPU alone, pinned, so a CPU that reads its own number owns
	 * the span (a magazine spill's local bits). */
	_Atomic uint8_t owner;
	/* fixed: sizeclass * sizeof(struct mmag), the class's magazine's
	 * offset in a CPU's array (a shift fewer on the free) */
	uint16_t mag_offset;
	_Atomic uint32_t freeindex; /* owner: [0, freeindex) are allocated */
	uint64_t alloc_cache; /* owner: free bits from freeindex, 1 = free */
	uint32_t npages;
	uint32_t alloc_count;      /* owner: allocated per the bitmaps */
	_Atomic uint32_t sweepgen; /* Go's protocol, see spanheap.c */
	/* enum mspan_list. Atomic: the sweeper reads it under the lock of
	 * the class it found in the span, whose struct may meanwhile be
	 * freed and reused (spanheap_span_new) without that lock. */
	_Atomic uint8_t list;
	uint8_t dshift; /* fixed: the class's (sizeclasses.h); 0 if large */
	/* fixed: a small span of a heap in poison mode (spanheap_config.h):
	 * span_take checks every object it hands out, and records its size
	 * in redzone (below) */
	uint8_t poison;
	/* A large span that is a slab of a named cache with spans of its
	 * own (mm/objcache_own.c): that cache's owner number (its slot + 1,
	 * objcache_owner_name); else 0, as in the span table's marks. Set
	 * by the cache after the span is made, cleared before it is freed;
	 * read by the misuse reports (a kfree of one of its objects names
	 * the cache) and, on line 0, by the cache's free (its one test of
	 * the span, objcache_stash.c). */
	_Atomic uint8_t objslab;
	/* One past the highest object handed out since the span was made
	 * (the owner raises it in span_take): the free ones below it carry
	 * the free marker, and none at or past it was ever handed out. Nothing
	 * is written into an object before its allocation, so a span's pages
	 * are touched as they are used, not when it is made. */
	_Atomic uint32_t marked;
	/* fixed: the class's dinv (sizeclasses.h); 0 if large. The free's
	 * one test for "the start of one of the first marked objects":
	 * (off * dinv) rotated right by dshift is below marked. */
	uint32_t dinv;
	/* Cache lines 1 and 2 (8 words each): the owner's bitmaps. */
	/* bit set: allocated (beyond freeindex's implicit prefix) */
	_Alignas(64) _Atomic uint64_t alloc_bits[SC_BITMAP_WORDS];
	/* owner: a spilled free of an object of the owner's cached span */
	_Atomic uint64_t local_free[SC_BITMAP_WORDS]; /* relaxed: stats read */
	/* Cache line 3: what other CPUs write, away from the owner's. */
	/* bit set: freed, not yet swept; set with one atomic OR by anyone */
	_Alignas(64) _Atomic uint64_t pending[SC_BITMAP_WORDS];
	struct mspan *_Atomic qnext;
	/* a central list's, under its lock */
	struct mspan *next, *prev;
	/* fixed: a poison span's side table, one struct spanheap_redzone per
	 * object (spanheap_redzone.c); NULL otherwise. In the last line's
	 * padding: the struct stays five lines. */
	void *redzone;
	/* Set when the struct is made, never changed (spanheap_structs.c):
	 * its index in the all-spans array, and the word of the in-use
	 * bitmap that holds its bit (in the tail of a page of structs). */
	_Atomic uint64_t *inuse_word;
	uint32_t idx;
} __attribute__((aligned(64)));

struct mspan_list_head {
	struct mspan *first;
	size_t n;
};

/* Per class: partial[i] and full[i] for i = (sweepgen / 2) % 2 are the
 * swept sets, the other index the unswept ones (Go's mcentral). */
struct mcentral {
	mm_lock_t lock; /* rank MM_RANK_CENTRAL: the four lists */
	struct mspan_list_head partial[2], full[2];
	/* Spans with remote frees to fold: a lock-free stack, pushed by
	 * frees, taken whole by refills (so no ABA). */
	struct mspan *_Atomic fold_queue;
	/* Queued spans taken off fold_queue but not folded yet (a refill
	 * folds at most a few), linked through qnext: written under the
	 * lock (relaxed), looked at without it (queues_hold_spans). */
	struct mspan *_Atomic fold_backlog;
	_Atomic size_t nspans; /* spans of this class in use anywhere */
	/* Booked when a span's frees are folded (not on the fast paths):
	 * frees by the local and the remote path. */
	_Atomic uint64_t nlocal, nremote;
};

#endif
