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
 *                 sets each object's pending-free bit (a
 *                 bit already set is a double free), and a span's first
 *                 such free puts it on its class's fold queue, which
 *                 refills fold before growing
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
#include "rseq.h"
#include "sizeclasses.h"

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
	uint32_t elemsize; /* the class's size; npages * page for large */
	uint32_t divmul;   /* index = (off * divmul) >> 32 */
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
	 * folds at most a few): under the lock, linked through qnext. */
	struct mspan *fold_backlog;
	_Atomic size_t nspans; /* spans of this class in use anywhere */
	/* Booked when a span's frees are folded (not on the fast paths):
	 * objects allocated, and frees by the local and the remote path. */
	_Atomic uint64_t nalloc, nlocal, nremote;
};

/* Per-CPU counters, written by their CPU while pinned (relaxed atomics:
 * statistics read them from other CPUs). */
struct mcache_counters {
	_Atomic uint64_t pending_bytes; /* remote frees, ever (bytes) */
	_Atomic uint64_t refills;       /* slow-path span changes */
};

/*
 * A magazine: free objects of one class, those this CPU freed and those
 * an empty magazine's refill moved there from the cached span
 * (mag_fill), handed out by its next allocations of the class, last in
 * first out (tcmalloc's per-CPU free lists). An array of slots in the
 * CPU's slab, not a list through the objects: popping one reads nothing
 * of the object, and a write after free cannot redirect an allocation.
 * Each object's second word holds the free marker, cookie ^ its address.
 * Past its size, the older half goes back to the spans.
 *
 * Two pointers, so that a pop and a push each compare one: the slot
 * below a magazine's first holds 0, so a pop that reads 0 below top
 * found it empty; a push at limit finds it full. Until the CPU's slab is
 * made, top and limit both point just past a shared zero word: empty and
 * full at once, so the first free or refill makes the slab.
 */
struct mmag {
	uintptr_t *top;   /* past the newest object; __atomic relaxed (stats) */
	uintptr_t *limit; /* past the last slot */
};

/* One CPU's cache: touched only by that CPU, pinned. */
struct mcache {
	struct mmag mag[SC_NCLASSES];
	/* the magazines' slots, or NULL until made; __atomic: the statistics
	 * read it from other CPUs */
	uintptr_t *slab;
	struct mspan *alloc[SC_NCLASSES]; /* the current span, or the empty
	                                     placeholder */
	uint32_t flushgen; /* the sweepgen it was last prepared for */
	struct mcache_counters n;
} __attribute__((aligned(2048))); /* a power of two: caches[cpu] is a shift */

/* A magazine holds at most SPANHEAP_MAG_BYTES of objects, and between
 * SPANHEAP_MAG_MIN and SPANHEAP_MAG_MAX of them. */
#define SPANHEAP_MAG_BYTES (64u << 10)
#define SPANHEAP_MAG_MIN   2u
#define SPANHEAP_MAG_MAX   128u

struct spanheap_config {
	/* A sweep cycle starts when pending frees pass this share of the
	 * bytes in use (permille) and at least min_pending_bytes, or every
	 * period_ns when anything is pending. */
	unsigned pending_permille;
	size_t min_pending_bytes;
	uint64_t period_ns;
	/* Spans the sweeper sweeps between yields. */
	unsigned batch_spans;
	/* The sweeper's CPU budget, in thousandths of one CPU: after a
	 * cycle it sleeps long enough to stay within it. */
	unsigned cpu_permille;
};

#define SPANHEAP_DEFAULT_PENDING_PERMILLE 125 /* 1/8 */
#define SPANHEAP_DEFAULT_MIN_PENDING      ((size_t)1 << 20)
#define SPANHEAP_DEFAULT_PERIOD_NS        ((uint64_t)1000 * 1000 * 1000)
#define SPANHEAP_DEFAULT_BATCH_SPANS      32
#define SPANHEAP_DEFAULT_CPU_PERMILLE     10 /* 1% of one CPU */

