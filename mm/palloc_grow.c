/*
 * mm/palloc_grow.c: palloc's metadata region, initialisation and growth.
 *
 * Purpose: give the allocator metadata whose cost follows the grown heap,
 * not the arena, and add chunks to the heap without mapping memory under
 * the owner's lock.
 *
 * Representation: one region, laid out at init from the arena's size, each
 * part 64-byte aligned (a block of 8 summaries, a chunk's bitmap) and
 * packed after the one before, so that a small heap's first pages hold
 * several parts' first blocks: a page is mapped when any block on it is
 * needed, which maps the other parts' blocks there too, early and
 * harmlessly. Until review rv107 each part began a page: a heap that grew
 * one chunk mapped (and wrote) a page a part, 9 for a 64 GiB arena, 8 for
 * 8 GiB, where now 6 and 4 (palloc_grow.one_chunk_maps_a_page_a_part_it_
 * touches); the hosted malloc's two heaps took 28 KiB less resident
 * (RssAnon of a one-allocation program 256 kB to 228):
 *
 *   mapped     1 bit per page of the region (reserved mode only)
 *   grown      1 bit per chunk: the chunk belongs to the heap
 *   summary 0  the root level, root_entries summaries
 *   summary l  root_entries << 3l summaries, l = 1 .. levels - 1
 *   alloc      64 bytes per chunk
 *   scav       64 bytes per chunk (absent with PALLOC_NO_SCAV)
 *
 * Two modes. Reserved (the kernel heap): init reserves the region with
 * mm_port_reserve and maps only the pages of the mapped bitmap, the grown
 * bitmap and the root level, the first three parts, in one mm_port_map
 * (all or nothing, so a failed init has nothing mapped and gives the whole
 * reservation back): for a 512 GiB arena that is 9 pages (until review
 * rv107 10, each part beginning a page), everything else waits for
 * growth. Supplied (the frame pool): the caller hands over
 * palloc_metadata_bytes() of mapped memory (which leaves out the mapped
 * bitmap); init clears the grown bitmap and the summaries.
 *
 * Algorithm (growth in two steps):
 *   prepare  (no lock held) For the chunks [c0, c1): at each level below the
 *            root the summaries that cover them, and their bitmaps. Map
 *            every page of those ranges not mapped yet, run by run, then set
 *            their bits in the mapped bitmap. A block of 8 summaries is 64
 *            aligned bytes, so it never straddles pages: mapping the page of
 *            one summary maps its whole block, which is what find and
 *            update read.
 *   commit   (owner's lock) Check that prepare covered the range, mark each
 *            new chunk grown, all free and all scavenged, re-summarise the
 *            range upward and lower the search hint to the first new page.
 *
 * Invariants: a grown chunk's metadata pages are all mapped
 * (palloc_check_locked verifies it through palloc_chunk_meta_mapped);
 * mapped bits are only ever set.
 * Locking: prepare runs without the owner's lock (asserted) and its callers
 * serialise it (checked with an atomic flag); commit needs the owner's lock.
 * The mapped bitmap is atomic because commit reads it under the owner's
 * lock while another prepare may be adding bits.
 * Limits: metadata is never unmapped (there is no shrink); a failed init
 * gives its reservation back (mm_port_unreserve), nothing of it mapped.
 * Modelled on the Go runtime's pageAlloc.grow and sysGrow (mpagealloc.go).
 */
#include "palloc_internal.h"

#include <stdatomic.h>

struct layout {
	unsigned levels;
	size_t chunks, root_entries;
	size_t grown_off, sum_off[PALLOC_MAX_LEVELS], alloc_off, scav_off;
	size_t mapped_bytes, total; /* the mapped bitmap's, at 0: 0 when not
	                             * reserved */
};

static size_t page_round(size_t n)
{
	return (n + MM_PAGE_SIZE - 1) & ~(size_t)(MM_PAGE_SIZE - 1);
}

/* n rounded up to a block of 8 summaries (64 bytes, a cache line): the
 * parts' alignment, so that no block or chunk bitmap straddles a page. */
static size_t block_round(size_t n)
{
	return (n + 63) & ~(size_t)63;
}

