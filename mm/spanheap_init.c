/*
 * mm/spanheap_init.c: the span heap's set-up: the configuration's
 * defaults and checks, each class's magazine layout in a CPU's slab, a
 * CPU's empty cache (set up at its first use), and spanheap_init.
 *
 * Purpose: a struct spanheap ready for its first call, over a page heap
 * that is already set up. An empty cache holds a placeholder span, as
 * the Go runtime's mcache holds emptymspan (mcache.go).
 *
 * Representation: a CPU's magazines share one slab of slots (made at its
 * first free or refill, spanheap_cache.c): class cls's slots start at
 * mag_off[cls], below them a 0, and hold mag_max[cls] objects (64 KiB of
 * objects, between 2 and 128); the slots begin 512 bytes into the slab.
 * Until its slab exists every magazine of a CPU points just past a shared
 * 0, empty and full at once, and every cached span is the placeholder
 * spanheap_empty_span, which has nothing free. Until the CPU first uses
 * the heap its cache is all zero and never written: the fast paths' table
 * (mags[cpu]) gives it the shared magazines of no CPU (mags_none, empty
 * and full at once), so its first allocation or free takes a slow path,
 * which sets the cache up (spanheap_cache_set_up). A process uses the
 * caches of the CPUs it runs on, 2 of the 64 in a test on this machine:
 * written at init, the 64 caches' 128 KiB were resident in every process
 * the hosted malloc served (RssAnon 396 kB for a program that made one
 * allocation, against glibc's 96 and mimalloc's 144).
 *
 * Algorithm: spanheap_init checks the configuration (and, with
 * MM_PORT_RSEQ, the table of sequences) before it writes anything, zeroes
 * the heap (zero_where_set: only the pages that hold a set byte, so that
 * a struct in fresh memory stays unwritten), takes sweepgen 4 (any even
 * value: it wraps after 2^31
 * cycles, across which each comparison holds), initialises
 * the class locks, draws the magazines' cookie (the time and the heap's
 * address through a 64-bit mixer, made odd), lays out each class's
 * magazine (mag_layout: slots for 64 KiB of objects, between
 * SPANHEAP_MAG_MIN and SPANHEAP_MAG_MAX, a refill's fill of 1 KiB of
 * objects up to MAG_FILL_MAX and half the magazine, none below 2), points
 * every CPU's magazines at the shared empty ones (caches_init) and fills
 * the fast path's table of magazine offsets by 16-byte size; then
 * (parts_init) the object
 * heap grown to its reserve for atomic callers, the guarded pool's
 * reservation, the metadata heap (spanheap_meta.c, an arena of its own),
 * and in it the all-spans array and the stack depot. The growth makes the
 * object heap ready for its first atomic and MM_NO_GROW allocations: the
 * metadata's allocations grew it until they moved to a heap of their own,
 * and a review then found a fresh heap's first MM_NO_GROW allocation
 * failing, and of several CPUs' first MM_ATOMIC ones, all but the one
 * that grew it. A heap configured with no reserve is not grown: its owner
 * asked for no pages held ahead of need.
 * A part refused undoes those before it, the latest first: the pool's
 * reservation goes back, the metadata heap's pages go back and its
 * reservations stay (spanheap_meta.c, "Limits"), for the next init of the
 * heap, which zeroes all but it and takes it again; the heap keeps no
 * array, so that a use of it panics at its first span
 * (spanheap_structs_reserve).
 *
 * Invariants: what spanheap.c lists holds from the end of spanheap_init
 * (no span, no object); the magazines' cookie is odd, so no marker is 0.
 *
 * Locking: none; thread context, before any other call on the heap.
 *
 * Limits: a configuration out of range (pending_permille and
 * cpu_permille 1 to 1000, batch_spans at least 1, period_ns at least
 * SPANHEAP_MIN_PERIOD_NS, guard_interval at least 1 with guard_slots) is
 * refused with a line naming the field; with MM_PORT_RSEQ, a port that did not
 * call mm_rseq_init first is refused too, and so is a page heap not set
 * up or whose scavenger thread runs (the set-up makes it serve the
 * metadata heap), and a span heap set up already whose metadata heap is
 * still there (in_use): the heap has no destroy, and an owner that gave
 * its reservations back zeroes that heap before setting it up again.
 * A heap used before its init (zeroed) panics saying so at its first
 * slow path (spanheap_assert_set_up); a small allocation's fast path
 * faults first, on the NULL magazines (docs/DESIGN.md: no check there is
 * free), which a port's fault report can name (rseq.h,
 * MM_RSEQ_MAGS_RECORD; the kernel's does).
 */
