/*
 * Memory pressure (Linux's shrinkers and direct reclaim): a subsystem
 * that keeps kmalloc'd objects it could do without (a cache of free
 * structs, of computed results) registers a shrinker; when an allocation
 * would fail, the allocating thread asks every shrinker to free some, and
 * the heap to give back what it keeps, before the allocation fails.
 *
 * Who reclaims: a thread allocation the span heap's page heap refuses
 * (kmalloc, kmem_cache, krealloc: mm's spanheap_reclaim calls the port's
 * mm_port_reclaim, kernel/mm_port.c, before it flushes and sweeps), and a
 * dma_alloc that finds no run of frames while its caller may sleep
 * (reclaim_frames: the shrinkers, then heap_release_all, then one more
 * try). Atomic callers (KM_ATOMIC, interrupt handlers, interrupts off, a
 * spinlock held: !mm_port_can_sleep) never run a shrinker: they get NULL.
 * frame_alloc itself never reclaims: its sleeping callers reclaim a step
 * up, retrying a whole request (thread_create a stack and its page
 * tables, taken under the vm lock; the heap through mm_port_reclaim).
 *
 * A shrinker's callbacks run in thread context, interrupts on, no
 * spinlock held, on the allocating thread: they may kfree, take and drop
 * locks, sleep briefly, and allocate (KM_ATOMIC or not). An allocation
 * of theirs that fails does not reclaim again (the thread is marked as
 * reclaiming: no recursion, it gets NULL). Several threads may scan one
 * shrinker at once: its callbacks synchronise with its users themselves.
 * A scan runs inside whatever thread allocation failed, which may hold
 * a sleeping lock (a semaphore) across its kmalloc: a scan that needs
 * such a lock takes it with sema_try_acquire and frees nothing when it
 * is taken, or it could wait for its own caller (Linux's shrinkers
 * trylock for the same reason). Nor may a scan wait for another thread
 * to finish a dma_alloc or thread_create: that thread, short of frames,
 * waits for the reclaim_frames the scan runs in.
 *   count(s): how many objects it could free now (a hint; 0: none).
 *   scan(s, nr): frees up to nr of them; returns how many it freed.
 * Each reclaim scans each shrinker once for at most min(count,
 * SHRINKER_SCAN_MAX) objects, in calls of at most batch objects
 * (SHRINKER_BATCH if 0): bounded work per failing allocation.
 *
 * Locking: the registry's lock (rank SHRINKERS, a leaf, irqsave) is held
 * to link, unlink and step the list only, never across a callback.
 * shrinker_register and shrinker_unregister are thread-context calls,
 * no spinlock held. Unregistering waits until no scan of that shrinker
 * runs (on any CPU), so its callbacks never run after it returns and the
 * struct may then be freed. A callback must not unregister a shrinker,
 * its own or another (it could wait for itself: a panic names it); nor
 * may a count called by meminfo's listing (shrink_print holds the
 * shrinker as a scan does, and the same panic names it).
 */
#ifndef KERNEL_SHRINKER_H
#define KERNEL_SHRINKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHRINKER_BATCH    128  /* objects a scan call, by default */
#define SHRINKER_SCAN_MAX 4096 /* objects a shrinker, per reclaim */

struct shrinker {
	/* Set by the owner before shrinker_register, then fixed: */
	const char *name;
	size_t (*count)(struct shrinker *s);
	size_t (*scan)(struct shrinker *s, size_t nr);
	size_t batch; /* 0: SHRINKER_BATCH */
	void *priv;   /* the owner's */

	/* The registry's (under its lock): */
	struct shrinker *next;
	unsigned active; /* scans running now */
	bool registered, dying;
	uint64_t scans, freed; /* scan calls made, objects they freed */
};

/* Adds s (its name, count and scan set; nothing else). Panics on a
 * shrinker registered already or with no count or scan. Thread context. */
void shrinker_register(struct shrinker *s);

/* Removes s, waiting for the scans of it running on other CPUs to end.
 * Panics on one not registered. Thread context, no spinlock held. */
void shrinker_unregister(struct shrinker *s);

/*
 * Asks every shrinker to free objects (bounded, above); returns the
 * objects they said they freed. Does nothing, returning 0, when the
 * caller may not sleep or is a shrinker's callback already (a nested
 * reclaim). Any context (it checks).
 */
size_t shrink_all(void);

/*
 * A frame allocation found nothing: the shrinkers, then the heap gives
 * back everything it keeps (heap_release_all). Returns true if frames
 * came back (the pool has more free than before). One runs at a time: a
 * caller that finds one running waits for it to end and returns true
 * (retry with what it gave back). Does nothing, false, where shrink_all
 * does nothing. Any context (it checks).
 */
bool reclaim_frames(void);

/* Totals since boot, for meminfo. Any context (racy reads). */
struct shrink_stats {
	unsigned registered;
	uint64_t reclaims; /* shrink_all calls that scanned */
	uint64_t skipped;  /* calls that could not: atomic or nested */
	uint64_t freed;    /* objects the shrinkers said they freed */
};
void shrink_stats(struct shrink_stats *st);

/* Prints one line a shrinker (name, count now, scans, freed), then the
 * totals. Thread context. */
void shrink_print(void);

#endif
