/*
 * mm/spanheap_depot.c: poison mode's stack depot (Linux's stackdepot):
 * each distinct stack its records name is kept once, and a record holds
 * its 32-bit handle.
 *
 * Purpose: poison mode records who last allocated and who last freed
 * every small object (spanheap_track.c). With the stack in the record,
 * two records took 160 bytes an object, ten times a 16-byte object, and
 * a 16-byte class's span 21 pages of table beside its 2. A kernel makes
 * its objects from a few thousand call sites, so the stacks repeat: kept
 * once, a record is 16 bytes (its time, CPU and handle), and an object's
 * two 32.
 *
 * Representation (struct spanheap_depot, spanheap_types.h): stacks in
 * chunks of SPANHEAP_DEPOT_CHUNK_PAGES pages from the span heap's metadata
 * heap (spanheap_meta.c), made as
 * they are needed and kept for the heap's life, up to
 * SPANHEAP_DEPOT_CHUNKS; handle h (from 1) is entry (h - 1) % PER_CHUNK of
 * chunk (h - 1) / PER_CHUNK. A hash table of SPANHEAP_DEPOT_BUCKETS heads
 * (handles), made by spanheap_init, chains the entries through their
 * next handles. Handle 0 is "no stack"; SPANHEAP_DEPOT_LOST a stack that
 * was not kept (the depot full, or no memory for a chunk).
 *
 * Algorithm: a save hashes the stack and walks its bucket's chain; a
 * stack found gives its handle. Else it makes the next handle's chunk if
 * no one has (a compare-and-swap of the chunk's pointer: the loser gives
 * its pages back), then claims the handle (a compare-and-swap of the
 * count: a save with no memory claims none), fills the entry, and
 * links it at the bucket's head with a compare-and-swap, release. If the
 * head moved meanwhile, the entries pushed since are compared first: the
 * same stack saved at once by two CPUs is kept once, the later claim's
 * entry left unused.
 *
 * Locking: none. Entries are written once, before they are linked (or,
 * left unused, never read); chunks and the bucket array are never freed
 * while the heap lives. Any context but NMI: a chunk comes from the page
 * heap with MHEAP_ATOMIC, which never sleeps.
 *
 * Limits: stacks are never forgotten. SPANHEAP_DEPOT_CHUNKS chunks hold
 * 52 thousand stacks; past them records keep no stack (said once, apart
 * from a shortage of memory for a chunk, also said once).
 */
#include "spanheap_internal.h"

#define PER_CHUNK                                               \
	((uint32_t)(SPANHEAP_DEPOT_CHUNK_PAGES * MM_PAGE_SIZE / \
	            sizeof(struct spanheap_depot_stack)))
#define DEPOT_MAX (PER_CHUNK * SPANHEAP_DEPOT_CHUNKS)
#define BUCKET_PAGES                                                      \
	((SPANHEAP_DEPOT_BUCKETS * sizeof(uint32_t) + MM_PAGE_SIZE - 1) / \
	 MM_PAGE_SIZE)

