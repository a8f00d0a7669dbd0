/*
 * mm/spanheap_meta.c: the span heap's metadata heap: a page heap of its
 * own, over an arena reserved apart from the object heap's, for the span
 * heap's own structures.
 *
 * Purpose: keep the heap's metadata out of an overrun's reach. A write
 * past the last page of a span or a large object reaches the next pages
 * of the object arena; until a review those could be the heap's own (a
 * CPU's magazine slab, whose slots are handed out as they are, span
 * structs, the all-spans array, poison mode's side tables, the stack
 * depot), and a 600-byte copy into the last 64-byte object of a span
 * followed by a slab made the next 16-byte allocation return an address
 * of the writer's choosing. A kernel developer expects heap metadata to
 * live apart from objects: Linux's struct page array, the Go runtime's
 * mspans from persistentalloc, off the heap's arena.
 *
 * It holds the heap's users' metadata too, in blocks that share pages
 * (spanheap_meta_blocks.c): a named cache's struct, the caches' counter
 * area, a pool's reserve array (until a review objects beside others of
 * their class, which an overrun rewrote).
 *
 * Representation: sh->meta, a struct mheap like sh->heap, over an arena
 * reserved by its own mm_port_reserve (so in another address range: the
 * kernel's region hands reservations out by a bump pointer, after the
 * object heap's arena, span table and metadata; the POSIX ports put a
 * PROT_NONE page after every reservation). Its runs are marked
 * MHEAP_SPAN_PAGES in its own span table, which no object lookup reads
 * (a run of users' blocks by its header's address instead, which
 * spanheap_meta_free looks up).
 *
 * Algorithm, the arena's size (spanheap_meta_arena_bytes): what the
 * object arena can make the heap need at most, plus a quarter for the
 * holes between runs of different sizes (side tables of different
 * classes come and go; the structs' pages and the slabs stay). Per page
 * of the object arena, a span of one page (the smallest; a larger span
 * has the same for more pages) has a struct and an entry of the all-spans
 * array, which a growth copies into an array twice the size while a
 * snapshot may keep the one before (three entries); in poison mode, its
 * side table, the most pages per page of span over the classes (3 a page
 * for 16-byte objects with callers' records, half a page without: the
 * heap keeps them if the port gives callers, spanheap_track_probe).
 * Once: every CPU's magazine slab (8 pages; none in poison mode, which
 * makes no slab), every named cache's struct and the caches' counters
 * (12 pages: the cache slots bound them) and, if the heap keeps records,
 * the stack depot whole (4 MiB). Over the kernel's 64 GiB arena
 * that is about 7 GiB of address space (in poison mode, about 250 GiB),
 * in a 2 TiB region; over a host test's 1 GiB, 110 MiB (4 GiB); beside
 * the hosted malloc's 64 GiB, whose port gives no callers, 7 GiB (47
 * GiB). Address space costs no frame until the heap grows into it; the
 * span table and palloc's metadata reserved for it (a 512th of it and
 * less) grow as it does. Short of address space (a malloc under ulimit
 * -v), the set-up halves it down to SPANHEAP_META_MIN_BYTES: the heap then
 * runs out of metadata, and so fails its allocations, sooner.
 *
 * Its configuration is the object heap's (goal, budget, low watermark,
 * flags: debug_pagealloc unmaps its freed side tables too), but for the
 * reserve for atomic callers: two of the largest atomic requests the span
 * heap makes of it (a magazine slab or a depot chunk), so that two CPUs'
 * first frees in interrupt handlers get their slabs without waiting for a
 * thread's growth; none if the object heap keeps none (a configuration
 * that uses up every page).
 *
 * Invariants: every run of sh->meta is the span heap's own structure or
 * a run of its users' blocks; no object page lies in its arena.
 *
 * Locking: sh->meta.lock (MM_RANK_HEAP, a leaf) guards its pages only:
 * the span heap calls the metadata heap as it called the object heap for
 * its structures, with no mm lock held, and never under sh->heap's lock
 * (some calls pinned: a CPU's slab, and a depot chunk for a free's record
 * in poison mode, spanheap_mag_full's path, ask with MHEAP_ATOMIC; a
 * review found no depot chunk asked for under a class lock, as this said
 * until then); the scavenger thread and a scavenge for frames
 * take one heap's lock at a time, so the two heap locks are never
 * nested.
 *
 * Scavenging: it has no scavenger thread of its own (a start of one is
 * refused: its frees would not wake it). The object heap's serves it
 * (sh->heap->scav_also, mheap_scav.c "served"): its free backed pages (side
 * tables of dead spans, replaced all-spans arrays, slabs of torn-down CPUs) are
 * given back by its own goal, its large frees and its atomic callers' refill
 * requests wake that thread, within the object heap's CPU budget. An allocation
 * short of frames scavenges the other heap too (the two are each other's
 * frames_peer: mheap_alloc.c, scavenge_for_frames), and spanheap_release_all
 * both. Until a review nothing else did: its free pages stayed backed, and a
 * refill request woke no thread.
 *
 * Limits: only while the object heap's scavenger runs (the owner starts
 * it: the kernel's heap_init, the hosted malloc's background threads);
 * without it, as for the object heap, its free pages stay backed until a
 * release-all or a shortage of frames, and its reserve is refilled by the
 * next thread allocation of metadata. Its arena is fixed: past its size,
 * metadata allocations fail as out of memory. Its size counts the named
 * caches' blocks but not the pools' arrays (8 bytes a reserved element,
 * bounded only by the objects the arena holds): the quarter for holes is
 * their room, and a pool past it is refused for want of memory (until a
 * review neither was counted, and the slabs counted in poison mode hid a
 * cut of the quarter or of the depot's pages from every test:
 * spanheap_meta_size.a_full_poison_arena_leaves_its_margins; the rounding
 * to chunks hid a lost term paid once, or one counted in the wrong mode,
 * until spanheap_meta_size.the_sizing_counts_each_once_term_in_its_modes
 * compared the unrounded sum, spanheap_meta_need_bytes). A set-up
 * that fails after the metadata heap was made (no memory for the all-spans
 * array or the stack depot) gives its pages back but keeps its reservations, as
 * palloc keeps one it mapped metadata in (port.h, mm_port_unreserve: no hook
 * unmaps the heap's metadata and page tables): sh->meta still names them,
 * and the next spanheap_init of sh keeps the heap (its zeroing stops
 * before it) and uses it again, as it is, sized by the first try (until a
 * review each retry reserved another and lost the one before: the hosted
 * malloc retries its set-up at every call until one works). An owner that
 * will not retry may give them back and zero sh->meta (the host tests).
 * The guarded pool's reservation, made before it, goes back; a port that
 * gives back only the latest (the kernel's, whose set-up failing panics)
 * keeps that too.
 */
