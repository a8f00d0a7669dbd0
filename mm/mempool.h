/*
 * mm/mempool.h: reserved elements for allocations that must make
 * progress when memory runs out, Linux's mempool_t. Included by mm.h.
 *
 * A pool is a source of elements of one size (the span heap, a named
 * cache, or two functions of the caller's) and a reserve of min elements
 * taken from it at the pool's creation. An allocation asks the source
 * first, without sleeping; only when that fails does it take an element
 * from the reserve. A free refills the reserve before it gives anything
 * back to the source, and wakes a thread waiting for an element. So a
 * caller that frees what it took (an I/O request that completes, a
 * message that is handled) always gets its next element, however little
 * memory the rest of the system left: the reserve is what lets the code
 * that would free memory run when there is none.
 *
 * mempool_alloc with MM_ATOMIC (an interrupt handler, a lock held) returns
 * NULL when the source and the reserve are both empty. Without it the
 * call never returns NULL: it asks the source again with its reclaim,
 * then sleeps until an element comes back to the reserve (or a period
 * passes, and it asks the source again). Such a caller must not hold
 * elements whose free waits on its own progress; on a port with one
 * thread, where no one else can free, it waits for ever: use MM_ATOMIC.
 * As Linux's, a free hands nothing to a waiter: it fills the reserve and
 * wakes every waiter, and any caller (one arriving later, an interrupt
 * handler's MM_ATOMIC one) may take that element first; the waiter goes
 * round again. No order among callers is promised, only progress.
 *
 * Misuse, always checked: an element's first word holds a marker while
 * it sits in the reserve, so a free of an element already there (a
 * double free, whichever way the first free went) panics naming the
 * pool and the element, as does a free that would refill the reserve
 * with an element it holds whose marker was written over; for the span heap's
 * and a named cache's pools a free also passes the heap's checks (a foreign,
 * interior or freed pointer panics as kfree's would), and an element smaller
 * than the pool's (another pool's), or for a named cache's pool one of another
 * size class than the cache's, panics. A pool destroyed with elements out is
 * refused, with a line saying how many. A pool whose init failed, or that
 * was destroyed, panics at an allocation, a free or a resize, saying it
 * is not set up; mempool_destroy of it is nothing, and an init makes it
 * a pool again.
 *
 * Contexts: mempool_alloc with MM_ATOMIC, mempool_free, mempool_check
 * and mempool_info, any context but NMI (the pool's lock is a leaf of
 * rank MM_RANK_HEAP, taken with interrupts off for a few loads and
 * stores, or a scan of the reserve's at most min slots by a free that
 * refills it); mempool_alloc without it, creation, resizing and destruction,
 * thread context.
 */
#ifndef MM_MEMPOOL_H
#define MM_MEMPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "objcache.h"
#include "port.h"

/* A pool's longest name (without its NUL) and its largest reserve. */
#define MEMPOOL_NAME_MAX 31
#define MEMPOOL_MIN_MAX  4096

/* How long a waiting mempool_alloc sleeps before it asks the source again
 * (a free to the source wakes nobody): a pool's wait_ns, which its
 * creator may change before the pool is used. */
#define MEMPOOL_WAIT_NS (100ull * 1000 * 1000)

/* A source of elements of the caller's. alloc gets MM_ATOMIC and
 * MM_NO_GROW as the span heap does (never MM_ZERO: the pool zeroes size
 * bytes itself), and returns NULL when it has none, or an element aligned
 * to a pointer at least (else mm_panic); with MM_ATOMIC it must not
 * sleep. free takes back what alloc gave, from
 * any context mempool_free is called from. The pool owns an element's
 * first word (a pointer's size) between the two: it writes its marks
 * there, in the reserve and on the way back to free, and clears it when
 * alloc hands the element over, so a source keeps nothing of its own in
 * it (a header or a canary goes elsewhere). */
struct mempool_source {
	void *(*alloc)(void *data, unsigned flags);
	void (*free)(void *data, void *elem);
};

/* A pool. Its fields are mempool.c's; callers read mempool_info. */
struct mempool {
	/* reserve, curr (its writes) and the marker's scans; rank
	 * MM_RANK_HEAP, a leaf: nothing is called under it */
	mm_lock_t lock;
	mm_event_t returned;    /* woken when an element enters the reserve */
	struct spanheap *sh;    /* its metadata heap holds the reserve's
	                         * array; the heap's elements */
	struct objcache *cache; /* a named cache's pool: its elements */
	const struct mempool_source *src; /* a pool of the caller's */
	void *data;
	size_t size;           /* every element's bytes, at least */
	uintptr_t marker;      /* an element's first word in the reserve,
	                        * xor its address; unless unmarked */
	bool unmarked;         /* an own-slab cache's pool: no marker */
	void **reserve;        /* cap slots; curr of them hold elements */
	uint32_t cap;          /* the array's slots, min or more (lock) */
	_Atomic uint32_t min;  /* the reserve's size: written under the
	                        * lock, read without it by a free */
	uint32_t waiters;      /* threads asleep for an element (lock) */
	_Atomic uint32_t curr; /* read without the lock by a free */
	_Atomic int64_t out;   /* elements handed out, less those freed */
	uint64_t wait_ns;      /* a sleep's period: MEMPOOL_WAIT_NS */
	_Atomic uint64_t from_reserve, waits, timeouts, atomic_fails, refills;
	char name[MEMPOOL_NAME_MAX + 1];
};

