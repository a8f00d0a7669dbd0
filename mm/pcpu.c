/*
 * mm/pcpu.c: dynamic per-CPU memory over the span heap (pcpu.h).
 *
 * Purpose: the kernel's alloc_percpu, for per-CPU counters and lists that
 * subsystems make at run time, where the static per-CPU area (struct cpu)
 * has no room for them.
 *
 * Representation: up to PCPU_MAX_CHUNKS chunks, each one page-aligned
 * block of the span heap of nunits units of PCPU_UNIT_BYTES (CPU i's unit
 * at base + i * PCPU_UNIT_BYTES), with two maps of its unit's
 * PCPU_GRANULES granules of PCPU_GRANULE bytes: used (the granule is
 * allocated) and start (an allocation starts there). An allocation is
 * the granules from a start bit up to the first free granule or the next
 * start bit, the same in every unit; the maps say so once for all units.
 * The struct of a chunk is an object of the span heap too.
 *
 * Algorithm: an allocation looks, chunk by chunk in the table's order,
 * for the first run of free granules of its length at its alignment
 * (first fit: per-CPU allocations are few and long-lived, so a chunk
 * rarely fragments); with none, it allocates a chunk outside the lock,
 * adds it, and looks again. The copies are zeroed after the lock is let
 * go: the range is the caller's alone by then. A free finds the chunk
 * holding the handle, checks that it is the start of a live allocation
 * of CPU 0's unit, and clears its granules; a chunk emptied so goes back
 * to the span heap, unless it is the last one (a spare against an
 * allocate-free cycle making and freeing a chunk each time). pcpu_trim
 * gives back every empty chunk, the spare included (the kernel's
 * reclaim calls it: heap_release_all, and kheap's "pcpu" shrinker).
 *
 * Invariants (pcpu_check):
 *   1. nchunks <= max_chunks <= PCPU_MAX_CHUNKS; chunks[0..nchunks) are
 *      set, each base page-aligned, no two chunks overlapping.
 *   2. A chunk's free_granules is the count of its clear used bits.
 *   3. Every start bit has its used bit set, and every run of used
 *      granules begins with one (else its granules could never be freed).
 *   4. used_granules is the sum of set used bits; nlive the sum of start
 *      bits, and nallocs - nfrees.
 *
 * Locking: pc->lock (MM_RANK_PCPU, a leaf, irqsave) for the table, the
 * maps and the counters, held for a scan of the maps at most: the span
 * heap is called, memory zeroed and lines logged only outside it.
 *
 * Limits: PCPU_UNIT_BYTES per allocation, PCPU_MAX_CHUNKS chunks (with 4
 * units, 2 MiB in all); the units of CPUs that never come online are
 * allocated all the same, as Linux's for its possible CPUs. No atomic
 * allocation (pcpu.h says why).
 *
 * Modelled on Linux's mm/percpu.c (chunks of per-CPU units, an allocation
 * map per chunk, the same offset in every unit), with one stride instead
 * of a table of unit offsets.
 */
#include "pcpu.h"

#include "spanheap.h"

bool pcpu_init(struct pcpu *pc, struct spanheap *sh, unsigned nunits)
{
	if (nunits == 0 || nunits > MM_MAX_CPUS) {
		mm_log("pcpu: %u units refused: 1 to %u (MM_MAX_CPUS)", nunits,
		       (unsigned)MM_MAX_CPUS);
		return false;
	}
	*pc = (struct pcpu){.sh = sh,
	                    .nunits = nunits,
	                    .chunk_bytes = nunits * PCPU_UNIT_BYTES,
	                    .max_chunks = PCPU_MAX_CHUNKS};
	mm_lock_init(&pc->lock, "pcpu", MM_RANK_PCPU);
	return true;
}

static bool bit(const uint64_t *map, size_t i)
{
	return map[i / 64] >> (i % 64) & 1;
}

static void set_bit(uint64_t *map, size_t i, bool on)
{
	if (on)
		map[i / 64] |= (uint64_t)1 << (i % 64);
	else
		map[i / 64] &= ~((uint64_t)1 << (i % 64));
}

/* The first set bit of map in [from, limit), or limit. */
static size_t next_set(const uint64_t *map, size_t from, size_t limit)
{
	while (from < limit) {
		uint64_t w = map[from / 64] >> (from % 64);
		if (w)
			return from + (size_t)__builtin_ctzll(w) < limit
			               ? from + (size_t)__builtin_ctzll(w)
			               : limit;
		from = (from / 64 + 1) * 64;
	}
	return limit;
}

static size_t align_up(size_t x, size_t a)
{
	return (x + a - 1) / a * a;
}

/* The first granule of a free run of n at a multiple of ag in c, or
 * PCPU_GRANULES. Locking: pc->lock held. */