static uint32_t stack_hash(const uintptr_t *pc, uint32_t npcs)
{
	uint64_t h = npcs;
	for (uint32_t i = 0; i < npcs; i++)
		h = (h ^ pc[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ h >> 32);
}

/* Entry h (1 to DEPOT_MAX) if its chunk is made, else NULL. */
static struct spanheap_depot_stack *entry(const struct spanheap_depot *d,
                                          uint32_t h)
{
	struct spanheap_depot_stack *c = atomic_load_explicit(
	        &d->chunks[(h - 1) / PER_CHUNK], memory_order_acquire);
	return c ? &c[(h - 1) % PER_CHUNK] : NULL;
}

static bool same(const struct spanheap_depot_stack *e, uint32_t hash,
                 const uintptr_t *pc, uint32_t npcs)
{
	if (e->hash != hash || e->npcs != npcs)
		return false;
	for (uint32_t i = 0; i < npcs; i++)
		if (e->pc[i] != pc[i])
			return false;
	return true;
}

/* The handle of the stack in the chain from h up to (not including)
 * stop, or 0. */
static uint32_t chain_find(const struct spanheap_depot *d, uint32_t h,
                           uint32_t stop, uint32_t hash, const uintptr_t *pc,
                           uint32_t npcs)
{
	for (; h && h != stop; h = entry(d, h)->next)
		if (same(entry(d, h), hash, pc, npcs))
			return h;
	return 0;
}

size_t spanheap_depot_max_pages(void)
{
	return BUCKET_PAGES +
	       (size_t)SPANHEAP_DEPOT_CHUNKS * SPANHEAP_DEPOT_CHUNK_PAGES;
}

bool spanheap_depot_init(struct spanheap *sh)
{
	/* Poison mode's records, and the guarded pool's if the port gives
	 * stacks. */
	if (!sh->track && !(sh->guard.base && spanheap_track_probe()))
		return true;
	struct spanheap_depot *d = &sh->depot;
	d->buckets = mheap_alloc_pages(&sh->meta, BUCKET_PAGES, MHEAP_ZERO);
	if (!d->buckets)
		return false;
	atomic_store_explicit(&d->pages, BUCKET_PAGES, memory_order_relaxed);
	return true;
}

/* Makes the chunk of handle h if no one has; false if there is no
 * memory for it. */
static bool chunk_make(struct spanheap_depot *d, struct mheap *heap, uint32_t h,
                       bool no_grow)
{
	_Atomic(struct spanheap_depot_stack *) *at =
	        &d->chunks[(h - 1) / PER_CHUNK];
	if (atomic_load_explicit(at, memory_order_acquire))
		return true;
	struct spanheap_depot_stack *c =
	        mheap_alloc_pages(heap, SPANHEAP_DEPOT_CHUNK_PAGES,
	                          MHEAP_ATOMIC | (no_grow ? MHEAP_NO_GROW : 0));
	if (!c)
		return false;
	struct spanheap_depot_stack *none = NULL;
	if (atomic_compare_exchange_strong_explicit(
	            at, &none, c, memory_order_acq_rel, memory_order_acquire))
		atomic_fetch_add_explicit(&d->pages, SPANHEAP_DEPOT_CHUNK_PAGES,
		                          memory_order_relaxed);
	else /* as the span heap's own pages go back: free, no mark */
		spanheap_pages_put(heap, c, SPANHEAP_DEPOT_CHUNK_PAGES);
	return true;
}

/* Why a stack was not kept: bits of d->said. */
enum depot_loss {
	LOSS_NO_CHUNK = 1u << 0, /* for now: room may come */
	LOSS_FULL = 1u << 1,     /* for the heap's life */
};

/* A stack not kept: counted, and each reason said the first time. Until
 * a review one "first time" served both, and a depot that had once been
 * short of a chunk filled up unsaid, its last line promising room. */
static uint32_t lost(struct spanheap_depot *d, enum depot_loss why)
{
	atomic_fetch_add_explicit(&d->lost, 1, memory_order_relaxed);
	if (atomic_fetch_or_explicit(&d->said, why, memory_order_relaxed) & why)
		return SPANHEAP_DEPOT_LOST;
	if (why == LOSS_FULL)
		mm_log("spanheap: stack depot: full (%u stacks); records keep "
		       "no new stack for the heap's life",
		       DEPOT_MAX);
	else
		mm_log("spanheap: stack depot: no memory for a chunk; records "
		       "keep no stack until there is room");
	return SPANHEAP_DEPOT_LOST;
}

/* Claims the next handle, its chunk made first, so that a save that
 * finds no memory claims none (a long shortage would use them all up).
 * 0 when the depot is full or has no memory, saying which in *why. */
static uint32_t claim(struct spanheap_depot *d, struct mheap *heap,
                      bool no_grow, enum depot_loss *why)
{
	uint32_t n = atomic_load_explicit(&d->next, memory_order_relaxed);
	do {
		if (n >= DEPOT_MAX) {
			*why = LOSS_FULL;
			return 0;
		}
		if (!chunk_make(d, heap, n + 1, no_grow)) {
			*why = LOSS_NO_CHUNK;
			return 0;
		}
	} while (!atomic_compare_exchange_weak_explicit(&d->next, &n, n + 1,
	                                                memory_order_relaxed,
	                                                memory_order_relaxed));
	return n + 1;
}

uint32_t spanheap_depot_save(struct spanheap_depot *d, struct mheap *heap,
                             const uintptr_t *pc, uint32_t npcs, bool no_grow)
{
	if (npcs == 0 || !d->buckets)
		return 0;
	if (npcs > SPANHEAP_TRACK_PCS)
		npcs = SPANHEAP_TRACK_PCS;
	uint32_t hash = stack_hash(pc, npcs);
	_Atomic uint32_t *b = &d->buckets[hash % SPANHEAP_DEPOT_BUCKETS];
	uint32_t head = atomic_load_explicit(b, memory_order_acquire);
	uint32_t h = chain_find(d, head, 0, hash, pc, npcs);
	if (h)
		return h;
	enum depot_loss why = LOSS_FULL;
	h = claim(d, heap, no_grow, &why);
	if (!h)
		return lost(d, why);
	struct spanheap_depot_stack *e = entry(d, h);
	e->hash = hash;
	e->npcs = npcs;
	for (uint32_t i = 0; i < npcs; i++)
		e->pc[i] = pc[i];
	for (;;) {
		e->next = head;
		uint32_t was = head;
		if (atomic_compare_exchange_weak_explicit(b, &head, h,
		                                          memory_order_release,
		                                          memory_order_acquire))
			return h;
		/* Pushed since: the same stack, by another CPU? */
		uint32_t dup = chain_find(d, head, was, hash, pc, npcs);
		if (dup)
			return dup; /* h left unused: never given back, as a
			             * claim after it would write its entry
			             * while this thread's writes race with it
			             * (TSan) */
	}
}

uint32_t spanheap_depot_get(const struct spanheap_depot *d, uint32_t h,
                            uintptr_t *pc)
{
	if (h == 0 || h == SPANHEAP_DEPOT_LOST || h > DEPOT_MAX)
		return 0;
	const struct spanheap_depot_stack *e = entry(d, h);
	if (!e)
		return 0;
	uint32_t n = e->npcs;
	if (n > SPANHEAP_TRACK_PCS)
		n = SPANHEAP_TRACK_PCS;
	for (uint32_t i = 0; i < n; i++)
		pc[i] = e->pc[i];
	return n;
}

void spanheap_depot_stats(const struct spanheap_depot *d,
                          struct spanheap_stats *st)
{
	uint32_t n = atomic_load_explicit(&d->next, memory_order_relaxed);
	st->depot_stacks = n < DEPOT_MAX ? n : DEPOT_MAX;
	st->depot_pages = atomic_load_explicit(&d->pages, memory_order_relaxed);
	st->depot_lost = atomic_load_explicit(&d->lost, memory_order_relaxed);
}