static void layout(struct layout *lo, size_t arena_bytes, unsigned flags,
                   bool reserved)
{
	lo->chunks = arena_bytes >> PALLOC_CHUNK_SHIFT;
	lo->levels = 1;
	while (lo->levels < PALLOC_MAX_LEVELS &&
	       lo->chunks > (size_t)1 << (PALLOC_LEVEL_BITS * lo->levels))
		lo->levels++;
	unsigned shift = PALLOC_LEVEL_BITS * (lo->levels - 1);
	lo->root_entries = (lo->chunks + ((size_t)1 << shift) - 1) >> shift;
	size_t off = 0;
	lo->grown_off = off;
	off += block_round((lo->chunks + 63) / 64 * 8);
	for (unsigned l = 0; l < lo->levels; l++) {
		lo->sum_off[l] = off;
		off += block_round(
		        (lo->root_entries << (PALLOC_LEVEL_BITS * l)) *
		        sizeof(palloc_sum_t));
	}
	lo->alloc_off = off;
	off += lo->chunks * sizeof(struct pallocbits);
	lo->scav_off = off;
	if (!(flags & PALLOC_NO_SCAV))
		off += lo->chunks * sizeof(struct pallocbits);
	lo->mapped_bytes = 0;
	if (reserved) {
		/* A bit for every page of the metadata, the bitmap's own
		 * too (it goes first, so that init's parts are one range):
		 * sized again until the pages it counts include its own. */
		size_t bytes = 0, need;
		while ((need = block_round(
		                (page_round(off + bytes) / MM_PAGE_SIZE + 63) /
		                64 * 8)) > bytes)
			bytes = need;
		lo->mapped_bytes = bytes;
		lo->grown_off += bytes;
		for (unsigned l = 0; l < lo->levels; l++)
			lo->sum_off[l] += bytes;
		lo->alloc_off += bytes;
		lo->scav_off += bytes;
		off += bytes;
	}
	lo->total = page_round(off);
}

static const char *config_problem(const struct palloc_config *cfg)
{
	if (cfg->arena_base & (PALLOC_CHUNK_BYTES - 1))
		return "arena base not chunk aligned (2 MiB)";
	if (cfg->arena_bytes == 0 ||
	    cfg->arena_bytes & (PALLOC_CHUNK_BYTES - 1))
		return "arena size not a positive multiple of 2 MiB";
	if (cfg->arena_bytes > PALLOC_MAX_ARENA_BYTES)
		return "arena larger than PALLOC_MAX_ARENA_BYTES";
	if (cfg->arena_bytes > UINTPTR_MAX - cfg->arena_base)
		return "arena wraps around the address space";
	if (cfg->flags & ~(unsigned)PALLOC_NO_SCAV)
		return "unknown flags";
	if ((uintptr_t)cfg->metadata & (MM_PAGE_SIZE - 1))
		return "metadata not page aligned";
	return NULL;
}

/* The layout's total for an arena of arena_bytes, reserved (the mapped
 * bitmap too) or supplied; 0 if the arena is invalid. */
static size_t layout_total(size_t arena_bytes, unsigned flags, bool reserved)
{
	struct palloc_config cfg = {.arena_bytes = arena_bytes, .flags = flags};
	struct layout lo;
	if (config_problem(&cfg))
		return 0;
	layout(&lo, arena_bytes, flags, reserved);
	return lo.total;
}

size_t palloc_metadata_bytes(size_t arena_bytes, unsigned flags)
{
	return layout_total(arena_bytes, flags, false);
}

size_t palloc_reserved_bytes(size_t arena_bytes, unsigned flags)
{
	return layout_total(arena_bytes, flags, true);
}

static bool page_mapped(const struct palloc *p, size_t pg)
{
	return (atomic_load_explicit(&p->mapped[pg / 64],
	                             memory_order_acquire) >>
	        (pg % 64)) &
	       1;
}

bool palloc_meta_mapped(const struct palloc *p, const void *addr, size_t nbytes)
{
	if (!p->mapped)
		return true;
	size_t off = (uintptr_t)addr - p->meta_base;
	for (size_t pg = off / MM_PAGE_SIZE;
	     pg < page_round(off + nbytes) / MM_PAGE_SIZE; pg++)
		if (!page_mapped(p, pg))
			return false;
	return true;
}

/* Maps the unmapped pages under [addr, addr + nbytes), run by run. */
static bool meta_map(const struct palloc *p, const void *addr, size_t nbytes)
{
	size_t off = (uintptr_t)addr - p->meta_base;
	size_t pg = off / MM_PAGE_SIZE,
	       end = page_round(off + nbytes) / MM_PAGE_SIZE;
	while (pg < end) {
		if (page_mapped(p, pg)) {
			pg++;
			continue;
		}
		size_t run = pg;
		while (run < end && !page_mapped(p, run))
			run++;
		if (!mm_port_map((void *)(p->meta_base + pg * MM_PAGE_SIZE),
		                 (run - pg) * MM_PAGE_SIZE))
			return false;
		for (; pg < run; pg++)
			atomic_fetch_or_explicit(&p->mapped[pg / 64],
			                         1ull << (pg % 64),
			                         memory_order_release);
	}
	return true;
}