/* The array of every span struct ever made (Go's h.allspans), under the
 * heap lock; a snapshot holds a reference to the array it walks. */
struct spanheap_spans {
	struct mspan **v;
	size_t len, cap;
	_Atomic size_t refs;            /* snapshots walking v, + 1 if live */
	struct spanheap_spans *retired; /* older arrays still referenced */
	size_t npages;                  /* pages of v */
};

/* Counters under the heap lock or atomic (the sweeper's). */
struct spanheap_counters {
	uint64_t cycles;         /* sweep cycles finished */
	uint64_t swept_spans;    /* by the sweeper thread */
	uint64_t demand_swept;   /* by cache refills (stats only) */
	uint64_t queue_folded;   /* from fold queues (stats only) */
	uint64_t quiet_cycles;   /* cycles a quiet heap brought forward */
	uint64_t freed_spans;    /* empty spans given back */
	uint64_t sweeper_cpu_ns; /* the sweeper thread's CPU time */
	uint64_t large_allocs, large_frees;
	uint64_t atomic_fails; /* MM_ATOMIC calls that got NULL */
};

/* The sweeper thread's state. */
struct spanheap_sweeper {
	struct mm_thread *thread;
	_Atomic bool stop;
	mm_event_t wake; /* pending frees passed the threshold, or stop */
	mm_event_t pace; /* a paced sleep: woken only by stop */
	/* The cycle semaphore (invariant 5): held from flip to finish. */
	_Atomic bool cycle_held;
	mm_event_t cycle_done;
	_Atomic uint64_t last_cycle_ns; /* any cycle's end; relaxed */
};

struct spanheap {
	/* First, so that the fields every free reads (below) are not at a
	 * page's first bytes: the struct is 2 KiB aligned, and objects at a
	 * page's start, the commonest, would alias them (see
	 * MHEAP_SPANMAP_SKEW). */
	struct spanheap_config cfg;
	_Atomic uint32_t sweepgen; /* advances by 2 per cycle */
	struct mheap *heap;   /* the page heap; its lock guards spans below */
	uintptr_t mag_cookie; /* fixed: the free markers' key */
	uintptr_t arena_base, arena_bytes; /* fixed: the page heap's arena */
	/* The page heap's span table (fixed), and how many of its entries
	 * the free's fast path reads: heap->spanmap_pages as it was at the
	 * last spanheap_span_new, so at least the entries of every span made
	 * (written under heap->lock; the table grows without it, so the
	 * copy is read acquire and written release, which orders the new
	 * entries' "none" before it). A free beyond it takes the slow path,
	 * which reads heap->spanmap_pages itself. A copy here saves the free
	 * a load and a step of its chain. */
	void *_Atomic *spanmap;
	_Atomic size_t spanmap_pages;
	/* fixed: &caches[cpu].mag[0], one load where the address would be
	 * four instructions on the fast paths; [MM_PIN_NONE]: magazines
	 * empty and full at once, for a pin of mm_port_pin_fast that pinned
	 * nothing */
	struct mmag *mags[MM_MAX_CPUS + 1];
	/* fixed: sizeclass_by16[i] * sizeof(struct mmag), the byte offset of
	 * the magazine of size 16 * i in every CPU's; spanheap_alloc's class
	 * lookup (in the heap, the offset of its base is a displacement of
	 * the heap's own register, with no scaling: two instructions fewer
	 * than the global table's class) */
	uint16_t mag_by16[SC_MAX_SIZE / 16 + 1];
	struct mcentral central[SC_NCLASSES];
	struct mcache caches[MM_MAX_CPUS];
	/* Under heap->lock: */
	struct spanheap_spans *spans; /* the live all-spans array */
	struct mspan *free_structs;   /* the span-struct allocator */
	size_t nstructs, nstructs_free;
	size_t large_in_use_pages;
	struct spanheap_counters n;
	_Atomic uint64_t demand_swept; /* spans swept by cache refills */
	_Atomic uint64_t queue_folded; /* spans folded from fold queues */
	_Atomic uint64_t pending_base; /* pending bytes at the last flip */
	_Atomic uint64_t quiet_cycles; /* paces cut short: the heap was quiet */
	struct spanheap_sweeper sweeper;
	/* The magazines' slots: a slab of mag_slab_pages per CPU, made at
	 * the CPU's first free or refill and kept (like span structs);
	 * class c's are [mag_off[c], + mag_max[c]), below them a 0. Fixed
	 * after init but mag_slabs. */
	uint32_t mag_max[SC_NCLASSES], mag_off[SC_NCLASSES];
	/* Objects an empty magazine's refill adds (mag_fill); 0: none. */
	uint8_t mag_fill[SC_NCLASSES];
	size_t mag_slab_pages;
	_Atomic size_t mag_slabs; /* slabs made */
};

