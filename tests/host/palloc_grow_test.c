/*
 * Growth and metadata: ranges grown in any order and far apart, metadata
 * cost following the grown size, both metadata modes, the arena at
 * address 0, and every refused call (with its message, and with the
 * allocator word for word unchanged).
 */
#include "palloc_test_util.h"

#define ARENA_512G ((size_t)1 << 18) /* chunks */
#define CB         PALLOC_CHUNK_BYTES

KTEST(palloc_grow, far_apart_any_order)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, ARENA_512G, 0));
	uintptr_t last = TP_BASE + (ARENA_512G - 1) * CB;
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), 0); /* nothing grown */
	KEXPECT(palloc_grow(&p, last, CB));
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), last);
	KEXPECT(palloc_grow(&p, TP_BASE + 70000 * CB, 3 * CB));
	KEXPECT(palloc_grow(&p, TP_BASE, CB));
	TP_CHECK(&p, "after growing");
	/* First fit: the lowest grown chunk now. */
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), TP_BASE);
	/* 1000 pages fit only in the three chunks in the middle. */
	KEXPECT_EQ(palloc_alloc(&p, 1000, NULL), TP_BASE + 70000 * CB);
	KEXPECT_EQ(palloc_alloc(&p, 3 * 512, NULL), 0);
	KEXPECT_EQ(palloc_alloc(&p, 512, NULL),
	           TP_BASE + 70000 * CB + 1000 * MM_PAGE_SIZE);
	TP_CHECK(&p, "after allocating");
	struct palloc_stats st;
	palloc_stats_locked(&p, &st);
	KEXPECT_EQ(st.grown_pages, 5 * 512);
	KEXPECT_EQ(st.free_pages, 5 * 512 - 1 - 1 - 1000 - 512);
	tp_release(&p);
}

/*
 * The bitmap of mapped metadata pages has a bit for its own pages too.
 * It was sized for the pages before it alone, so for some arena sizes
 * (977601 chunks is the first: 1.86 TiB) palloc_init set the last bit in
 * the word past the end of its reservation (the test port's guard page
 * after every reservation turns that into a fault). That size and those
 * each side of it.
 */
KTEST(palloc_grow, mapped_bitmap_covers_its_own_pages)
{
	static const size_t chunks[] = {977600, 977601, 977602};
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		struct palloc p;
		size_t m0 = mm_port_mapped_bytes();
		KASSERT(tp_new(&p, TP_BASE, chunks[i], 0));
		KEXPECT_EQ(palloc_test_mapped_bytes(&p),
		           mm_port_mapped_bytes() - m0);
		TP_CHECK(&p, "after init");
		tp_release(&p);
	}
}

KTEST(palloc_grow, new_pages_free_and_scavenged)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_grow(&p, TP_BASE + 2 * CB, 2 * CB));
	struct palloc_test_chunk fresh = {.chunk = 2, .scav = {{0, 512}}};
	KEXPECT(tp_chunk_is(&p, &fresh, "fresh chunk"));
	size_t nscav = 0;
	KEXPECT_EQ(palloc_alloc(&p, 600, &nscav), TP_BASE + 2 * CB);
	KEXPECT_EQ(nscav, 600);
	palloc_free(&p, TP_BASE + 2 * CB, 600);
	/* Freed pages are backed: no longer scavenged. */
	KEXPECT_EQ(palloc_alloc(&p, 700, &nscav), TP_BASE + 2 * CB);
	KEXPECT_EQ(nscav, 100);
	TP_CHECK(&p, "after reuse");
	tp_release(&p);
}

KTEST(palloc_grow, regrow_keeps_state)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 16, 0));
	KASSERT(palloc_grow(&p, TP_BASE + CB, CB));
	KASSERT_EQ(palloc_alloc(&p, 10, NULL), TP_BASE + CB);
	struct tp_snap s = tp_snapshot(&p);
	KEXPECT(palloc_grow(&p, TP_BASE + CB, CB)); /* all grown already */
	KEXPECT(tp_unchanged(&p, s));
	/* Overlapping: chunk 1 keeps its pages, 0 and 2 are added free. */
	KEXPECT(palloc_grow(&p, TP_BASE, 3 * CB));
	KEXPECT_EQ(palloc_alloc(&p, 512, NULL), TP_BASE);
	KEXPECT_EQ(palloc_alloc(&p, 503, NULL), TP_BASE + CB + 10 * 4096);
	struct palloc_test_chunk c1 = {.chunk = 1, .alloc = {{0, 512}}};
	KEXPECT(tp_chunk_is(&p, &c1, "regrown chunk"));
	TP_CHECK(&p, "after regrowing");
	tp_release(&p);
}