static void clear_words(uint64_t *w, size_t nbytes)
{
	for (size_t i = 0; i < nbytes / sizeof(*w); i++)
		w[i] = 0;
}

/* Points p's parts into the region at meta; maps or clears what init must.
 */
static bool place(struct palloc *p, const struct layout *lo, uintptr_t meta,
                  bool reserved)
{
	p->meta_base = meta;
	p->meta_bytes = lo->total;
	p->grown = (uint64_t *)(meta + lo->grown_off);
	for (unsigned l = 0; l < lo->levels; l++)
		p->summary[l] = (palloc_sum_t *)(meta + lo->sum_off[l]);
	p->alloc = (struct pallocbits *)(meta + lo->alloc_off);
	p->scav = p->flags & PALLOC_NO_SCAV
	                  ? NULL
	                  : (struct pallocbits *)(meta + lo->scav_off);
	if (!reserved) {
		clear_words(p->grown, lo->sum_off[0] - lo->grown_off);
		clear_words(p->summary[0], lo->alloc_off - lo->sum_off[0]);
		return true;
	}
	/* The mapped bitmap, the grown bitmap and the root level: one map,
	 * all or nothing, so a failed init leaves nothing mapped to keep
	 * (until a review they were three, and an init that failed at the
	 * second or third kept its reservation and the pages mapped). */
	size_t init_bytes = page_round(lo->sum_off[0] +
	                               lo->root_entries * sizeof(palloc_sum_t));
	p->mapped = (_Atomic uint64_t *)meta;
	if (!mm_port_map((void *)meta, init_bytes))
		return false;
	for (size_t pg = 0; pg < init_bytes / MM_PAGE_SIZE; pg++)
		atomic_fetch_or_explicit(&p->mapped[pg / 64], 1ull << (pg % 64),
		                         memory_order_relaxed);
	return true;
}

bool palloc_init(struct palloc *p, const struct palloc_config *cfg)
{
	const char *why = config_problem(cfg);
	struct layout lo;
	bool reserved = cfg->metadata == NULL;
	*p = (struct palloc){0};
	if (!why) {
		layout(&lo, cfg->arena_bytes, cfg->flags, reserved);
		p->arena_base = cfg->arena_base;
		p->arena_limit = cfg->arena_base + cfg->arena_bytes;
		p->arena_chunks = lo.chunks;
		p->arena_pages = lo.chunks * PALLOC_CHUNK_PAGES;
		p->flags = cfg->flags;
		p->levels = lo.levels;
		p->root_entries = lo.root_entries;
		p->owner_lock = cfg->owner_lock;
		p->search_pi = p->arena_pages; /* nothing grown, nothing free */
		void *meta = cfg->metadata;
		if (reserved)
			meta = mm_port_reserve(lo.total, MM_PAGE_SIZE);
		if (meta == NULL)
			why = "no address space for metadata";
		else if (!place(p, &lo, (uintptr_t)meta, reserved))
			why = "no memory for metadata";
		/* Nothing mapped in it (place's one map failed): the
		 * reservation goes back, for a retry. */
		if (why && reserved && meta)
			mm_port_unreserve(meta, lo.total);
	}
	if (why) {
		mm_log("palloc: init of arena [0x%lx, 0x%lx): %s",
		       cfg->arena_base,
		       palloc_range_limit(cfg->arena_base,
		                          cfg->arena_bytes >> MM_PAGE_SHIFT),
		       why);
		/* No arena, no pointer into the region given back: a grow
		 * then is refused, where it mapped pages there (review). */
		*p = (struct palloc){0};
		return false;
	}
	return true;
}

static const char *grow_problem(const struct palloc *p, uintptr_t base,
                                size_t nbytes)
{
	if (p->arena_chunks == 0)
		return "no arena (palloc_init failed or was not called)";
	if (base & (PALLOC_CHUNK_BYTES - 1))
		return "base not chunk aligned (2 MiB)";
	if (nbytes == 0 || nbytes & (PALLOC_CHUNK_BYTES - 1))
		return "size not a positive multiple of 2 MiB";
	if (base < p->arena_base || base >= p->arena_limit ||
	    nbytes > p->arena_limit - base)
		return "outside the arena";
	return NULL;
}

/* Calls fn on each metadata range the chunks [c0, c1) need beyond init's;
 * stops at the first false. */
static bool each_meta_range(const struct palloc *p, size_t c0, size_t c1,
                            bool (*fn)(const struct palloc *, const void *,
                                       size_t))
{
	for (unsigned l = 1; l < p->levels; l++) {
		unsigned shift = palloc_level_shift(p, l);
		size_t lo = c0 >> shift, hi = ((c1 - 1) >> shift) + 1;
		if (!fn(p, &p->summary[l][lo],
		        (hi - lo) * sizeof(palloc_sum_t)))
			return false;
	}
	size_t n = (c1 - c0) * sizeof(struct pallocbits);
	return fn(p, &p->alloc[c0], n) && (!p->scav || fn(p, &p->scav[c0], n));
}

