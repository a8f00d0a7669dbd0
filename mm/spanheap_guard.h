/*
 * mm/spanheap_guard.h: the guarded pool (spanheap_guard.c), Linux's
 * KFENCE for the span heap: a sampled few small allocations are served
 * each from a page of their own between unmapped guard pages, so that an
 * overrun, an underrun or a use after free of one of them faults at the
 * access that does it, in a production build, for the cost of a counter
 * on the refill path. Included by spanheap_types.h (the struct) and by
 * spanheap.h's users through it (the calls).
 */
#ifndef MM_SPANHEAP_GUARD_H
#define MM_SPANHEAP_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "port.h"

struct spanheap;

/* The most slots a pool may have (spanheap_config's guard_slots, 8
 * bits). */
#define SPANHEAP_GUARD_MAX 255

/* A slot's state. FREE: unmapped, in the ring; BUSY: one caller sets it
 * up or tears it down, outside the lock; LIVE: handed out; FREED: freed
 * where no thread could unmap it (an interrupt handler, a spinlock held),
 * filled with the poison, waiting for spanheap_guard_drain; RCU: a
 * typesafe cache's object freed, left as it was (mapped, readable) until
 * a grace period has passed (spanheap_guard_own.c). */
enum { GUARD_FREE, GUARD_BUSY, GUARD_LIVE, GUARD_FREED, GUARD_RCU };

/* A slot's kind: an object of a cache with slabs of its own (owner: its
 * slot + 1, kept after the free for the reports), and one whose free
 * waits for a grace period (OBJCACHE_TYPESAFE_BY_RCU). */
enum { GUARD_KIND_OWN = 1, GUARD_KIND_RCU = 2 };

/* One slot: its page is the pool's page 2 * i + 1 (its guards 2 * i and
 * 2 * i + 2). The object's fields stay after its free, for reports, until
 * the slot is handed out again. They are written only while the slot is
 * BUSY, its gen moved first (under the heap lock, as it goes BUSY), so a
 * reader with no lock that finds gen and state the same after its read
 * as before, and the state not BUSY, read one object's fields. */
struct spanheap_guard_slot {
	uintptr_t obj;  /* the object's first byte; 0: never used */
	uint32_t asked; /* the bytes asked for it (its usable size) */
	uint16_t cls;   /* the size class the heap would have served */
	_Atomic uint8_t state;
	uint8_t kind;   /* GUARD_KIND_*, 0: the heap's or a merged cache's */
	uint32_t owner; /* 0, or a named cache's slot + 1 (poison mode, own) */
	uint32_t alloc_cpu, free_cpu;
	uint32_t alloc_stack, free_stack; /* depot handles; 0: none */
	_Atomic uint32_t gen;             /* times gone BUSY */
	uint64_t alloc_ns, free_ns;       /* 0: never */
};

/* A guarded object's fields, read with no lock (spanheap_guard_live). */
struct spanheap_guard_obj {
	uintptr_t obj;
	uint32_t asked, owner;
	unsigned cls, kind;
};

struct spanheap_guard {
	/* Fixed: the pool's first page (a guard), 0 if the heap has none;
	 * its bytes, (2 * nslots + 1) pages; the sampling interval. */
	uintptr_t base;
	size_t bytes;
	unsigned nslots, interval;
	/* One thread at a time unmaps (spanheap_guard_drain), into batch;
	 * drained is woken when it lets go, for spanheap_guard_drain_all. */
	_Atomic bool draining;
	mm_event_t drained;
	/* Under heap->lock: the free slots, the longest free first (a slot
	 * freed waits for every other before it is reused, so a late use of
	 * its object keeps faulting); the FREED ones; the counts. */
	uint16_t ring[SPANHEAP_GUARD_MAX];
	unsigned ring_head, ring_len;
	uint16_t freed[SPANHEAP_GUARD_MAX];
	unsigned nfreed, live, side, nrcu; /* nrcu: slots in GUARD_RCU */
	uint64_t allocs, frees, full, nomem;
	struct spanheap_guard_slot slot[SPANHEAP_GUARD_MAX];
	struct mm_unused_batch batch;
	/* Slot i's grace period (GUARD_RCU), queued by its free. */
	struct spanheap_guard_rcu {
		struct mm_rcu_head head;
		struct spanheap *sh;
	} rcu[SPANHEAP_GUARD_MAX];
};

/* True if p is in sh's pool (its guards included). Any context. */
static inline bool spanheap_guard_owns(const struct spanheap_guard *g,
                                       const void *p)
{
	return (uintptr_t)p - g->base < g->bytes;
}