KTEST(palloc_grow, metadata_follows_grown_size)
{
	struct palloc p;
	size_t m0 = mm_port_mapped_bytes();
	KASSERT(tp_new(&p, TP_BASE, ARENA_512G, 0));
	size_t init = mm_port_mapped_bytes() - m0;
	ktest_diag("512 GiB arena: %zu KiB metadata reserved, %zu KiB mapped "
	           "at init",
	           p.meta_bytes >> 10, init >> 10);
	KEXPECT(p.meta_bytes > 32u << 20); /* sized for the arena ... */
	KEXPECT(init <= 48u << 10);        /* ... mapped for nothing */
	KEXPECT_EQ(palloc_test_mapped_bytes(&p), init);
	/* 8 chunks scattered over the arena: a few pages each (bitmaps,
	 * leaf and upper summaries). */
	for (size_t i = 0; i < 8; i++)
		KASSERT(palloc_grow(&p, TP_BASE + i * 32768 * CB, CB));
	size_t scattered = mm_port_mapped_bytes() - m0 - init;
	KEXPECT(scattered <= 8 * 6 * MM_PAGE_SIZE);
	/* 1 GiB contiguous: 512 chunks of 128 bytes of bitmaps, one page of
	 * leaf summaries and one per level above. */
	size_t m1 = mm_port_mapped_bytes();
	KASSERT(palloc_grow(&p, TP_BASE + 1000 * CB, 512 * CB));
	size_t gib = mm_port_mapped_bytes() - m1;
	ktest_diag("8 scattered chunks: %zu KiB; 1 GiB more: %zu KiB",
	           scattered >> 10, gib >> 10);
	KEXPECT(gib <= 512 * 128 + 8 * MM_PAGE_SIZE);
	KEXPECT_EQ(palloc_test_mapped_bytes(&p), init + scattered + gib);
	TP_CHECK(&p, "sparse 512 GiB");
	tp_release(&p);
}

KTEST(palloc_grow, supplied_metadata)
{
	size_t chunks = 40, n = palloc_metadata_bytes(chunks * CB, 0);
	size_t n_noscav = palloc_metadata_bytes(chunks * CB, PALLOC_NO_SCAV);
	KEXPECT(n > 0 && n_noscav > 0 && n_noscav < n);
	KEXPECT_EQ(palloc_metadata_bytes(CB + 4096, 0), 0);
	KEXPECT_EQ(palloc_metadata_bytes(0, 0), 0);
	void *meta = aligned_alloc(MM_PAGE_SIZE, n);
	KASSERT(meta != NULL);
	memset(meta, 0xff, n); /* palloc_init must clear what matters */
	struct palloc p;
	struct palloc_config cfg = {.arena_base = TP_BASE,
	                            .arena_bytes = chunks * CB,
	                            .metadata = meta};
	size_t m0 = mm_port_mapped_bytes();
	KASSERT(palloc_init(&p, &cfg));
	KEXPECT_EQ(mm_port_mapped_bytes(), m0); /* maps nothing */
	TP_CHECK(&p, "fresh");
	KEXPECT(palloc_grow(&p, TP_BASE + 30 * CB, 10 * CB));
	KEXPECT(palloc_grow(&p, TP_BASE, CB));
	KEXPECT_EQ(palloc_alloc(&p, 513, NULL), TP_BASE + 30 * CB);
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), TP_BASE);
	TP_CHECK(&p, "after use");
	cfg.metadata = (char *)meta + 64;
	KEXPECT(!palloc_init(&p, &cfg));
	KEXPECT(strstr(mm_port_last_log(), "metadata not page aligned"));
	free(meta);
}

KTEST(palloc_grow, arena_at_address_zero)
{
	struct palloc p;
	KASSERT(tp_new(&p, 0, 4, PALLOC_NO_SCAV));
	KASSERT(palloc_grow(&p, 0, 2 * CB));
	size_t nscav = 7;
	/* Page 0 is never handed out, so 0 still means failure. */
	KEXPECT_EQ(palloc_alloc(&p, 1, &nscav), MM_PAGE_SIZE);
	KEXPECT_EQ(nscav, 0);
	KEXPECT_EQ(palloc_alloc(&p, 1022, &nscav), 2 * MM_PAGE_SIZE);
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), 0);
	KEXPECT(!palloc_alloc_range_locked(&p, 0, 1, NULL));
	struct palloc_refusal r;
	KEXPECT(palloc_take_refusal_locked(&p, &r));
	KEXPECT(strstr(r.reason, "reserved"));
	struct tp_snap s = tp_snapshot(&p);
	KEXPECT(MM_PORT_PANICS(palloc_free(&p, 0, 2)));
	KEXPECT(strstr(mm_port_last_panic(), "page 0x0 is reserved"));
	KEXPECT(tp_unchanged(&p, s));
	palloc_free(&p, MM_PAGE_SIZE, 1023);
	KEXPECT_EQ(palloc_alloc(&p, 1023, NULL), MM_PAGE_SIZE);
	TP_CHECK(&p, "zero-based");
	tp_release(&p);
}