#include "spanheap_internal.h"

/* What top and limit point just past until a CPU's slab is made: a 0,
 * never written (a push finds the magazine full first). */
static uintptr_t mag_none[1];

/* sh->mags[MM_PIN_NONE]: every class's magazine empty and full at once,
 * for good (mm_port_pin_fast's pin that pinned nothing). Never written. */
static struct mmag mags_none[SC_NCLASSES] = {
        [0 ... SC_NCLASSES - 1] = {.top = &mag_none[1], .limit = &mag_none[1]}};

void spanheap_config_default(struct spanheap_config *cfg)
{
	*cfg = (struct spanheap_config){
	        .pending_permille = SPANHEAP_DEFAULT_PENDING_PERMILLE,
	        .min_pending_bytes = SPANHEAP_DEFAULT_MIN_PENDING,
	        .period_ns = SPANHEAP_DEFAULT_PERIOD_NS,
	        .batch_spans = SPANHEAP_DEFAULT_BATCH_SPANS,
	        .cpu_permille = SPANHEAP_DEFAULT_CPU_PERMILLE,
	};
}

/* The config's size, on 64-bit machines: struct spanheap starts with it,
 * and the offsets of the fields every free reads after it are measured
 * ones (spanheap_config.h, guard_slots). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct spanheap_config) == 32,
               "struct spanheap_config stays 32 bytes");

/* set_up is read by every call past the fast paths (alloc_call: each
 * zeroed, large or aligned allocation and each refill; spanheap_span_of:
 * each realloc, usable size and slow free): on the line of heap and
 * arena_bytes, which those calls read anyway, and which nothing but a
 * sweep cycle's sweepgen writes. Until a review it sat after caches[],
 * on the line of spans and free_structs, written under heap->lock at
 * every span struct made or freed. */
_Static_assert(offsetof(struct spanheap, set_up) / 64 ==
                       offsetof(struct spanheap, heap) / 64,
               "set_up shares the first line with heap");

/* True if cfg is usable; else logs which field is out of range. */
static bool config_ok(const struct spanheap_config *cfg)
{
	const char *bad = NULL;
	if (cfg->pending_permille == 0 || cfg->pending_permille > 1000)
		bad = "pending_permille (1 to 1000)";
	else if (cfg->batch_spans == 0)
		bad = "batch_spans (at least 1)";
	else if (cfg->period_ns < SPANHEAP_MIN_PERIOD_NS)
		bad = "period_ns (at least 1000000, 1 ms)";
	else if (cfg->cpu_permille == 0 || cfg->cpu_permille > 1000)
		bad = "cpu_permille (1 to 1000)";
	else if (cfg->guard_slots && cfg->guard_interval == 0)
		bad = "guard_interval (at least 1 with guard_slots)";
	if (bad)
		mm_log("spanheap: bad config: %s: pending %u per mille, batch "
		       "%u spans, period %lu ns, CPU %u per mille, guard %u "
		       "slots, 1 in %u",
		       bad, cfg->pending_permille, cfg->batch_spans,
		       (unsigned long)cfg->period_ns, cfg->cpu_permille,
		       (unsigned)cfg->guard_slots,
		       (unsigned)cfg->guard_interval);
	return bad == NULL;
}

/* Class cls's magazine's slots: 64 KiB of objects, within the bounds. */
static uint32_t mag_max_of(unsigned cls)
{
	uint32_t max = SPANHEAP_MAG_BYTES / sizeclass_info[cls].size;
	if (max < SPANHEAP_MAG_MIN)
		max = SPANHEAP_MAG_MIN;
	if (max > SPANHEAP_MAG_MAX)
		max = SPANHEAP_MAG_MAX;
	return max;
}

