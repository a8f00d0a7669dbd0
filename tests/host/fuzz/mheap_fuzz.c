/*
 * tests/host/fuzz/mheap_fuzz.c: libFuzzer target for the page heap
 * (mm/mheap*.c), against a model of the runs its callers hold.
 *
 * Input: one byte choosing the heap (an arena of 1, 2, 4 or 8 chunks; a
 * reserve of 0, 16, 128 or 600 pages; a low watermark or none; scavenge
 * on free or not), then 5-byte operations: an op byte, a 3-byte argument
 * and a 1-byte argument. The operations: allocate (any size up to past
 * the arena; MHEAP_ATOMIC, in simulated atomic context, MHEAP_NO_GROW,
 * MHEAP_ZERO); free (from atomic context or not); extend in place (and
 * calls that are no run, which must be refused); release everything;
 * check; make the next maps fail; make frames short. Checked at each
 * step, what mheap.h promises: a run handed out is page-aligned, in the
 * grown arena, shares no page with a run held, and reads zero with
 * MHEAP_ZERO; an atomic one is at most MHEAP_ATOMIC_MAX_PAGES; an
 * extension succeeds exactly when the pages after the run are free pages
 * of the grown heap (or a map failed), and changes nothing when it does
 * not; every run keeps the stamp written in it; after release_all no
 * free page is backed; and (each check and at the end) mheap_check and
 * the statistics: in use is what the model holds, and in use, free and
 * being scavenged add up to the grown pages. An unexpected mm_panic or a
 * divergence aborts, which libFuzzer reports with the input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../mm/mheap.h"
#include "../mheap_test_util.h"
#include "../mm_port_posix.h"

#define PG       MM_PAGE_SIZE
#define MAX_LIVE 128

struct run {
	uintptr_t base;
	size_t npages;
	uint64_t stamp;
};

static struct mheap heap;
static struct run live[MAX_LIVE];
static size_t nlive;
static uint64_t next_stamp;
static bool maps_may_fail;
static unsigned step;

static void fail(const char *what)
{
	fprintf(stderr, "mheap_fuzz: step %u: %s\n", step, what);
	abort();
}

/* The pages of r the stamp is written to: the first, the middle and the
 * last (a run may be thousands of pages). */
static uint64_t *stamp_at(const struct run *r, unsigned k)
{
	size_t pg = k == 0 ? 0 : k == 1 ? r->npages / 2 : r->npages - 1;
	return (uint64_t *)(r->base + pg * PG + 8 * k);
}

static void stamp(struct run *r)
{
	r->stamp = ++next_stamp * 0x9e3779b97f4a7c15ull;
	for (unsigned k = 0; k < 3; k++)
		*stamp_at(r, k) = r->stamp + k;
}

static void check_stamps(void)
{
	for (size_t i = 0; i < nlive; i++)
		for (unsigned k = 0; k < 3; k++)
			if (*stamp_at(&live[i], k) != live[i].stamp + k)
				fail("a run held lost its stamp");
}

static size_t grown_pages(void)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	return st.grown_pages;
}

/* True if [base, base + n pages) shares a page with a run held (but
 * the one at skip). */
static bool overlaps_live(uintptr_t base, size_t n, size_t skip)
{
	for (size_t i = 0; i < nlive; i++)
		if (i != skip && base < live[i].base + live[i].npages * PG &&
		    live[i].base < base + n * PG)
			return true;
	return false;
}

static void check_heap(void)
{
	struct mheap_stats st;
	if (MM_PORT_PANICS(mheap_check(&heap))) {
		fprintf(stderr, "%s\n", mm_port_last_panic());
		fail("mheap_check panicked");
	}
	mheap_stats(&heap, &st);
	size_t held = 0;
	for (size_t i = 0; i < nlive; i++)
		held += live[i].npages;
	if (st.in_use_pages != held)
		fail("in use is not what the callers hold");
	if (st.grown_pages % PALLOC_CHUNK_PAGES ||
	    st.grown_pages > heap.arena_pages ||
	    st.in_use_pages + st.free_backed_pages + st.free_scav_pages +
	                    st.scavenging_pages !=
	            st.grown_pages)
		fail("in use, free and being scavenged are not the grown "
		     "pages");
	check_stamps();
}