/* Per size class and in all (spanheap_stats). */
struct spanheap_class_stats {
	uint32_t size;
	size_t spans, objects_in_use, objects_free, bytes_in_use, bytes_spans;
};

struct spanheap_stats {
	struct spanheap_class_stats cls[SC_NCLASSES]; /* [0]: large */
	size_t spans, bytes_in_use, bytes_spans, large_pages;
	/* Objects given back to their spans from the magazines, by the
	 * span's owner (local bits) or by other CPUs (pending bits): the
	 * frees, and the objects a refill put into a magazine that went back
	 * unused (mag_fill). Cache refills (span changes). */
	uint64_t local_frees, remote_frees, refills;
	/* Free objects waiting in the magazines: freed, or put there by a
	 * refill */
	size_t mag_objects;
	uint32_t sweepgen;
	struct spanheap_counters n;
	struct mheap_stats heap;
};

/*
 * How spanheap_alloc and spanheap_free are defined: a port's build may set
 * it to `__attribute__((always_inline)) inline` so that link-time
 * optimisation puts their fast paths into its own wrappers (malloc/malloc.mk
 * does: the hosted malloc's mixed sizes 24 -> 22 ns, random-order frees
 * 85 -> 72). Empty by default.
 */
#ifndef SPANHEAP_FAST
#define SPANHEAP_FAST
#endif

/*
 * Takes magazine m's newest object, or 0 if it is empty (the slot below
 * the first holds 0), and clears its free marker (word 1). Reads nothing
 * of the object. Pinned: spanheap_alloc's and spanheap_alloc_class's pop
 * (with MM_PORT_RSEQ, spanheap_rseq_pop is theirs, and this the slow
 * paths').
 */
static inline __attribute__((always_inline)) uintptr_t
spanheap_mag_pop(struct mmag *m)
{
	uintptr_t *t = __atomic_load_n(&m->top, __ATOMIC_RELAXED);
	uintptr_t a = t[-1];
	if (__builtin_expect(a == 0, 0))
		return 0;
	__atomic_store_n(&m->top, t - 1, __ATOMIC_RELAXED);
	((uintptr_t *)a)[1] = 0;
	return a;
}

/* spanheap_alloc_mag's way on an empty magazine (pin from
 * mm_port_pin_fast: the span's next object or a refill; or, if it pinned
 * nothing, a pin and the magazine again); unpins. With MM_PORT_RSEQ,
 * spanheap_alloc_refill_pin's (pin from mm_port_pin). Not to be called
 * otherwise. */
void *spanheap_alloc_refill(struct spanheap *sh, size_t size, unsigned flags,
                            struct mm_pin pin);

#ifdef MM_PORT_RSEQ
/* spanheap_alloc_refill for the restartable sequence's empty magazine
 * (nothing pinned): pins, then as spanheap_alloc_refill. */
void *spanheap_alloc_refill_pin(struct spanheap *sh, size_t size,
                                unsigned flags);

