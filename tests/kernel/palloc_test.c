/*
 * mm/'s page allocator as the kernel heap will use it: an arena reserved in
 * the mm region, metadata mapped through kernel/mm_port.c as chunks grow
 * (so its cost follows the grown size), pages that come back scavenged and
 * are made usable with mm_port_used, then released with mm_port_unused.
 */
#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/ktest.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/mm_test_util.h"
#include "mm/mm.h"

#define ARENA_BYTES (64ull << 30)

static struct palloc heap;
static mm_lock_t heap_lock;

KTEST(palloc, heap_arena_on_real_page_tables)
{
	void *arena = mm_port_reserve(ARENA_BYTES, PALLOC_CHUNK_BYTES);
	KASSERT(arena != NULL);
	uintptr_t base = (uintptr_t)arena;
	mm_lock_init(&heap_lock, "test_heap", MM_RANK_HEAP);
	struct palloc_config cfg = {.arena_base = base,
	                            .arena_bytes = ARENA_BYTES,
	                            .owner_lock = &heap_lock};
	/* Frames are counted across the test: the kernel heap's threads
	 * must not move the pool meanwhile. */
	heap_settle();
	size_t frames0 = frames_free_count();
	KASSERT(palloc_init(&heap, &cfg));
	size_t init_cost = frames0 - frames_free_count();

	/* Three chunks far apart: the first, one in the middle, the last. */
	uintptr_t chunks[3] = {base, base + ARENA_BYTES / 2,
	                       base + ARENA_BYTES - PALLOC_CHUNK_BYTES};
	for (int i = 0; i < 3; i++)
		KASSERT(palloc_grow(&heap, chunks[i], PALLOC_CHUNK_BYTES));
	size_t tables0 = frames_free_count();
	for (int i = 0; i < 3; i++) /* mm_port_used needs its tables */
		KASSERT(mm_port_prepare((void *)chunks[i], PALLOC_CHUNK_BYTES));
	size_t tables = tables0 - frames_free_count();
	size_t grow_cost = frames0 - init_cost - tables - frames_free_count();
	ktest_diag("metadata: %zu frames at init, %zu for 3 chunks of a "
	           "64 GiB arena",
	           init_cost, grow_cost);
	KEXPECT(grow_cost < 64); /* follows the grown size, not the arena */
	/* Page-table pages are made on first map and kept: warm them. */
	KASSERT(mm_port_used((void *)base, MM_PAGE_SIZE));
	test_port_unused((void *)base, MM_PAGE_SIZE);
	size_t frames1 = frames_free_count();

	size_t nscav = 0;
	uintptr_t a = palloc_alloc(&heap, 8, &nscav);
	KEXPECT_EQ(a, base);  /* lowest address first */
	KEXPECT_EQ(nscav, 8); /* grown pages start scavenged */
	/* 510 pages no longer fit in chunk 0 (504 left): the middle one. */
	uintptr_t b = palloc_alloc(&heap, 510, &nscav);
	KASSERT_EQ(b, chunks[1]);
	/* No two grown chunks are adjacent: 513 pages fit nowhere. */
	KEXPECT_EQ(palloc_alloc(&heap, 513, &nscav), 0);
	KASSERT(mm_port_used((void *)a, 8 * MM_PAGE_SIZE));
	for (int i = 0; i < 8; i++)
		((volatile uint64_t *)a)[i * 512] = 0x5eed0000 + i;
	int ok = 0;
	for (int i = 0; i < 8; i++)
		ok += ((volatile uint64_t *)a)[i * 512] == 0x5eed0000u + i;
	KEXPECT_EQ(ok, 8);
	palloc_check(&heap);

	test_port_unused((void *)a, 8 * MM_PAGE_SIZE);
	KEXPECT(!vm_translate(a, NULL, NULL));
	palloc_free(&heap, a, 8);
	palloc_free(&heap, b, 510);
	palloc_check(&heap);
	/* Every data frame came back; only metadata and tables stay. */
	KEXPECT_EQ(frames_free_count(), frames1);
}
