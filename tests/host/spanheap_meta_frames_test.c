/*
 * The span heap's metadata heap (mm/spanheap_meta.c) and the frames and
 * sizes it is given: the object heap and it are each other's frames
 * peers (an allocation short of frames scavenges the other's free backed
 * pages, for what its own left short); its arena's size is one a page
 * heap takes and holds what a full object arena needs; a thread's
 * allocations leave its reserve for atomic callers free. Moved out of
 * spanheap_meta_test.c (past 600 lines with the mutation audit's tests),
 * which keeps where the metadata lie.
 */
#include <stdint.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* h's free backed pages and the pages it scavenged for frames. */
static void backed_and_synced(struct mheap *h, size_t *backed, size_t *synced)
{
	struct mheap_stats st;
	mheap_stats(h, &st);
	*backed = st.free_backed_pages;
	*synced = st.n.sync_pages;
}

/*
 * One frame pool under both heaps: an allocation that would take it
 * below the low watermark scavenges its own heap's free backed pages,
 * then the other heap's. Until a review, each scavenged only its own, so
 * a metadata allocation short of frames left the object heap's free pages
 * (up to the scavenger's goal, or everything freed since its last run)
 * backed, and the other way round, where one heap had served both.
 */
KTEST(spanheap_meta_frames, each_heap_short_of_frames_scavenges_the_others)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	/* Object pages freed backed, none of the metadata heap's free. */
	void *o = mheap_alloc_pages(&heap, 200, 0);
	KASSERT(o);
	memset(o, 0x5a, 200 * MM_PAGE_SIZE);
	mheap_free_pages(&heap, o, 200);
	size_t backed0, synced0, mbacked, msynced;
	backed_and_synced(&heap, &backed0, &synced0);
	KASSERT(backed0 >= 200);
	/* A metadata run of fresh pages with frames short: the object
	 * heap's free pages make the room. */
	mm_port_set_free_pages(10);
	void *m = mheap_alloc_pages(&sh.meta, 40, 0);
	mm_port_set_free_pages(SIZE_MAX / 2);
	KASSERT(m);
	size_t backed1, synced1;
	backed_and_synced(&heap, &backed1, &synced1);
	KEXPECT(backed1 < backed0);
	KEXPECT(synced1 > synced0);
	/* The other way: the metadata run freed backed, then an object run
	 * of fresh pages with frames short takes them. */
	memset(m, 0xa5, 40 * MM_PAGE_SIZE);
	mheap_free_pages(&sh.meta, m, 40);
	backed_and_synced(&sh.meta, &mbacked, &msynced);
	KASSERT(mbacked >= 40);
	size_t fresh = heap.grown_chunks * PALLOC_CHUNK_PAGES; /* past all */
	mm_port_set_free_pages(10);
	void *o2 = mheap_alloc_pages(&heap, fresh + 1, 0);
	mm_port_set_free_pages(SIZE_MAX / 2);
	KASSERT(o2);
	size_t mbacked1, msynced1;
	backed_and_synced(&sh.meta, &mbacked1, &msynced1);
	KEXPECT(mbacked1 < mbacked);
	KEXPECT(msynced1 > msynced);
	mheap_free_pages(&heap, o2, fresh + 1);
	SH_CHECK(&sh, "after scavenging each other's pages for frames");
	sh_heap_release(&heap, &sh);
}

/* The metadata arena's size is one mheap_init takes, for any object
 * arena, in either mode: a chunk multiple, at least the smallest the
 * set-up settles for, at most palloc's largest arena. Until a review a
 * poison heap over an object arena past 32 TiB asked for more than that
 * (about four times the arena), which mheap_init refuses: the set-up
 * failed, where one too large for the address space is halved; and an
 * arena near SIZE_MAX overflowed the reckoning. */
KTEST(spanheap_meta_frames, the_arena_size_is_one_a_page_heap_takes)
{
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	for (int poison = 0; poison < 2; poison++) {
		sc.poison = poison;
		size_t a = PALLOC_CHUNK_BYTES;
		for (;;) {
			size_t b = spanheap_meta_arena_bytes(&sc, a);
			if (b % PALLOC_CHUNK_BYTES ||
			    b < SPANHEAP_META_MIN_BYTES ||
			    b > PALLOC_MAX_ARENA_BYTES)
				ktest_fail_at(__FILE__, __LINE__,
				              "poison %d, arena %zu: a "
				              "metadata "
				              "arena of %zu bytes",
				              poison, a, b);
			if (a == SIZE_MAX)
				break;
			a = a > SIZE_MAX / 2 ? SIZE_MAX : a * 2;
		}
	}
}

/*
 * The frames peer is asked for what its heap's own pages left short, not
 * for the whole shortfall again: a metadata allocation of 40 fresh pages
 * with 10 frames free (no low watermark: 30 short), its heap holding 20
 * free backed pages, scavenges those 20 and then at most 10 of the object
 * heap's. A mutation audit found the peer's share unpinned: asked for all
 * 30, the object heap lost 30 backed pages where 10 made the room.
 */