/* The slots start 512 bytes into the slab: a pop reads the slot below
 * the top, and at the page's first words it would falsely alias (4 KiB)
 * the object it pops, whose second word the free and the alloc store
 * to, when the object starts a page, the commonest place (see
 * MHEAP_SPANMAP_SKEW). Each class's slots have a 0 below them. */
size_t spanheap_mag_slab_pages(void)
{
	size_t slots = MAG_SLAB_SKEW;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++)
		slots += 1 + mag_max_of(cls);
	return spanheap_pages_for(slots * sizeof(uintptr_t));
}

/* Each class's magazine: its size, its refill's fill and its slots'
 * offset in a CPU's slab (spanheap_mag_slab_pages); and the slab's
 * pages. */
static void mag_layout(struct spanheap *sh)
{
	uint32_t slots = (uint32_t)MAG_SLAB_SKEW;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		uint32_t max = mag_max_of(cls);
		sh->mag_max[cls] = max;
		/* mag_fill's k: 1 KiB of objects, at most 16, at most half
		 * the magazine; none below 2. */
		uint32_t fill = MAG_FILL_BYTES / sizeclass_info[cls].size;
		if (fill > MAG_FILL_MAX)
			fill = MAG_FILL_MAX;
		if (fill > max / 2)
			fill = max / 2;
		sh->mag_fill[cls] = (uint8_t)(fill < 2 ? 0 : fill);
		sh->mag_off[cls] = slots + 1; /* below it, the 0 */
		slots += 1 + max;
	}
	sh->mag_slab_pages = spanheap_mag_slab_pages();
}

/* No CPU's cache set up: every CPU's magazines are the shared ones of
 * no CPU, empty and full at once, so that its first allocation or free
 * takes a slow path, which sets its cache up (spanheap_cache_set_up);
 * and the fast paths' table of magazine offsets. */
static void caches_init(struct spanheap *sh)
{
	for (unsigned cpu = 0; cpu <= MM_PIN_NONE; cpu++)
		sh->mags[cpu] = mags_none;
	for (size_t i = 0; i <= SC_MAX_SIZE / 16; i++)
		sh->mag_by16[i] =
		        (uint16_t)(sizeclass_by16[i] * sizeof(struct mmag));
}

/*
 * CPU cpu's cache, zeroed until now, empty and ready: the placeholder
 * span in every class, the magazines of no slab (empty and full at once;
 * its first free or refill makes the slab), flushed as of this cycle,
 * the guarded pool's countdown started; then, last and release, its
 * magazines in the fast paths' table, which says it is set up
 * (spanheap_cache_used). Pinned on cpu, by its owner: no other CPU
 * writes a cache, and those that read one (a flush or the checker,
 * holding the CPU; the statistics) pass a cache not set up by.
 */
__attribute__((noinline, cold)) void spanheap_cache_set_up(struct spanheap *sh,
                                                           unsigned cpu)
{
	struct mcache *mc = &sh->caches[cpu];
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++) {
		mc->alloc[cls] = &spanheap_empty_span;
		mc->mag[cls] = (struct mmag){.top = &mag_none[1],
		                             .limit = &mag_none[1]};
	}
	mc->flushgen =
	        atomic_load_explicit(&sh->sweepgen, memory_order_acquire);
	mc->guard_left = sh->guard.base ? sh->guard.interval : 0;
	mheap_hook(sh->heap, MHEAP_HOOK_CACHE_SETTING_UP);
	__atomic_store_n(&sh->mags[cpu], mc->mag, __ATOMIC_RELEASE);
}

/*
 * Zeroes the n bytes at p (word aligned, n a multiple of a word) a page
 * at a time, writing only the pages that hold a byte that is not zero:
 * reading a page of fresh memory that no one wrote (a static heap's
 * .bss, an mmap) maps the shared zero page, which Linux does not count
 * as the process's (measured: reading 64 such pages left the mapping's
 * Rss at 0 kB), where the write of the whole struct made all its 170
 * KiB resident, 128 KiB of it the caches of CPUs the process never ran
 * on. A struct used before (a failed init's, or one zeroed after use)
 * is zeroed as a memset would.
 */