/* With scavenged pages tracked, page 0 of an arena at address 0 is
 * allocated from its growth on, so it is not scavenged either (palloc.c
 * invariants 3 and 6), and the counts leave it out. */
KTEST(palloc_grow, arena_at_address_zero_tracks_scavenging)
{
	struct palloc p;
	KASSERT(tp_new(&p, 0, 4, 0));
	KASSERT(palloc_grow(&p, 0, CB));
	TP_CHECK(&p, "grown at address 0");
	struct palloc_stats st;
	palloc_stats_locked(&p, &st);
	KEXPECT_EQ(st.free_pages, 511);
	KEXPECT_EQ(st.scav_pages, 511);
	size_t nscav = 0;
	KEXPECT_EQ(palloc_alloc(&p, 511, &nscav), MM_PAGE_SIZE);
	KEXPECT_EQ(nscav, 511);
	TP_CHECK(&p, "all handed out");
	tp_release(&p);
}

/* The largest arena palloc takes, PALLOC_MAX_ARENA_BYTES (5 levels, 16384
 * root entries), grown at both ends: its last page is handed out. */
KTEST(palloc_grow, largest_arena)
{
	struct palloc p;
	size_t chunks = PALLOC_MAX_ARENA_BYTES / CB;
	KASSERT(tp_new(&p, TP_BASE, chunks, 0));
	KEXPECT_EQ(p.levels, 5);
	KEXPECT_EQ(p.root_entries, 16384);
	uintptr_t end = TP_BASE + PALLOC_MAX_ARENA_BYTES;
	KASSERT(palloc_grow(&p, TP_BASE, CB));
	KASSERT(palloc_grow(&p, end - CB, CB));
	KEXPECT_EQ(palloc_alloc(&p, 512, NULL), TP_BASE);
	KEXPECT_EQ(palloc_alloc(&p, 511, NULL), end - CB);
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), end - MM_PAGE_SIZE);
	KEXPECT_EQ(palloc_alloc(&p, 1, NULL), 0);
	TP_CHECK(&p, "largest arena");
	tp_release(&p);
}

/* Each refused call logs a line naming the range and changes nothing. */
static void expect_refused_grow(struct palloc *p, uintptr_t base, size_t nbytes,
                                const char *why)
{
	char range[80];
	struct tp_snap s = tp_snapshot(p);
	unsigned long logs = mm_port_log_count();
	KEXPECT(!palloc_grow(p, base, nbytes));
	KEXPECT_EQ(mm_port_log_count(), logs + 1);
	snprintf(range, sizeof(range), "grow [0x%lx, 0x%lx)", base,
	         base + nbytes);
	if (!strstr(mm_port_last_log(), range) ||
	    !strstr(mm_port_last_log(), why))
		ktest_fail_at(__FILE__, __LINE__, "log \"%s\" lacks %s or %s",
		              mm_port_last_log(), range, why);
	KEXPECT(tp_unchanged(p, s));
}