static size_t fit_locked(const struct pcpu_chunk *c, size_t n, size_t ag)
{
	if (c->free_granules < n)
		return PCPU_GRANULES;
	for (size_t g = 0; g + n <= PCPU_GRANULES;) {
		size_t used = next_set(c->used, g, g + n);
		if (used == g + n)
			return g;
		g = align_up(used + 1, ag);
	}
	return PCPU_GRANULES;
}

/* Takes n granules at an alignment of ag in some chunk; the handle, or
 * NULL with no chunk that has room. Locking: pc->lock held. */
static void *take_locked(struct pcpu *pc, size_t n, size_t ag)
{
	for (unsigned i = 0; i < pc->nchunks; i++) {
		struct pcpu_chunk *c = pc->chunks[i];
		size_t g = fit_locked(c, n, ag);
		if (g == PCPU_GRANULES)
			continue;
		for (size_t k = g; k < g + n; k++)
			set_bit(c->used, k, true);
		set_bit(c->start, g, true);
		c->free_granules -= n;
		pc->used_granules += n;
		pc->nlive++;
		pc->nallocs++;
		return (void *)(c->base + g * PCPU_GRANULE);
	}
	return NULL;
}

/* Why size and align cannot be allocated, or NULL if they can. */
static const char *refusal(size_t size, size_t align)
{
	if (size == 0)
		return "size 0";
	if (size > PCPU_UNIT_BYTES)
		return "a size above PCPU_UNIT_BYTES (8192)";
	if (align & (align - 1))
		return "an alignment not a power of two";
	if (align > MM_PAGE_SIZE)
		return "an alignment above a page";
	return NULL;
}

/* A new chunk, empty, or NULL for no memory (nothing kept). Thread
 * context, no lock held. */
static struct pcpu_chunk *chunk_new(struct pcpu *pc)
{
	struct pcpu_chunk *c = spanheap_alloc(pc->sh, sizeof(*c), MM_ZERO);
	if (!c)
		return NULL;
	void *mem = spanheap_alloc_aligned(pc->sh, pc->chunk_bytes,
	                                   MM_PAGE_SIZE, 0);
	if (!mem) {
		spanheap_free(pc->sh, c);
		return NULL;
	}
	c->base = (uintptr_t)mem;
	c->free_granules = PCPU_GRANULES;
	return c;
}

static void chunk_delete(struct pcpu *pc, struct pcpu_chunk *c)
{
	spanheap_free(pc->sh, (void *)c->base);
	spanheap_free(pc->sh, c);
}

/* Adds c to the table; false (c not added) with the table full.
 * Locking: pc->lock held. */
static bool add_locked(struct pcpu *pc, struct pcpu_chunk *c)
{
	if (pc->nchunks >= pc->max_chunks)
		return false;
	pc->chunks[pc->nchunks++] = c;
	return true;
}

void *pcpu_alloc(struct pcpu *pc, size_t size, size_t align)
{
	const char *why = refusal(size, align);
	if (why) {
		mm_log("pcpu: allocation of %lu bytes aligned to %lu refused: "
		       "%s",
		       (unsigned long)size, (unsigned long)align, why);
		return NULL;
	}
	size_t n = align_up(size, PCPU_GRANULE) / PCPU_GRANULE;
	size_t ag = align > PCPU_GRANULE ? align / PCPU_GRANULE : 1;
	void *h = NULL;
	for (;;) {
		unsigned long irq = mm_lock_acquire(&pc->lock);
		h = take_locked(pc, n, ag);
		bool full = pc->nchunks >= pc->max_chunks;
		mm_lock_release(&pc->lock, irq);
		if (h || full)
			break;
		struct pcpu_chunk *c = chunk_new(pc);
		if (!c)
			return NULL;
		irq = mm_lock_acquire(&pc->lock);
		bool added = add_locked(pc, c);
		mm_lock_release(&pc->lock, irq);
		if (!added) /* others filled the table meanwhile */
			chunk_delete(pc, c);
	}
	if (!h) {
		mm_log("pcpu: allocation of %lu bytes refused: all %u chunks "
		       "(PCPU_MAX_CHUNKS) are full",
		       (unsigned long)size, pc->max_chunks);
		return NULL;
	}
	for (unsigned cpu = 0; cpu < pc->nunits; cpu++) {
		uint8_t *p = pcpu_ptr(pc, h, cpu);
		for (size_t k = 0; k < n * PCPU_GRANULE; k++)
			p[k] = 0;
	}
	return h;
}

/* The chunk holding p (any unit), or NULL. Locking: pc->lock held. */
static unsigned chunk_of_locked(struct pcpu *pc, uintptr_t p)
{
	for (unsigned i = 0; i < pc->nchunks; i++)
		if (p - pc->chunks[i]->base < pc->chunk_bytes)
			return i;
	return pc->nchunks;
}

/* Why h is no live handle of c (NULL if it is one). g: its granule.
 * Locking: pc->lock held. */