static void zero_where_set(void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p, end = a + n;
	while (a < end) {
		uintptr_t next = (a | (MM_PAGE_SIZE - 1)) + 1;
		if (next > end)
			next = end;
		const uintptr_t *w = (const uintptr_t *)a;
		uintptr_t any = 0;
		for (size_t i = 0; i < (next - a) / sizeof(*w); i++)
			any |= w[i];
		if (any)
			mm_memset((void *)a, 0, next - a);
		a = next;
	}
}

/* The magazines' cookie (struct spanheap's mag_cookie). */
static uintptr_t cookie_make(const struct spanheap *sh)
{
	/* The magazines' cookie: any value not 0 works; one that differs
	 * per heap and per boot makes a stray match of a marker unlikely.
	 * Its top two bits are 1 and 0, so that no marker (cookie ^ an
	 * address of one half, whose top bits are all equal) is a
	 * canonical address, with 48- or 57-bit ones: code that follows a
	 * pointer read from a freed object's second word takes a fault
	 * (x86's #GP) at once, whatever the heap's memory holds. */
	uint64_t z = mm_port_now_ns() ^ (uintptr_t)sh;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z = (z ^ (z >> 31)) | 1;
	if (sizeof(uintptr_t) == 8)
		z = (z | (uint64_t)1 << 63) & ~((uint64_t)1 << 62);
	return (uintptr_t)z;
}

/* A failed init's span array back to the metadata heap, and no pointer
 * to it kept: a use of the heap then panics at its first span
 * (spanheap_structs_reserve), where it went on over pages the page heap
 * had handed out again (review). */
static void spans_give_back(struct spanheap *sh)
{
	spanheap_spans_put(sh, sh->spans);
	sh->spans = NULL;
}

/* Gives back the guarded pool's reservation, if sh has one. */
static void guard_undo(struct spanheap *sh)
{
	if (sh->guard.base)
		mm_port_unreserve((void *)sh->guard.base, sh->guard.bytes);
	sh->guard.base = 0;
}

/*
 * The parts that take memory or address space, in an order whose undoing
 * is the latest first (mm_port_unreserve): the object heap grown to its
 * reserve, the guarded pool's reservation, the metadata heap's, then its
 * first runs, the all-spans array and the stack depot. False, having
 * logged why and undone the rest, if one fails. The growth comes first,
 * as it cannot be undone (an arena never shrinks): a later part's
 * failure keeps it, its pages free and never backed, and a retry finds
 * the reserve full and grows nothing more.
 */
static bool parts_init(struct spanheap *sh)
{
	if (!mheap_refill(sh->heap)) {
		mm_log("spanheap: no memory to grow the page heap to its "
		       "reserve of %zu pages for atomic callers",
		       sh->heap->cfg.reserve_pages);
		return false;
	}
	const char *guard_why = spanheap_guard_init(sh);
	if (guard_why) {
		mm_log("spanheap: %s (%u slots)", guard_why,
		       sh->cfg.guard_slots);
		return false;
	}
	if (!spanheap_meta_init(sh)) {
		guard_undo(sh);
		return false;
	}
	const char *why = NULL;
	if (!spanheap_spans_init(sh)) {
		why = "no memory for the span array";
	} else if (!spanheap_depot_init(sh)) {
		spans_give_back(sh);
		why = "no memory for the stack depot";
	}
	if (!why)
		return true;
	spanheap_meta_undo(sh);
	guard_undo(sh);
	mm_log("spanheap: %s", why);
	return false;
}

/*
 * True if sh is set up and in use: its init succeeded (live names sh
 * itself, which garbage in a struct on the stack does only by chance; a
 * 1-bit flag would be set by one byte in two) and its metadata heap is
 * still there (an owner that gave its reservations back and zeroed it,
 * as the host tests do, may set sh up again). Reads sh's own fields
 * only: a garbage sh->heap is never followed.
 */