KTEST(palloc_grow, refused_grows)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, ARENA_512G, 0));
	KASSERT(palloc_grow(&p, TP_BASE + 4 * CB, CB));
	uintptr_t far = TP_BASE + 200000 * CB; /* its metadata is unmapped */
	mm_port_set_quiet(true);
	expect_refused_grow(&p, TP_BASE + 4096, CB, "not chunk aligned");
	expect_refused_grow(&p, TP_BASE + CB / 2, CB, "not chunk aligned");
	expect_refused_grow(&p, TP_BASE, CB + 4096, "multiple of 2 MiB");
	expect_refused_grow(&p, TP_BASE, 0, "multiple of 2 MiB");
	expect_refused_grow(&p, TP_BASE - CB, CB, "outside the arena");
	expect_refused_grow(&p, TP_BASE + ARENA_512G * CB, CB,
	                    "outside the arena");
	expect_refused_grow(&p, TP_BASE + (ARENA_512G - 1) * CB, 2 * CB,
	                    "outside the arena");
	/* Commit without prepare: refused under the lock, logged after. */
	struct tp_snap s = tp_snapshot(&p);
	struct palloc_refusal r;
	KEXPECT(!palloc_grow_commit_locked(&p, far, CB));
	KEXPECT(palloc_take_refusal_locked(&p, &r));
	KEXPECT(strstr(r.reason, "not prepared"));
	KEXPECT(!palloc_take_refusal_locked(&p, &r));
	KEXPECT(tp_unchanged(&p, s));
	/* Out of memory while mapping metadata: refused, nothing changed,
	 * and the same grow works once memory is back. */
	s = tp_snapshot(&p);
	mm_port_fail_maps(1);
	KEXPECT(!palloc_grow(&p, far, CB));
	mm_port_fail_maps(0);
	KEXPECT(strstr(mm_port_last_log(), "no memory for metadata"));
	KEXPECT(tp_unchanged(&p, s));
	KEXPECT(palloc_grow(&p, far, CB));
	KEXPECT_EQ(palloc_alloc(&p, 512, NULL), TP_BASE + 4 * CB);
	KEXPECT_EQ(palloc_alloc(&p, 512, NULL), far);
	mm_port_set_quiet(false);
	TP_CHECK(&p, "after refusals");
	tp_release(&p);
}

KTEST(palloc_grow, refused_allocs)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 4, 0));
	KASSERT(palloc_grow(&p, TP_BASE, 4 * CB));
	struct tp_snap s = tp_snapshot(&p);
	mm_port_set_quiet(true);
	KEXPECT_EQ(palloc_alloc(&p, 0, NULL), 0);
	KEXPECT(strstr(mm_port_last_log(),
	               "palloc: alloc of 0 pages refused: zero pages"));
	KEXPECT_EQ(palloc_alloc(&p, 2049, NULL), 0);
	KEXPECT(strstr(mm_port_last_log(), "alloc of 2049 pages refused: "
	                                   "larger than the arena; arena "
	                                   "[0x4000000000, 0x4000800000)"));
	KEXPECT_EQ(palloc_alloc(&p, SIZE_MAX, NULL), 0);
	mm_port_set_quiet(false);
	KEXPECT(tp_unchanged(&p, s));
	/* Out of room is not a refusal: 0, nothing recorded. */
	struct palloc_refusal r;
	KEXPECT_EQ(palloc_alloc_locked(&p, 2048, NULL), TP_BASE);
	KEXPECT_EQ(palloc_alloc_locked(&p, 1, NULL), 0);
	KEXPECT(!palloc_take_refusal_locked(&p, &r));
	tp_release(&p);
}

KTEST(palloc_grow, refused_inits)
{
	struct palloc p;
	struct {
		uintptr_t base;
		size_t bytes;
		unsigned flags;
		const char *why;
	} bad[] = {
	        {TP_BASE + 4096, CB, 0, "not chunk aligned"},
	        {TP_BASE, 0, 0, "positive multiple"},
	        {TP_BASE, CB + 4096, 0, "positive multiple"},
	        {TP_BASE, PALLOC_MAX_ARENA_BYTES + CB, 0, "larger than"},
	        {UINTPTR_MAX - CB + 1, 2 * CB, 0, "wraps"},
	        {TP_BASE, CB, 0x80, "unknown flags"},
	};
	mm_port_set_quiet(true);
	for (size_t i = 0; i < NELEM(bad); i++) {
		struct palloc_config cfg = {.arena_base = bad[i].base,
		                            .arena_bytes = bad[i].bytes,
		                            .flags = bad[i].flags};
		KEXPECT(!palloc_init(&p, &cfg));
		if (!strstr(mm_port_last_log(), bad[i].why))
			ktest_fail_at(__FILE__, __LINE__, "%zu: %s", i,
			              mm_port_last_log());
	}
	mm_port_set_quiet(false);
}

KTEST(palloc_grow, tree_shapes)
{
	static const struct {
		size_t chunks;
		unsigned levels;
		size_t root;
	} shapes[] = {
	        {1, 1, 1},        {8, 1, 8},         {9, 2, 2},
	        {64, 2, 8},       {65, 3, 2},        {512, 3, 8},
	        {4096, 4, 8},     {32768, 5, 8},     {32769, 5, 9},
	        {1 << 18, 5, 64}, {1 << 20, 5, 256},
	};
	for (size_t i = 0; i < NELEM(shapes); i++) {
		struct palloc p;
		KASSERT(tp_new(&p, TP_BASE, shapes[i].chunks, 0));
		KEXPECT_EQ(p.levels, shapes[i].levels);
		KEXPECT_EQ(p.root_entries, shapes[i].root);
		/* One page at each end, one run across the whole arena. */
		uintptr_t end = TP_BASE + shapes[i].chunks * CB;
		KEXPECT(palloc_grow(&p, TP_BASE, shapes[i].chunks * CB));
		KEXPECT_EQ(palloc_alloc(&p, shapes[i].chunks * 512, NULL),
		           TP_BASE);
		palloc_free(&p, end - MM_PAGE_SIZE, 1);
		palloc_free(&p, TP_BASE, 1);
		KEXPECT_EQ(palloc_alloc(&p, 2, NULL), 0);
		KEXPECT_EQ(palloc_alloc(&p, 1, NULL), TP_BASE);
		KEXPECT_EQ(palloc_alloc(&p, 1, NULL), end - MM_PAGE_SIZE);
		if (shapes[i].chunks <= 32769)
			TP_CHECK(&p, "shape");
		tp_release(&p);
	}
}