KTEST(spanheap_meta_frames, the_peer_scavenges_only_what_its_heap_left_short)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(sh.meta.cfg.low_watermark_pages == 0);
	void *o = mheap_alloc_pages(&heap, 200, 0);
	KASSERT(o);
	memset(o, 0x5a, 200 * MM_PAGE_SIZE);
	mheap_free_pages(&heap, o, 200);
	/* 20 backed pages of the metadata heap's, fenced off by a page kept
	 * so that the 40 cannot take them. */
	void *m = mheap_alloc_pages(&sh.meta, 20, 0);
	void *fence = mheap_alloc_pages(&sh.meta, 1, 0);
	KASSERT(m && fence);
	memset(m, 0xa5, 20 * MM_PAGE_SIZE);
	mheap_free_pages(&sh.meta, m, 20);
	size_t backed0, synced0, mbacked0, msynced0;
	backed_and_synced(&heap, &backed0, &synced0);
	backed_and_synced(&sh.meta, &mbacked0, &msynced0);
	KASSERT(backed0 >= 200 && mbacked0 >= 20 && mbacked0 < 30);
	mm_port_set_free_pages(10);
	void *m2 = mheap_alloc_pages(&sh.meta, 40, 0);
	mm_port_set_free_pages(SIZE_MAX / 2);
	KASSERT(m2);
	size_t backed1, synced1, mbacked1, msynced1;
	backed_and_synced(&heap, &backed1, &synced1);
	backed_and_synced(&sh.meta, &mbacked1, &msynced1);
	size_t own = msynced1 - msynced0, peer = synced1 - synced0;
	ktest_diag("own %zu, peer %zu pages scavenged", own, peer);
	KEXPECT_EQ(own, mbacked0);
	KEXPECT(peer > 0);
	KEXPECT(peer <= 30 - own);
	mheap_free_pages(&sh.meta, m2, 40);
	mheap_free_pages(&sh.meta, fence, 1);
	SH_CHECK(&sh, "after the peer's share");
	sh_heap_release(&heap, &sh);
}

/*
 * The metadata arena holds what a full object arena needs (the sizing in
 * spanheap_meta_arena_bytes): a poison heap with callers' records over a
 * 2-chunk object arena, filled with objects of the smallest class (whose
 * side tables take the most metadata a page), runs out of object pages,
 * not of metadata. A mutation audit found the side tables' part of the
 * sizing unpinned: left out, the metadata arena was the smallest the
 * set-up settles for (4 MiB), and the allocations failed with a quarter
 * of the object arena used.
 */
KTEST(spanheap_meta_frames, a_full_object_arena_fits_its_metadata)
{
	KASSERT(sh_heap_tight_poison(&heap, &sh, 2 * PALLOC_CHUNK_BYTES));
	KASSERT(sh.track);
	size_t n = 0;
	mm_port_set_quiet(true);
	while (spanheap_alloc(&sh, sh_poison_size(1), 0))
		n++;
	mm_port_set_quiet(false);
	struct mheap_stats st, ms;
	mheap_stats(&heap, &st);
	mheap_stats(&sh.meta, &ms);
	ktest_diag("%zu objects; object heap %zu of %zu pages in use; "
	           "metadata heap %zu of %zu",
	           n, st.in_use_pages, heap.arena_pages, ms.in_use_pages,
	           sh.meta.arena_pages);
	/* A span's pages short of the end at most. */
	KEXPECT(st.in_use_pages + sizeclass_info[1].npages >= heap.arena_pages);
	KEXPECT(ms.in_use_pages < sh.meta.arena_pages);
	sh_heap_release(&heap, &sh);
}

/*
 * The metadata heap keeps free pages for two of the largest atomic
 * requests the span heap makes of it (a CPU's magazine slab or a depot
 * chunk: spanheap_meta.c), so that two CPUs' first frees in interrupt
 * handlers find their slabs without waiting for a growth: a thread's
 * allocation that leaves fewer grows it first. Thread allocations of a
 * page each, until the heap has grown twice, never leave fewer free. A
 * mutation audit found the reserve unpinned: with none, the heap grew
 * only once its free pages were gone.
 */
KTEST(spanheap_meta_frames, thread_allocations_leave_the_atomic_reserve_free)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t big = sh.mag_slab_pages > SPANHEAP_DEPOT_CHUNK_PAGES
	                     ? sh.mag_slab_pages
	                     : SPANHEAP_DEPOT_CHUNK_PAGES;
	size_t want = 2 * big < heap.cfg.reserve_pages ? 2 * big
	                                               : heap.cfg.reserve_pages;
	KASSERT(want > 0);
	enum { MAX = 4 * PALLOC_CHUNK_PAGES };
	static void *pg[MAX];
	size_t n = 0, grown0 = sh.meta.grown_chunks, least = SIZE_MAX;
	while (sh.meta.grown_chunks < grown0 + 2 && n < MAX) {
		KASSERT(pg[n] = mheap_alloc_pages(&sh.meta, 1, 0));
		n++;
		struct mheap_stats st;
		mheap_stats(&sh.meta, &st);
		size_t free = st.free_backed_pages + st.free_scav_pages;
		if (free < least)
			least = free;
	}
	ktest_diag("%zu pages taken; at least %zu free after each (reserve "
	           "%zu)",
	           n, least, want);
	KEXPECT(sh.meta.grown_chunks >= grown0 + 2);
	KEXPECT(least >= want);
	while (n)
		mheap_free_pages(&sh.meta, pg[--n], 1);
	SH_CHECK(&sh, "after the metadata heap's pages");
	sh_heap_release(&heap, &sh);
}
