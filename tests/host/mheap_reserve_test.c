/*
 * The page heap's reserve (mm/mheap.c): free pages in grown chunks are
 * kept at reserve_pages or more for atomic callers, so a thread whose
 * request leaves fewer grows the heap by a chunk before it returns. An
 * extension in place (mheap_extend_pages, a large object's realloc) takes
 * pages like an allocation and makes them up the same way.
 */
#include "../../kernel/ktest.h"
#include "../../mm/mheap.h"
#include "mheap_test_util.h"
#include "mm_port_posix.h"

#define PG MM_PAGE_SIZE

static struct mheap heap;

/* One chunk grown for 100 pages leaves 412 free; extending them by 300
 * leaves 112, under the reserve of 128: a chunk more is grown, counted as
 * a growth for the reserve. */
KTEST(mheap_reserve, extension_below_the_reserve_grows_the_heap)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 4 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 128;
	KASSERT(mheap_init(&heap, &cfg));
	char *a = mheap_alloc_pages(&heap, 100, 0);
	KASSERT(a);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KASSERT_EQ(st.grown_pages, PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 0);
	KASSERT(mheap_extend_pages(&heap, a, 100, 300));
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.in_use_pages, 400);
	KEXPECT_EQ(st.grown_pages, 2 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 1);
	mheap_free_pages(&heap, a, 400);
	mheap_check(&heap);
	mh_release(&heap);
}

/*
 * A reserve of several chunks: the growth that makes it up counts every
 * free page the heap has and grows the chunks that the difference needs.
 * It took the free run at the heap's top off the difference a second time
 * (a growth for a run does that: the new chunks extend that run), so one
 * page in use, 511 free and a reserve of 2048 grew 3 chunks, not 4, and
 * left 2047 free pages.
 */
KTEST(mheap_reserve, a_reserve_of_several_chunks_is_made_up)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 16 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 4 * PALLOC_CHUNK_PAGES;
	KASSERT(mheap_init(&heap, &cfg));
	char *a = mheap_alloc_pages(&heap, 1, 0);
	KASSERT(a);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	ktest_diag("%zu pages grown, %zu free", st.grown_pages,
	           st.free_backed_pages + st.free_scav_pages);
	KEXPECT(st.free_backed_pages + st.free_scav_pages >= cfg.reserve_pages);
	KEXPECT_EQ(st.grown_pages, 5 * PALLOC_CHUNK_PAGES);
	KEXPECT_EQ(st.n.refills, 1);
	mheap_free_pages(&heap, a, 1);
	mheap_check(&heap);
	mh_release(&heap);
}