static bool in_use(const struct spanheap *sh)
{
	return sh->live == sh && sh->meta.arena_pages != 0;
}

/*
 * What spanheap_init refuses before it touches sh: a bad configuration,
 * a page heap not set up or with its scavenger thread running, and (with
 * MM_PORT_RSEQ) no restartable sequences. False, having logged why.
 */
static bool init_allowed(const struct spanheap_config *cfg,
                         const struct mheap *h)
{
	if (!config_ok(cfg))
		return false;
	if (!h->arena_pages) { /* its lock unmade; "no memory" until a review */
		mm_log("spanheap: the page heap is not set up (its mheap_init "
		       "failed or was not called)");
		return false;
	}
#ifdef MM_PORT_RSEQ
	/* The fast paths are sequences only an initialised table restarts
	 * (mm/port.h, MM_PORT_RSEQ): without it an interrupt that uses the
	 * magazine would corrupt the one it interrupted. */
	if (mm_rseq_count() == 0) {
		mm_log("spanheap: MM_PORT_RSEQ, but no restartable sequences: "
		       "mm_rseq_init was not called, or the linker script "
		       "dropped the section mm_rseq");
		return false;
	}
#endif
	/* The set-up links h's scavenger to the metadata heap (scav_also,
	 * read by the thread with no lock) and a failed try unlinks it before
	 * that heap's pages go back: with the thread running, it served a
	 * heap being made or given back (ThreadSanitizer: a review). */
	if (h->scav.thread) {
		mm_log("spanheap: the page heap's scavenger thread runs: start "
		       "it after spanheap_init (mheap_scavenger_stop first)");
		return false;
	}
	return true;
}

bool spanheap_init(struct spanheap *sh, struct mheap *h,
                   const struct spanheap_config *cfg_in)
{
	spanheap_assert_can_sleep("spanheap_init");
	/* Before anything is written: the zeroing below lost everything
	 * the first set-up took (its metadata heap's arena, its span
	 * structs, the caches' slabs) and orphaned the objects handed out
	 * (a review; test spanheap_reinit). The span heap has no destroy. */
	if (in_use(sh)) {
		mm_log("spanheap: the heap at %p is set up and in use: a "
		       "second spanheap_init of it is refused",
		       (const void *)sh);
		return false;
	}
	/* A copy: cfg_in may be sh->cfg (a retry of a failed init with the
	 * configuration it left), which the zeroing below clears. */
	const struct spanheap_config copy = *cfg_in, *cfg = &copy;
	if (!init_allowed(cfg, h))
		return false;
	/* All but a metadata heap a failed init kept, which parts_init
	 * takes again: it cannot be given back (spanheap_meta.c, "Limits"),
	 * and a retry that zeroed it reserved another each time. */
	zero_where_set(sh, spanheap_meta_kept(sh)
	                           ? offsetof(struct spanheap, meta_kept)
	                           : sizeof(*sh));
	sh->heap = h;
	sh->arena_base = h->arena_base;
	sh->arena_bytes = h->arena_pages * MM_PAGE_SIZE;
	sh->spanmap = h->spanmap;
	sh->cfg = *cfg;
	sh->track = cfg->poison && spanheap_track_probe();
	/* Any even value would do: sweepgen wraps after 2^31 cycles (days
	 * of malloc_trim in a loop), and every comparison of generations
	 * holds across it (spanheap.c; spanheap_wrap_test.c starts below
	 * it). */
	atomic_init(&sh->sweepgen, 4);
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++)
		mm_lock_init(&sh->central[cls].lock, "mcentral",
		             MM_RANK_CENTRAL);
	sh->mag_cookie = cookie_make(sh);
	mag_layout(sh);
	caches_init(sh);
	if (!parts_init(sh))
		return false;
	mm_event_init(&sh->sweeper.wake, "spanheap_sweep");
	mm_event_init(&sh->sweeper.pace, "spanheap_pace");
	mm_event_init(&sh->sweeper.cycle_done, "spanheap_cycle");
	sh->set_up = true;
	sh->live = sh;
	return true;
}