bool palloc_chunk_meta_mapped(const struct palloc *p, size_t c)
{
	return each_meta_range(p, c, c + 1, palloc_meta_mapped);
}

bool palloc_grow_prepare(struct palloc *p, uintptr_t base, size_t nbytes)
{
	const char *why = grow_problem(p, base, nbytes);
	if (p->owner_lock && mm_lock_held(p->owner_lock))
		mm_panic("palloc: grow_prepare called with the owner's lock "
		         "held");
	if (!why && p->mapped) {
		size_t c0 = (base - p->arena_base) >> PALLOC_CHUNK_SHIFT;
		size_t c1 = c0 + (nbytes >> PALLOC_CHUNK_SHIFT);
		if (atomic_exchange(&p->preparing, 1))
			mm_panic("palloc: concurrent grow_prepare calls (its "
			         "callers must serialise them)");
		if (!each_meta_range(p, c0, c1, meta_map))
			why = "no memory for metadata";
		atomic_store(&p->preparing, 0);
	}
	if (why) {
		mm_log("palloc: grow [0x%lx, 0x%lx): %s; arena [0x%lx, 0x%lx)",
		       base, palloc_range_limit(base, nbytes >> MM_PAGE_SHIFT),
		       why, p->arena_base, p->arena_limit);
		return false;
	}
	return true;
}

static void init_chunk(struct palloc *p, size_t c)
{
	p->grown[c / 64] |= 1ull << (c % 64);
	for (unsigned w = 0; w < PALLOCBITS_WORDS; w++) {
		p->alloc[c].w[w] = 0;
		if (p->scav)
			p->scav[c].w[w] = ~0ull;
	}
	p->stats.grown_pages += PALLOC_CHUNK_PAGES;
	palloc_free_pages_add(p, PALLOC_CHUNK_PAGES);
	if (p->scav)
		p->stats.scav_pages += PALLOC_CHUNK_PAGES;
	if (p->arena_base == 0 && c == 0) { /* invariant 6 of palloc.c */
		p->alloc[0].w[0] = 1;
		palloc_free_pages_add(p, -(size_t)1);
		if (p->scav) {
			p->scav[0].w[0] &= ~1ull;
			p->stats.scav_pages--;
		}
	}
}

bool palloc_grow_commit_locked(struct palloc *p, uintptr_t base, size_t nbytes)
{
	palloc_assert_locked(p, "palloc_grow_commit_locked");
	p->refusal.op = NULL;
	const char *why = grow_problem(p, base, nbytes);
	size_t c0 = 0, c1 = 0;
	if (!why) {
		c0 = (base - p->arena_base) >> PALLOC_CHUNK_SHIFT;
		c1 = c0 + (nbytes >> PALLOC_CHUNK_SHIFT);
		if (!each_meta_range(p, c0, c1, palloc_meta_mapped))
			why = "metadata not prepared (call "
			      "palloc_grow_prepare first)";
	}
	if (why) {
		palloc_refuse(p, "grow", why, base,
		              palloc_range_limit(base, nbytes >> MM_PAGE_SHIFT),
		              nbytes >> MM_PAGE_SHIFT);
		return false;
	}
	size_t first = PALLOC_NONE;
	for (size_t c = c0; c < c1; c++) {
		if (palloc_chunk_grown(p, c))
			continue;
		init_chunk(p, c);
		if (first == PALLOC_NONE)
			first = c;
	}
	if (first == PALLOC_NONE)
		return true;
	palloc_update_locked(p, c0 * PALLOC_CHUNK_PAGES,
	                     (c1 - c0) * PALLOC_CHUNK_PAGES, 0);
	if (first * PALLOC_CHUNK_PAGES < p->search_pi)
		p->search_pi = first * PALLOC_CHUNK_PAGES;
	return true;
}

bool palloc_grow(struct palloc *p, uintptr_t base, size_t nbytes)
{
	struct palloc_refusal r;
	if (!palloc_grow_prepare(p, base, nbytes))
		return false;
	unsigned long irq = p->owner_lock ? mm_lock_acquire(p->owner_lock) : 0;
	bool ok = palloc_grow_commit_locked(p, base, nbytes);
	bool refused = palloc_take_refusal_locked(p, &r);
	if (p->owner_lock)
		mm_lock_release(p->owner_lock, irq);
	if (refused)
		palloc_log_refusal(&r);
	return ok;
}