/*
 * spanheap_mag_pop as a restartable sequence (mm/rseq.h) on this CPU's
 * magazine mag_off bytes into its array: the CPU's index, the magazine,
 * its top, the newest object; the commit is the store of the lowered top.
 * Returns the object (its marker still to be cleared), or sets *empty if
 * the magazine is empty. Any context but NMI, nothing pinned.
 */
static inline __attribute__((always_inline)) uintptr_t
spanheap_rseq_pop(struct spanheap *sh, size_t mag_off, bool *empty)
{
	uintptr_t a, *t;
	struct mmag *m;
	unsigned long cpu;
	/* ZF: set by the test on the empty way, cleared by the sub (a top
	 * is never 8) on the other, so the caller tests no register. */
	__asm__ volatile("1:\n\t" MM_PORT_RSEQ_CPU "\n\t"
	                 "movq %c[mags](%[sh], %[cpu], 8), %[m]\n\t"
	                 "movq (%[m], %[off]), %[t]\n\t"
	                 "movq -8(%[t]), %[a]\n\t"
	                 "testq %[a], %[a]\n\t"
	                 "jz 2f\n\t"
	                 "subq $8, %[t]\n\t"
	                 "movq %[t], (%[m], %[off])\n" /* the commit */
	                 "2:\n\t" MM_RSEQ_RECORD("1b", "2b")
	                 : "=@ccz"(*empty), [a] "=&r"(a), [t] "=&r"(t),
	                   [m] "=&r"(m), [cpu] "=&r"(cpu)
	                 : [sh] "r"(sh), [off] "r"(mag_off),
	                   [mags] "i"(offsetof(struct spanheap, mags)),
	                   MM_PORT_RSEQ_CPU_ARGS
	                 : "memory");
	return a;
}
#endif

/*
 * The magazine path of an allocation of size bytes whose class's magazine
 * is mag_off bytes into every CPU's (the class times sizeof(struct mmag)):
 * the fast pin, the pop, the unpin (or, with MM_PORT_RSEQ, the pop as a
 * restartable sequence); on an empty magazine (or a pin that named no
 * CPU) spanheap_alloc_refill (with MM_PORT_RSEQ,
 * spanheap_alloc_refill_pin). Shared by spanheap_alloc and
 * spanheap_alloc_class; contexts as theirs.
 */
static inline __attribute__((always_inline)) void *
spanheap_alloc_mag(struct spanheap *sh, size_t mag_off, size_t size,
                   unsigned flags)
{
#ifdef MM_PORT_RSEQ
	bool empty;
	uintptr_t r = spanheap_rseq_pop(sh, mag_off, &empty);
	if (__builtin_expect(!empty, 1)) {
		((uintptr_t *)r)[1] = 0; /* its free marker */
		return (void *)r;
	}
	return spanheap_alloc_refill_pin(sh, size, flags);
#else
	struct mm_pin pin = mm_port_pin_fast();
	uintptr_t a = spanheap_mag_pop(
	        (struct mmag *)((char *)sh->mags[pin.cpu] + mag_off));
	if (__builtin_expect(a != 0, 1)) {
		mm_port_unpin_fast(pin);
		return (void *)a;
	}
	return spanheap_alloc_refill(sh, size, flags, pin);
#endif
}

/*
 * spanheap_alloc's fast path inline, for a caller that knows the class
 * where it calls (a port's wrapper for a size fixed at compile time, such
 * as the kernel's kmalloc(sizeof(struct ...))): the pin, the class's
 * magazine, the unpin (with MM_PORT_RSEQ, the magazine's restartable
 * sequence alone); the class lookup, the size and flag tests and the
 * call are left out. cls must be sizeclass_of(size) and flags must not
 * hold MM_ZERO. Contexts as spanheap_alloc's with those flags.
 */
static inline __attribute__((always_inline)) void *
spanheap_alloc_class(struct spanheap *sh, unsigned cls, size_t size,
                     unsigned flags)
{
	return spanheap_alloc_mag(sh, cls * sizeof(struct mmag), size, flags);
}