/*
 * palloc_free_below_locked(addr): the free run that ends at the chunk
 * boundary addr, the run a growth of the chunks at addr extends (the page
 * heap grows only the chunks a request needs beyond it): wholly free
 * chunks and the free end of the first one below them that is not, up to
 * a chunk not grown; 0 for the arena's base, a misaligned address or one
 * outside the arena, and the arena's limit counts like any boundary.
 */
KTEST(palloc_grow, free_below_is_the_run_ending_there)
{
	struct palloc p;
	KASSERT(tp_new(&p, TP_BASE, 8, 0));
	struct palloc_test_chunk cs[] = {
	        {.chunk = 0},                               /* all free */
	        {.chunk = 1, .alloc = {{0, 400}}},          /* end 112 */
	        {.chunk = 2, .scav = {{0, 512}}},           /* all free */
	        {.chunk = 4, .alloc = {{0, 512}}},          /* none */
	        {.chunk = 5, .alloc = {{0, 10}, {100, 2}}}, /* end 410 */
	        {.chunk = 7, .alloc = {{0, 500}}},          /* end 12 */
	};
	KASSERT(palloc_test_build(&p, cs, NELEM(cs)));
	static const struct {
		size_t chunk, want;
	} rows[] = {{0, 0}, {1, 512}, {2, 112}, {3, 624}, {4, 0},
	            {5, 0}, {6, 410}, {7, 0},   {8, 12}};
	for (size_t i = 0; i < NELEM(rows); i++) {
		size_t got = palloc_free_below_locked(
		        &p, TP_BASE + rows[i].chunk * CB);
		if (got != rows[i].want)
			ktest_fail_at(__FILE__, __LINE__,
			              "free below chunk %zu: %zu pages, want "
			              "%zu",
			              rows[i].chunk, got, rows[i].want);
	}
	KEXPECT_EQ(palloc_free_below_locked(&p, TP_BASE + 3 * CB + 4096), 0);
	KEXPECT_EQ(palloc_free_below_locked(&p, TP_BASE + 9 * CB), 0);
	KEXPECT_EQ(palloc_free_below_locked(&p, TP_BASE - CB), 0);
	tp_release(&p);
}

/*
 * A heap that grew one chunk maps a page for each part it touches, and
 * the parts are packed (64-byte aligned, palloc_grow.c): the mapped and
 * grown bitmaps, the root and the upper levels' first blocks share pages
 * where they fit. Until this version every part began a page, and a
 * 64 GiB arena's first chunk mapped 9 pages (3 at init), an 8 GiB one's
 * 8: the hosted malloc's two heaps, whose metadata was 68 KiB of a
 * one-allocation program's 256 KiB RssAnon.
 */
KTEST(palloc_grow, one_chunk_maps_a_page_a_part_it_touches)
{
	static const struct {
		size_t chunks, most_pages;
	} arenas[] = {{32768, 6}, {4096, 4}};
	for (size_t i = 0; i < NELEM(arenas); i++) {
		struct palloc p;
		size_t m0 = mm_port_mapped_bytes();
		KASSERT(tp_new(&p, TP_BASE, arenas[i].chunks, 0));
		KASSERT(palloc_grow(&p, TP_BASE, CB));
		KEXPECT_EQ(palloc_alloc(&p, 1, NULL), TP_BASE);
		size_t pages = (mm_port_mapped_bytes() - m0) / MM_PAGE_SIZE;
		ktest_diag("%zu chunks, one grown: %zu metadata pages mapped",
		           arenas[i].chunks, pages);
		KEXPECT(pages <= arenas[i].most_pages);
		KEXPECT_EQ(palloc_test_mapped_bytes(&p), pages * MM_PAGE_SIZE);
		TP_CHECK(&p, "one chunk");
		tp_release(&p);
	}
}