/* True if the arena has n free pages in a row, by the model (every page
 * not held is free or not yet grown). */
static bool model_has_room(size_t n)
{
	uintptr_t end = heap.arena_base + heap.arena_pages * PG;
	for (uintptr_t at = heap.arena_base; at + n * PG <= end;) {
		size_t hit = SIZE_MAX;
		for (size_t i = 0; i < nlive; i++)
			if (at < live[i].base + live[i].npages * PG &&
			    live[i].base < at + n * PG)
				hit = i;
		if (hit == SIZE_MAX)
			return true;
		at = live[hit].base + live[hit].npages * PG;
	}
	return false;
}

static bool frames_short;

/* After a thread's allocation or extension: free pages are at the
 * reserve or more, unless the chunks that would make it up do not fit
 * in the arena (a growth that cannot be whole claims nothing). */
static void check_reserve(void)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	size_t free = st.free_backed_pages + st.free_scav_pages;
	if (maps_may_fail || free >= st.reserve_pages)
		return;
	size_t chunks = (st.reserve_pages - free + PALLOC_CHUNK_PAGES - 1) /
	                PALLOC_CHUNK_PAGES;
	if (st.grown_pages + chunks * PALLOC_CHUNK_PAGES <= heap.arena_pages)
		fail("free pages left under the reserve with room to grow");
}

static void check_zero(const struct run *r)
{
	static const char zero[PG];
	for (unsigned k = 0; k < 3; k++) {
		size_t pg = k == 0 ? 0 : k == 1 ? r->npages / 2 : r->npages - 1;
		if (memcmp((void *)(r->base + pg * PG), zero, PG) != 0)
			fail("an MHEAP_ZERO run holds a byte that is not 0");
	}
}

static void op_alloc(uint64_t a, uint8_t b)
{
	size_t n = b & 0x80 ? 1 + a % 64 : a % (heap.arena_pages + 8);
	unsigned flags = b & (MHEAP_ATOMIC | MHEAP_NO_GROW | MHEAP_ZERO);
	bool atomic = flags & MHEAP_ATOMIC;
	if (nlive == MAX_LIVE)
		return;
	bool room = n && model_has_room(n);
	mm_port_set_atomic(atomic);
	void *p = mheap_alloc_pages(&heap, n, flags);
	mm_port_set_atomic(false);
	if (!p) {
		if (room && !atomic && !(flags & MHEAP_NO_GROW) &&
		    !maps_may_fail && !frames_short)
			fail("NULL though the arena has the room");
		return;
	}
	struct run r = {(uintptr_t)p, n, 0};
	if (n == 0 || (atomic && n > MHEAP_ATOMIC_MAX_PAGES))
		fail("a run handed out for a request that must get NULL");
	if (r.base % PG || r.base < heap.arena_base ||
	    r.base + n * PG > heap.arena_base + grown_pages() * PG)
		fail("a run handed out outside the grown arena");
	if (overlaps_live(r.base, n, SIZE_MAX))
		fail("a run handed out shares a page with one held");
	if (flags & MHEAP_ZERO)
		check_zero(&r);
	stamp(&r);
	live[nlive++] = r;
	if (!atomic && !(flags & MHEAP_NO_GROW))
		check_reserve();
}

static void op_free(uint64_t a, uint8_t b)
{
	if (!nlive)
		return;
	size_t i = a % nlive;
	check_stamps();
	mm_port_set_atomic(b & 1);
	mheap_free_pages(&heap, (void *)live[i].base, live[i].npages);
	mm_port_set_atomic(false);
	live[i] = live[--nlive];
}