/*
 * Makes p a pool of elements of size bytes from sh's objects (kmalloc's),
 * with min of them reserved now. Returns false, with a line saying why
 * and nothing kept, for no name or one too long, size below a pointer or
 * no heap object, min 0 or above MEMPOOL_MIN_MAX, min elements more than
 * the heap's arena holds, or too little memory for the reserve. Thread
 * context.
 */
bool mempool_init_heap(struct mempool *p, struct spanheap *sh, const char *name,
                       uint32_t min, size_t size);

/* As mempool_init_heap, the elements objects of cache c (of its size);
 * no cache (NULL) is refused; one with slabs of its own gets an unmarked
 * pool (mempool.c), no MM_ZERO with a ctor; a destroyed one mm_panics (as its
 * own calls do, objcache.h: while its struct's page is mapped). */
bool mempool_init_cache(struct mempool *p, struct objcache *c, const char *name,
                        uint32_t min);

/* As mempool_init_cache, c looked for on sh's list before it is read: a
 * destroyed cache (or another heap's) mm_panics saying so even once its
 * struct's page is unmapped (as objcache_destroy_in). */
bool mempool_init_cache_in(struct mempool *p, struct spanheap *sh,
                           struct objcache *c, const char *name, uint32_t min);

/* As mempool_init_heap, the elements from src (with data), each of size
 * bytes at least; sh holds the reserve's array. */
bool mempool_init(struct mempool *p, struct spanheap *sh, const char *name,
                  uint32_t min, size_t size, const struct mempool_source *src,
                  void *data);

/*
 * An element: from the source if it has one without sleeping, else from
 * the reserve; MM_ZERO zeroes size bytes of it, wherever it came from.
 * With MM_ATOMIC, NULL when both are empty; without, never NULL (see
 * above). Other flags: NULL and a line. Contexts above.
 */
void *mempool_alloc(struct mempool *p, unsigned flags);

/* Gives elem (from mempool_alloc of p; NULL: nothing) back: to the
 * reserve if it is short, else to the source. Any context but NMI. */
void mempool_free(struct mempool *p, void *elem);

/*
 * Makes p's reserve new_min elements: growing, takes the new ones from
 * the source first (the reserve fills with them, and frees fill it from
 * then on); shrinking, gives the surplus back at once. Returns false,
 * with a line and p as it was, for new_min 0 or above MEMPOOL_MIN_MAX,
 * more of the heap's elements than its arena holds, or too little memory
 * for the growth. Thread context; one resize at a
 * time, any other call on p may run meanwhile.
 */
bool mempool_resize(struct mempool *p, uint32_t new_min);

/*
 * Gives the reserve back to the source and returns true; or, with
 * elements out, keeps the pool as it is, says how many on one line and
 * returns false (for good with more freed to it than it handed out:
 * another pool's elements, which no free could tell). Thread context; nothing
 * may use p meanwhile, nor after; a destroy of a pool destroyed (or not set up)
 * is nothing, and so is the second of two destroys at once: the reserve goes
 * back once.
 */
bool mempool_destroy(struct mempool *p);

/*
 * Checks p's reserve and mm_panics naming the slot, the element and what
 * is wrong: more elements than its size, a NULL slot, an element twice,
 * one whose first word lost its marker (written while in the reserve),
 * or, for the heap's and a named cache's pools, one the heap does not
 * hold as an allocated object starting there (freed behind the pool's
 * back). O(min), under the pool's lock. Any context but NMI.
 */
void mempool_check(struct mempool *p);

struct mempool_info {
	char name[MEMPOOL_NAME_MAX + 1];
	size_t size;
	uint32_t min, curr; /* the reserve's size and its elements now */
	int64_t out;        /* elements out */
	/* allocations served from the reserve; sleeps for an element, and
	 * those that ended with the period, no element having come back;
	 * MM_ATOMIC calls that got NULL; frees that went to the reserve */
	uint64_t from_reserve, waits, timeouts, atomic_fails, refills;
};

/* p's state now (each field read on its own). Any context. */
void mempool_info(struct mempool *p, struct mempool_info *out);

#endif
