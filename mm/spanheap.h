/*
 * mm/spanheap.h: the span heap, the allocator people call: objects of any
 * size from any CPU and from interrupt handlers, freed from anywhere.
 *
 * Built as the Go runtime's mspan / mcentral / mcache on top of the page
 * heap (mheap.h), for kernel mode:
 *   size classes  63 classes up to 32 KiB (sizeclasses.h, generated);
 *                 larger requests get a span of their own (a "large" span)
 *   spans         runs of pages cut into objects of one class, with an
 *                 allocation bitmap, a pending-free bitmap and Go's
 *                 sweepgen; found from any pointer through the page heap's
 *                 lock-free span table
 *   mcache        one per CPU: the current span of each class and a
 *                 magazine of objects the CPU freed or a refill moved
 *                 there from the span (reused newest first); the fast
 *                 paths take no lock, pinned to the CPU with interrupts
 *                 off, or (MM_PORT_RSEQ) as restartable sequences that
 *                 pin nothing (rseq.h)
 *   mcentral      one per class: partial and full spans, each set split
 *                 into swept and unswept halves that swap meaning when a
 *                 sweep cycle begins
 *   free          into the CPU's magazine (reused newest first); a full
 *                 magazine's older half goes back to the spans: the CPU's
 *                 own cached span takes a local bit with no atomic
 *                 operation, any other span is deferred: one atomic OR
 *                 sets each object's pending-free bit (one already set is
 *                 a double free), and a span's first such free puts it on
 *                 its class's fold queue, which refills fold before growing
 *   sweeper       a background thread folds pending frees into the
 *                 allocation bitmaps cycle by cycle, and gives empty spans
 *                 back to the page heap (and so to its scavenger);
 *                 refilling a cache also sweeps on demand
 *
 * Contexts. Allocation and free work from threads and, with MM_ATOMIC
 * (allocation) or always (free), from interrupt handlers and with
 * interrupts off, on any CPU; never from NMI. Everything else is thread
 * context. Misuse (double free, interior or foreign pointer, a page-heap
 * run freed as an object) is always detected and mm_panics naming the
 * pointer, its span and its class.
 */
#ifndef MM_SPANHEAP_H
#define MM_SPANHEAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mheap.h"
#include "port.h"
#include "sizeclasses.h"
#include "spanheap_leak.h"
#include "spanheap_stats.h"
#include "spanheap_track.h"
#include "spanheap_where.h"
#include "spanheap_types.h"

/* Flags of the allocation calls. */
enum mm_alloc_flags {
	/* The memory is zeroed. */
	MM_ZERO = 1u << 0,
	/* The caller cannot sleep (interrupt handler, interrupts off, a
	 * spinlock held): never sleep and never wait for another CPU; NULL
	 * when memory cannot be had without waiting. Large requests are
	 * limited to MHEAP_ATOMIC_MAX_PAGES pages. */
	MM_ATOMIC = 1u << 1,
	/* Fail rather than grow the page heap. */
	MM_NO_GROW = 1u << 2,
};

/* Every flag: a call with any other bit set is refused (NULL, logged). */
#define MM_ALLOC_FLAGS (MM_ZERO | MM_ATOMIC | MM_NO_GROW)

/* The most pages of one large object: its span keeps the count in 32
 * bits (mspan's first line), so only an arena over 16 TiB could be asked
 * for more. More gets NULL and a line naming the limit; a realloc's
 * object stays as it was. */
#define SPANHEAP_LARGE_MAX_PAGES ((size_t)UINT32_MAX)

#include "spanheap_fast.h"

void spanheap_config_default(struct spanheap_config *cfg);

/* Prepares sh (zeroed, or as a failed init left it) over the page heap h
 * (its scavenger not started) with *cfg (copied: may be sh->cfg) and a
 * page heap for its metadata. False, saying why, for a bad config, no
 * memory (a retry on sh may follow), or an sh in use (left as it was). */
bool spanheap_init(struct spanheap *sh, struct mheap *h,
                   const struct spanheap_config *cfg);

/* That heap's arena bytes beside heap_arena_bytes, at most. Any context. */
size_t spanheap_meta_arena_bytes(const struct spanheap_config *cfg,
                                 size_t heap_arena_bytes);

/*
 * Returns size bytes aligned to 16 (and to the size for powers of two up
 * to 4 KiB), or NULL if memory ran out, or the request is impossible, or
 * (MM_ATOMIC) it would have to wait. A thread caller may sleep: it folds
 * a few freed spans before the page heap grows, and a cycle runs before
 * NULL for want of pages (spanheap_reclaim). size 0: a unique object.
 * flags: enum mm_alloc_flags. Thread context, or any but NMI with
 * MM_ATOMIC; no mm lock held.
 */
void *spanheap_alloc(struct spanheap *sh, size_t size, unsigned flags);