/* Calls that are no run: each must be refused, changing nothing. */
static void op_extend_bad(uint64_t a, uint8_t b)
{
	uintptr_t base = nlive ? live[a % nlive].base : heap.arena_base;
	bool r;
	switch (b % 3) {
	case 0:
		r = mheap_extend_pages(&heap, (void *)base, 0, 1 + a % 8, 0);
		break;
	case 1:
		r = mheap_extend_pages(&heap, (void *)(heap.arena_base - PG), 1,
		                       1, 0);
		break;
	default:
		r = mheap_extend_pages(&heap, (void *)base,
		                       heap.arena_pages + 1, 1, 0);
		break;
	}
	if (r)
		fail("an extension of no run accepted");
}

static void op_extend(uint64_t a, uint8_t b)
{
	if (b & 0x80) {
		op_extend_bad(a, b);
		return;
	}
	if (!nlive)
		return;
	size_t i = a % nlive;
	struct run *r = &live[i];
	size_t extra = b & 0x40 ? (a >> 8) % heap.arena_pages : b % 64;
	uintptr_t end = r->base + r->npages * PG;
	bool free_after =
	        end + extra * PG <= heap.arena_base + grown_pages() * PG &&
	        !overlaps_live(end, extra, i);
	bool ok =
	        mheap_extend_pages(&heap, (void *)r->base, r->npages, extra, 0);
	if (ok && !free_after && extra)
		fail("extended onto pages that are not free pages of the heap");
	if (!ok && (free_after || !extra) && !maps_may_fail)
		fail("an extension onto free pages refused");
	check_stamps();
	if (ok) {
		r->npages += extra;
		stamp(r);
		if (extra) /* no pages taken: no refill owed */
			check_reserve();
	}
}

static void op_release(void)
{
	struct mheap_stats st;
	mheap_release_all(&heap);
	mheap_stats(&heap, &st);
	if (st.free_backed_pages || st.scavenging_pages)
		fail("free backed pages left after mheap_release_all");
}

static void op_port(uint64_t a, uint8_t b)
{
	if (b & 1) {
		mm_port_fail_maps(1 + a % 3);
		maps_may_fail = true;
	} else {
		frames_short = b & 2;
		mm_port_set_free_pages(frames_short ? a % 2048 : SIZE_MAX / 2);
	}
}

static void run_op(unsigned op, uint64_t a, uint8_t b)
{
	switch (op) {
	case 0:
	case 1:
	case 2:
		op_alloc(a, b);
		break;
	case 3:
	case 4:
		op_free(a, b);
		break;
	case 5:
		op_extend(a, b);
		break;
	case 6:
		op_release();
		break;
	case 7:
		/* Pending injected failures end here: the claims after a
		 * check hold whole. */
		mm_port_fail_maps(0);
		maps_may_fail = false;
		check_heap();
		break;
	default:
		op_port(a, b);
		break;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	mm_port_set_quiet(true);
	return 0;
}

static bool heap_init(uint8_t c)
{
	static const size_t chunks[] = {1, 2, 4, 8};
	static const size_t reserve[] = {0, 16, 128, 600};
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = chunks[c & 3] * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = reserve[c >> 2 & 3];
	if (cfg.reserve_pages > cfg.arena_bytes / PG)
		cfg.reserve_pages = cfg.arena_bytes / PG / 2;
	cfg.low_watermark_pages = c & 16 ? 256 : 0;
	cfg.flags = c & 32 ? MHEAP_DEBUG_SCAV_ON_FREE : 0;
	return mheap_init(&heap, &cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!heap_init(data[0]))
		fail("mheap_init refused a sound configuration");
	nlive = 0;
	step = 0;
	for (size_t i = 1; i + 5 <= size; i += 5, step++) {
		uint64_t a = data[i + 1] | data[i + 2] << 8 |
		             (uint64_t)data[i + 3] << 16;
		run_op(data[i] % 10, a, data[i + 4]);
	}
	mm_port_fail_maps(0);
	maps_may_fail = false;
	check_heap();
	while (nlive)
		op_free(0, 0);
	frames_short = false;
	mm_port_set_free_pages(SIZE_MAX / 2);
	check_heap();
	op_release();
	mh_release(&heap);
	return 0;
}