#include "objcache.h"
#include "spanheap_internal.h"

/* Bytes of metadata a page of the object arena may need, at most (above:
 * a one-page span's struct, three array entries, its side table, with
 * callers' records if the heap will keep them). */
static size_t per_page_bytes(const struct spanheap_config *cfg, bool track)
{
	size_t side = 0;
	if (cfg->poison)
		for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
			size_t np = sizeclass_info[cls].npages;
			size_t t = spanheap_redzone_pages_of(cls, track) *
			           MM_PAGE_SIZE;
			if ((t + np - 1) / np > side)
				side = (t + np - 1) / np;
		}
	return sizeof(struct mspan) + 3 * sizeof(void *) + side;
}

/* The pages of the users' metadata whose most is known: every named
 * cache's struct and the caches' counter area (objcache.c: a row of
 * SPANHEAP_OBJCACHE_SLOTS counters a CPU). A pool's reserve array has
 * no such bound (8 bytes a reserved element, as many as the arena holds
 * objects): the pools share the quarter with the holes ("Limits"). */
static uint64_t users_pages(void)
{
	return spanheap_meta_blocks_pages(SPANHEAP_OBJCACHE_SLOTS,
	                                  sizeof(struct objcache)) +
	       spanheap_meta_blocks_pages(1, (size_t)MM_MAX_CPUS *
	                                             SPANHEAP_OBJCACHE_SLOTS *
	                                             sizeof(int64_t));
}

uint64_t spanheap_meta_need_bytes(const struct spanheap_config *cfg,
                                  size_t heap_arena_bytes)
{
	/* No page heap's arena is larger (mheap_init): the product below
	 * cannot overflow. */
	if (heap_arena_bytes > PALLOC_MAX_ARENA_BYTES)
		heap_arena_bytes = PALLOC_MAX_ARENA_BYTES;
	/* What the heap will make (spanheap_init, spanheap_depot_init):
	 * records and the depot only if the port gives callers. Until a
	 * review they were counted for every port, and the hosted malloc's
	 * poison mode (no callers) reserved 3.9 times its arena beside it
	 * where 0.75 will do (API test poison_reserve). */
	bool callers = spanheap_track_probe();
	uint64_t per_span = (uint64_t)(heap_arena_bytes / MM_PAGE_SIZE) *
	                    per_page_bytes(cfg, cfg->poison && callers);
	/* Poison mode has no magazines (spanheap_mag_slab_make refuses). */
	uint64_t once =
	        cfg->poison ? 0
	                    : (uint64_t)MM_MAX_CPUS * spanheap_mag_slab_pages();
	once += users_pages();
	if (callers && (cfg->poison || cfg->guard_slots))
		once += spanheap_depot_max_pages();
	return per_span + per_span / 4 + once * MM_PAGE_SIZE;
}