/* As spanheap_alloc, aligned to align: a power of two up to a page, or a
 * multiple of the page size above. NULL for any other align (0 too),
 * with a line naming it. An alignment that does not divide 2 MiB (12
 * KiB) is of absolute addresses, so which free pages meet it depends on
 * where the arena lies, not only on the calls before. */
void *spanheap_alloc_aligned(struct spanheap *sh, size_t size, size_t align,
                             unsigned flags);

/* n * size zeroed bytes; NULL if the product overflows. */
void *spanheap_calloc(struct spanheap *sh, size_t n, size_t size,
                      unsigned flags);

/* Resizes p (NULL: allocate); size 0 frees p and returns NULL. On
 * failure p is untouched and NULL is returned; a size no more than p's
 * usable size never fails (p stays where it could not move, as with
 * MM_ATOMIC or no memory: Linux's krealloc keeps it). With MM_ZERO every byte
 * past size up to the usable size is zero afterwards (allocations with
 * MM_ZERO zero their whole usable size), so the growth reads zeros if p
 * was allocated and resized with MM_ZERO throughout. A large object grows
 * in place into free pages after it, or moves with an eighth to spare,
 * and shrinks in place in any context, as a large free. Alignment: 16
 * wherever the object goes; no more is kept (as C's realloc and Linux's
 * krealloc): an object of spanheap_alloc_aligned, or a power-of-two size,
 * keeps its alignment only where the realloc leaves it in place. */
void *spanheap_realloc(struct spanheap *sh, void *p, size_t size,
                       unsigned flags);

/* The size class that serves size bytes aligned to align (a power of two
 * up to a page, or 0 for 16) in sh, poison mode's red zone included; 0
 * for a large span of its own. Any context. */
unsigned spanheap_class_serving(const struct spanheap *sh, size_t size,
                                size_t align);

/* Frees p (NULL: nothing). Any context but NMI. Misuse mm_panics. */
void spanheap_free(struct spanheap *sh, void *p);

/* Frees p as spanheap_free does if its span is of size class cls (0: a
 * large object) and returns true; returns false, having done nothing, if
 * p is an object of a span of another class (a named cache's free of
 * another cache's object, objcache.h). Contexts as spanheap_free's. */
bool spanheap_free_class(struct spanheap *sh, void *p, unsigned cls);

/* The bytes usable at p (an allocated object; 0 for NULL). Any context
 * but NMI. Misuse (a freed, never allocated, foreign or interior pointer)
 * mm_panics, with the free's checks. */
size_t spanheap_usable_size(struct spanheap *sh, const void *p);

/* Gives this CPU's magazines back to their spans and its cached spans to
 * their central lists. Any context but NMI. */
void spanheap_flush_cache(struct spanheap *sh);

/* For a CPU's idle loop, on each pass (any context but NMI, pinned or
 * not: pins nest): if a sweep cycle began since this
 * CPU's cache was last flushed, and the sweeper runs, flushes it as
 * spanheap_flush_cache does and returns true; else returns false, at the
 * cost of a pin and three loads. Otherwise an idle CPU would keep its
 * magazines' objects and its cached spans, and their pages, until it next
 * allocated. */
bool spanheap_cpu_idle(struct spanheap *sh);

/* As spanheap_flush_cache, on this CPU and then on every other, if the
 * port can reach them (mm_port_each_other_cpu). Returns true if it
 * could. Thread context, nothing pinned. */
bool spanheap_flush_all(struct spanheap *sh);

/* Runs one whole sweep cycle now (flip, sweep every span, give empty
 * spans back) under the cycle semaphore; returns the spans given back
 * while it ran (other CPUs' flushes meanwhile included). This CPU's
 * magazines go back to their spans first (other CPUs keep theirs until
 * their next refill after the flip, or their idle loop's next pass:
 * spanheap_cpu_idle). Thread context. */
size_t spanheap_sweep_cycle(struct spanheap *sh);

/* Flushes every CPU's cache it can reach, sweeps if a cycle is owed,
 * drains the guarded pool, scavenges every free page (mheap_release_all);
 * returns the pages released (the pool's too). Thread context. */
size_t spanheap_release_all(struct spanheap *sh);

/* Starts the sweeper thread (mm_port_thread_start); true if it runs.
 * False, logging it, if the port cannot start one: the heap works without
 * it, sweeping at refills and in spanheap_sweep_cycle. Thread context. */
bool spanheap_sweeper_start(struct spanheap *sh);
/* Stops the sweeper and joins it; nothing if none runs. Thread context. */
void spanheap_sweeper_stop(struct spanheap *sh);

/* Verifies every span and list, every CPU's magazines (other CPUs' where
 * the port can reach them: mm_port_each_other_cpu), and that every free
 * object of a span on a central list or in a magazine carries its free
 * marker (a write after its free erases it; mm_panic on a fault). Thread
 * context, nothing pinned; meaningful when no other CPU allocates or frees
 * meanwhile. */
void spanheap_check(struct spanheap *sh);

#endif