/* The class of size when the compiler knows size, up to SC_LINEAR_MAX
 * (sizeclasses.h: class k holds 16 * k bytes there), as sizeclass_of
 * would give it; for other sizes, sizeclass_of. */
static inline __attribute__((always_inline)) unsigned
spanheap_class_linear(size_t size)
{
	return size ? (unsigned)((size + 15) / 16) : 1;
}

void spanheap_config_default(struct spanheap_config *cfg);

/* Prepares sh over the page heap h (initialised). Thread context. */
bool spanheap_init(struct spanheap *sh, struct mheap *h,
                   const struct spanheap_config *cfg);

/*
 * Returns size bytes aligned to 16 (and to the size for powers of two up
 * to 4 KiB), or NULL if memory ran out, or the request is impossible, or
 * (MM_ATOMIC) it would have to wait. size 0 gets a unique minimal object.
 * flags: enum mm_alloc_flags. Thread context, or any but NMI with
 * MM_ATOMIC; no mm lock held.
 */
void *spanheap_alloc(struct spanheap *sh, size_t size, unsigned flags);

/* As spanheap_alloc, aligned to align: a power of two up to a page, or a
 * multiple of the page size above. NULL for any other align. */
void *spanheap_alloc_aligned(struct spanheap *sh, size_t size, size_t align,
                             unsigned flags);

/* n * size zeroed bytes; NULL if the product overflows. */
void *spanheap_calloc(struct spanheap *sh, size_t n, size_t size,
                      unsigned flags);

/* Resizes p (NULL: allocate); size 0 frees p and returns NULL. On
 * failure p is untouched and NULL is returned. With MM_ZERO every byte
 * past size up to the usable size is zero afterwards (allocations with
 * MM_ZERO zero their whole usable size), so the growth reads zeros if p
 * was allocated and resized with MM_ZERO throughout. A large object grows
 * in place into free pages after it, or moves with an eighth to spare,
 * and shrinks in place (not with MM_ATOMIC, which copies). */
void *spanheap_realloc(struct spanheap *sh, void *p, size_t size,
                       unsigned flags);

/* Frees p (NULL: nothing). Any context but NMI. Misuse mm_panics. */
void spanheap_free(struct spanheap *sh, void *p);

/* The bytes usable at p (an allocated object). Any context. */
size_t spanheap_usable_size(struct spanheap *sh, const void *p);

/* Hands this CPU's magazines back to their spans and its cached spans
 * back to their central lists. Any context but NMI. */
void spanheap_flush_cache(struct spanheap *sh);

/*
 * Runs one whole sweep cycle now (flip, sweep every span, give empty
 * spans back) under the cycle semaphore; returns the spans freed. This
 * CPU's magazines go back to their spans first (other CPUs keep theirs
 * until their next refill after the flip). Thread context.
 */
size_t spanheap_sweep_cycle(struct spanheap *sh);

/* Flushes this CPU's cache, runs a sweep cycle, then scavenges every free
 * page (mheap_release_all); returns the pages released. Other CPUs' caches
 * keep their spans and magazines: the kernel flushes them on each CPU
 * first. Thread context. */
size_t spanheap_release_all(struct spanheap *sh);

bool spanheap_sweeper_start(struct spanheap *sh);
void spanheap_sweeper_stop(struct spanheap *sh);

/* A snapshot of the statistics (approximate while CPUs allocate). Thread
 * context. */
void spanheap_stats(struct spanheap *sh, struct spanheap_stats *st);

/* mm_logs a slabinfo-style table, then the totals, then the page heap's
 * report (mheap_dump). Thread context. */
void spanheap_dump(struct spanheap *sh);

/* Verifies every span and list, and that every free object of a span on
 * a central list carries its free marker (a write after its free erases
 * it; mm_panic on a fault). Thread context; meaningful when no other CPU
 * allocates or frees meanwhile. */
void spanheap_check(struct spanheap *sh);

#endif