/* The slot whose page holds a (of the pool), or nslots if a is on a
 * guard page. Any context. */
static inline unsigned spanheap_guard_slot_at(const struct spanheap_guard *g,
                                              uintptr_t a)
{
	size_t pi = (a - g->base) >> MM_PAGE_SHIFT;
	return (pi & 1) ? (unsigned)(pi / 2) : g->nslots;
}

/* The address space a pool of nslots reserves (spanheap_guard_init). */
static inline size_t spanheap_guard_bytes(unsigned nslots)
{
	return nslots ? (2 * (size_t)nslots + 1) * MM_PAGE_SIZE : 0;
}

/* ---- For the heap's own files (spanheap_internal.h's users) ---------- */

/* Sets up the pool of sh->cfg (nothing if it asks for none): its
 * reservation and page tables, every slot free. NULL; or, with nothing
 * kept, why the port refused: no address space (mm_port_reserve), or
 * unused pages it cannot make fault (mm_port_prepare_guarded). Thread
 * context (spanheap_init). */
const char *spanheap_guard_init(struct spanheap *sh);

/*
 * An object of size bytes aligned to align (size and align at most a
 * page; the heap's own rules: 16, or a power-of-two size's own) on a
 * page of the pool, zeroed, with the rest of its page filled with a
 * canary; cls is the class the heap would have served it from (what
 * objcache's class test and the reports read). NULL, having taken
 * nothing, if no slot is free, the port has no memory for the page, or
 * flags hold MM_NO_GROW. Any context but NMI, no mm lock held.
 */
void *spanheap_guard_alloc(struct spanheap *sh, size_t size, size_t align,
                           unsigned flags, unsigned cls);
/* The same for a cache with slabs of its own (no class): its owner number
 * and kind (GUARD_KIND_*), kept after the free for the reports. */
void *spanheap_guard_alloc_own(struct spanheap *sh, size_t size, size_t align,
                               unsigned flags, uint32_t owner, unsigned kind);

/*
 * Frees p, which spanheap_guard_owns: checked (a double free, an
 * interior pointer, a guard page's address and a damaged canary panic,
 * naming the object and its allocation's and free's stacks). cls
 * SPANHEAP_GUARD_UNOWNED, a free by the heap's own callers, panics for
 * an object of a named cache (poison mode); any other cls is objcache's
 * class test: false, nothing changed, if the object is of another class
 * (0, a cache of large objects, matches none: the pool's are small).
 * Unmapped at once from a thread, else by the next drain. Any context
 * but NMI, no mm lock held.
 */
#define SPANHEAP_GUARD_UNOWNED 0xffffffffu
bool spanheap_guard_free(struct spanheap *sh, void *p, unsigned cls);
/* The free of a cache with slabs of its own (owner: its slot + 1): false,
 * nothing changed, if p is not its object; an object of such a cache
 * given to spanheap_guard_free panics naming the cache. A typesafe one's
 * slot stays mapped, as it was, until a grace period has passed. */
bool spanheap_guard_free_own(struct spanheap *sh, void *p, uint32_t owner);

/* The usable size of p (the bytes asked: past them is the canary),
 * checked as a free is; op names the call for the panics. If unowned
 * (realloc: a call of the heap's own callers), a named cache's object
 * panics too, as at spanheap_free; a cache's with slabs of its own
 * always does (as its slab's would: ksize). Any context. */
size_t spanheap_guard_usable(struct spanheap *sh, const void *p, const char *op,
                             bool unowned);

/* The owner field of live object p (poison mode's named caches) and its
 * class into *cls; NULL for anything else. Any context. */
uint32_t *spanheap_guard_owner_at(struct spanheap *sh, const void *p,
                                  unsigned *cls);

/* Unmaps the FREED slots' pages (their poison checked first) and puts
 * them in the ring; returns how many. Thread context, no mm lock held;
 * returns 0 at once if another thread is at it. */
size_t spanheap_guard_drain(struct spanheap *sh);

/* spanheap_guard_drain until no slot waits, another thread's drain
 * included (sleeping until it ends: a yield would never run a drainer of
 * a lower priority under a strict-priority scheduler): release-all's,
 * whose frames must all be back; returns the pages its own drains
 * unmapped. Thread context, no mm lock held. */
size_t spanheap_guard_drain_all(struct spanheap *sh);

/* The pool's reports, checks and named caches' calls: */
#include "spanheap_guard_report.h"

#endif