size_t spanheap_meta_arena_bytes(const struct spanheap_config *cfg,
                                 size_t heap_arena_bytes)
{
	const uint64_t chunk = PALLOC_CHUNK_BYTES;
	uint64_t b = spanheap_meta_need_bytes(cfg, heap_arena_bytes);
	b = (b + chunk - 1) / chunk * chunk;
	if (b < SPANHEAP_META_MIN_BYTES)
		b = SPANHEAP_META_MIN_BYTES;
	/* A size mheap_init takes: past palloc's largest arena it refused
	 * it, and the set-up failed (poison mode over an object arena past
	 * 32 TiB) where a reservation too large for the address space halves
	 * it (until a review the cap was 2^56 bytes). */
	if (b > PALLOC_MAX_ARENA_BYTES)
		b = PALLOC_MAX_ARENA_BYTES;
	return (size_t)b;
}

/* The metadata heap's configuration: the object heap's, with its own
 * arena size and reserve (above). */
static void meta_config(const struct spanheap *sh, struct mheap_config *mc)
{
	const struct mheap_config *hc = &sh->heap->cfg;
	*mc = *hc;
	mc->arena_bytes = spanheap_meta_arena_bytes(&sh->cfg, sh->arena_bytes);
	size_t big = sh->mag_slab_pages > SPANHEAP_DEPOT_CHUNK_PAGES
	                     ? sh->mag_slab_pages
	                     : SPANHEAP_DEPOT_CHUNK_PAGES;
	mc->reserve_pages = min_sz(hc->reserve_pages, 2 * big);
}

/* True if an arena of nbytes can be reserved now; keeps none. */
static bool reservable(size_t nbytes)
{
	void *p = mm_port_reserve(nbytes, PALLOC_CHUNK_BYTES);
	if (p)
		mm_port_unreserve(p, nbytes);
	return p != NULL;
}

/* One frame pool under both heaps: an allocation short of frames
 * scavenges the other heap's free pages too (mheap_alloc.c,
 * scavenge_for_frames); and one background scavenger, the object
 * heap's, which serves the metadata heap too (mheap_scav.c, "served"). */
static void peer_up(struct spanheap *sh)
{
	sh->meta.frames_peer = sh->heap;
	sh->heap->frames_peer = &sh->meta;
	sh->meta.scav_by = sh->heap;
	sh->heap->scav_also = &sh->meta;
}

/* The links both ways, for a metadata heap there is not (yet), or one a
 * failed try keeps: until a review the kept one still named the object
 * heap, which its caller may give back before a retry brings another. */
static void peer_down(struct spanheap *sh)
{
	sh->heap->frames_peer = NULL;
	sh->heap->scav_also = NULL;
	sh->meta.frames_peer = NULL;
	sh->meta.scav_by = NULL;
}

bool spanheap_meta_init(struct spanheap *sh)
{
	peer_down(sh); /* until this heap's is made */
	if (spanheap_meta_kept(sh)) {
		sh->meta_kept = NULL; /* in use again, empty ("Limits") */
		peer_up(sh);
		return true;
	}
	struct mheap_config mc;
	meta_config(sh, &mc);
	/* Halved while the address space is short, not when mheap_init
	 * fails for want of memory: a palloc that mapped part of its
	 * metadata keeps its reservation (port.h), and a retry would keep
	 * another. */
	while (mc.arena_bytes > SPANHEAP_META_MIN_BYTES &&
	       !reservable(mc.arena_bytes)) {
		mc.arena_bytes = (mc.arena_bytes / 2) &
		                 ~((size_t)PALLOC_CHUNK_BYTES - 1);
		if (mc.arena_bytes < SPANHEAP_META_MIN_BYTES)
			mc.arena_bytes = SPANHEAP_META_MIN_BYTES;
	}
	if (mc.reserve_pages > mc.arena_bytes / MM_PAGE_SIZE)
		mc.reserve_pages = mc.arena_bytes / MM_PAGE_SIZE;
	if (mheap_init(&sh->meta, &mc)) {
		/* Named apart from the object heap's "heap" (the kernel's
		 * `locks`); not taken yet, so made again here. */
		mm_lock_init(&sh->meta.lock, "heap_meta", MM_RANK_HEAP);
		peer_up(sh);
		return true;
	}
	/* A failed mheap_init may leave its arena's bounds: spanheap_where
	 * must not see an arena that is not there. */
	mm_memset(&sh->meta, 0, sizeof(sh->meta));
	mm_log("spanheap: cannot set up the metadata heap (the line before "
	       "says why) over an arena of %zu MiB",
	       mc.arena_bytes >> 20);
	return false;
}

void spanheap_meta_undo(struct spanheap *sh)
{
	peer_down(sh);
	mheap_release_all(&sh->meta);
	sh->meta_kept = &sh->meta;
	mm_log("spanheap: the metadata heap's arena at %#lx stays reserved "
	       "(its page tables and metadata are mapped), for a retry",
	       (unsigned long)sh->meta.arena_base);
}