static const char *bad_handle_locked(const struct pcpu_chunk *c, uintptr_t h)
{
	if (h - c->base >= PCPU_UNIT_BYTES)
		return "a copy of another CPU than 0, not the handle";
	size_t off = h - c->base, g = off / PCPU_GRANULE;
	if (off % PCPU_GRANULE || (bit(c->used, g) && !bit(c->start, g)))
		return "a pointer into an allocation, not its start";
	if (!bit(c->used, g))
		return "freed already (a double free), or never allocated";
	return NULL;
}

/* Clears the allocation at granule g of c and counts it out; true if c
 * is empty now. Locking: pc->lock held. */
static bool release_locked(struct pcpu *pc, struct pcpu_chunk *c, size_t g)
{
	size_t k = g;
	do {
		set_bit(c->used, k, false);
		k++;
	} while (k < PCPU_GRANULES && bit(c->used, k) && !bit(c->start, k));
	set_bit(c->start, g, false);
	c->free_granules += k - g;
	pc->used_granules -= k - g;
	pc->nlive--;
	pc->nfrees++;
	return c->free_granules == PCPU_GRANULES;
}

void pcpu_free(struct pcpu *pc, void *h)
{
	if (!h)
		return;
	uintptr_t p = (uintptr_t)h;
	unsigned long irq = mm_lock_acquire(&pc->lock);
	unsigned i = chunk_of_locked(pc, p);
	if (i == pc->nchunks) {
		mm_lock_release(&pc->lock, irq);
		mm_panic("pcpu: free of %p: not from pcpu_alloc (no chunk "
		         "holds it; or freed already, and its chunk with it)",
		         h);
	}
	struct pcpu_chunk *c = pc->chunks[i], *gone = NULL;
	const char *why = bad_handle_locked(c, p);
	if (why) {
		mm_lock_release(&pc->lock, irq);
		mm_panic("pcpu: free of %p (chunk %u at %p, CPU %lu's unit, "
		         "offset %lu): %s",
		         h, i, (void *)c->base,
		         (unsigned long)((p - c->base) / PCPU_UNIT_BYTES),
		         (unsigned long)((p - c->base) % PCPU_UNIT_BYTES), why);
	}
	if (release_locked(pc, c, (p - c->base) / PCPU_GRANULE) &&
	    pc->nchunks > 1) {
		gone = c;
		pc->chunks[i] = pc->chunks[--pc->nchunks];
		pc->chunks[pc->nchunks] = NULL;
	}
	mm_lock_release(&pc->lock, irq);
	if (gone)
		chunk_delete(pc, gone);
}

/* Takes an empty chunk out of the table, or NULL if none is. Locking:
 * pc->lock held. */
static struct pcpu_chunk *take_empty_locked(struct pcpu *pc)
{
	for (unsigned i = 0; i < pc->nchunks; i++) {
		struct pcpu_chunk *c = pc->chunks[i];
		if (c->free_granules != PCPU_GRANULES)
			continue;
		pc->chunks[i] = pc->chunks[--pc->nchunks];
		pc->chunks[pc->nchunks] = NULL;
		return c;
	}
	return NULL;
}

size_t pcpu_trim(struct pcpu *pc)
{
	size_t n = 0;
	for (;;) {
		unsigned long irq = mm_lock_acquire(&pc->lock);
		struct pcpu_chunk *c = take_empty_locked(pc);
		mm_lock_release(&pc->lock, irq);
		if (!c)
			return n;
		chunk_delete(pc, c);
		n++;
	}
}

size_t pcpu_empty_chunks(struct pcpu *pc)
{
	size_t n = 0;
	unsigned long irq = mm_lock_acquire(&pc->lock);
	for (unsigned i = 0; i < pc->nchunks; i++)
		n += pc->chunks[i]->free_granules == PCPU_GRANULES;
	mm_lock_release(&pc->lock, irq);
	return n;
}

void pcpu_bad_cpu(const struct pcpu *pc, const void *h, unsigned cpu)
{
	mm_panic("pcpu: copy of %p for CPU %u: only CPUs 0 to %u have one "
	         "(the allocator's units)",
	         h, cpu, pc->nunits - 1);
}

void pcpu_stats(struct pcpu *pc, struct pcpu_stats *out)
{
	unsigned long irq = mm_lock_acquire(&pc->lock);
	*out = (struct pcpu_stats){
	        .nunits = pc->nunits,
	        .nchunks = pc->nchunks,
	        .max_chunks = pc->max_chunks,
	        .unit_bytes = PCPU_UNIT_BYTES,
	        .chunk_bytes = pc->chunk_bytes,
	        .used_bytes = pc->used_granules * PCPU_GRANULE,
	        .free_bytes =
	                (pc->nchunks * PCPU_GRANULES - pc->used_granules) *
	                PCPU_GRANULE,
	        .nlive = pc->nlive,
	        .nallocs = pc->nallocs,
	        .nfrees = pc->nfrees};
	mm_lock_release(&pc->lock, irq);
}
