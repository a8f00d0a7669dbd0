/*
 * tests/port/min_port_test.c: the page heap and the span heap over the
 * minimal port (min_port.c): one CPU, no threads, a static address space.
 * Set up as docs/PORTING.md section 3 says, then allocation, free,
 * realloc, aligned and zeroed objects, running out, a reserved-element
 * pool outlasting it, and giving everything back, each checked against
 * the bytes and against the heaps' checkers.
 *
 * The tests share one heap (the port cannot give its space back except in
 * the order reserved); each leaves it with nothing in use. main runs those
 * argv[1] selects (a glob list, as host-test takes) and prints KTAP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel/ktest.h"
#include "mm/mm.h"
#include "tests/port/min_port.h"

#define ARENA_BYTES ((size_t)16 << 20) /* 8 chunks */

static struct mheap heap;
static struct spanheap objs;
static bool heap_ready;
/* What the port had reserved when the heaps were set up (every test sets
 * them up first, so they hold the first reservations). */
static size_t heap_space;
static uint64_t heap_nreserves;

/* The heap as PORTING.md section 3 sets it up; NULL (and a failure) if it
 * could not be. */
static struct spanheap *heap_get(void)
{
	if (heap_ready)
		return &objs;
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = ARENA_BYTES;
	cfg.reserve_pages = 16;
	if (!mheap_init(&heap, &cfg)) {
		ktest_fail_at(__FILE__, __LINE__, "mheap_init failed");
		return NULL;
	}
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	if (!spanheap_init(&objs, &heap, &sc)) {
		ktest_fail_at(__FILE__, __LINE__, "spanheap_init failed");
		return NULL;
	}
	/* The page heap's scavenger after spanheap_init, which refuses a
	 * page heap whose thread runs; no threads here, so it is refused
	 * (init_without_threads checks how). */
	(void)mheap_scavenger_start(&heap);
	heap_ready = true;
	heap_space = min_port_reserved_bytes();
	heap_nreserves = min_port_n.reserves;
	return &objs;
}

static unsigned char pattern(const void *obj, size_t off)
{
	return (unsigned char)((uintptr_t)obj / 16 * 7 + off * 13 + 1);
}

static void fill(void *obj, size_t n)
{
	for (size_t i = 0; i < n; i++)
		((unsigned char *)obj)[i] = pattern(obj, i);
}

/* The offset of the first byte of obj[0, n) that is not fill(tag)'s, or n. */
static size_t first_bad(const void *obj, const void *tag, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (((const unsigned char *)obj)[i] != pattern(tag, i))
			return i;
	return n;
}

static size_t in_use_pages(void)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	return st.in_use_pages;
}

/* After a release: no object, no span and no large object left. (Span
 * structs and a magazine slab stay, by design: PORTING.md section 3.) */
static void expect_nothing_held(struct spanheap *sh)
{
	struct spanheap_stats st;
	spanheap_stats(sh, &st);
	KEXPECT_EQ(st.bytes_in_use, 0);
	KEXPECT_EQ(st.spans, 0);
	KEXPECT_EQ(st.large_pages, 0);
	KEXPECT_EQ(st.heap.free_backed_pages, 0);
}

/* The address space mheap_init reserves for an arena of nbytes (with a
 * bitmap of mapped metadata pages of one page). */
static size_t mheap_space(size_t nbytes)
{
	size_t table = nbytes / MM_PAGE_SIZE * 8 + MM_PAGE_SIZE;
	return nbytes + table + palloc_metadata_bytes(nbytes, 0) + MM_PAGE_SIZE;
}

static void check_heaps(struct spanheap *sh)
{
	spanheap_check(sh);
	mheap_check(&heap);
}

KTEST(min_port, init_without_threads)
{
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	/* No threads here: both background threads are refused, cleanly,
	 * each saying so. */
	uint64_t logs = min_port_n.logs;
	KEXPECT(!mheap_scavenger_start(&heap));
	KEXPECT_EQ(min_port_n.logs, logs + 1);
	KEXPECT_STREQ(min_port_last_log,
	              "mheap: cannot start the scavenger thread");
	KEXPECT(!spanheap_sweeper_start(sh));
	KEXPECT_EQ(min_port_n.logs, logs + 2);
	KEXPECT_STREQ(min_port_last_log,
	              "spanheap: cannot start the sweeper thread");
	KEXPECT_EQ(min_port_n.thread_refusals, 3); /* heap_get's, these two */
	mheap_scavenger_stop(&heap);               /* nothing to join */
	spanheap_sweeper_stop(sh);
	KEXPECT(min_port_in_space((void *)heap.arena_base));
	/* What PORTING.md says mheap_init reserves: the arena, the span
	 * table (8 bytes a page, plus a page), then palloc's metadata,
	 * palloc_metadata_bytes and its bitmap of mapped pages (a page
	 * here); 16440 KiB in all for 16 MiB. spanheap_init then makes its
	 * metadata heap the same way, over an arena of
	 * spanheap_meta_arena_bytes (4 MiB, its floor, for 16 MiB), its
	 * arena chunk aligned like the first (the port bumps a pointer from
	 * a chunk-aligned start): 1992 KiB skipped, then 4128 KiB. */
	KEXPECT_EQ(heap_nreserves, 6);
	size_t meta = spanheap_meta_arena_bytes(&sh->cfg, ARENA_BYTES);
	KEXPECT_EQ(sh->meta.arena_pages * MM_PAGE_SIZE, meta);
	size_t first = (mheap_space(ARENA_BYTES) + PALLOC_CHUNK_BYTES - 1) /
	               PALLOC_CHUNK_BYTES * PALLOC_CHUNK_BYTES;
	KEXPECT_EQ(heap_space, first + mheap_space(meta));
	KEXPECT_EQ(heap_space, (size_t)(18432 + 4128) << 10);
	KEXPECT_EQ(mheap_space(ARENA_BYTES), (size_t)16440 << 10);
	/* PORTING.md's sum of what the two set-ups reserve: all of it but
	 * the padding before the metadata heap's chunk-aligned arena. */
	size_t room = mheap_reserved_bytes(ARENA_BYTES) +
	              mheap_reserved_bytes(spanheap_meta_arena_bytes(
	                      &sh->cfg, ARENA_BYTES)) +
	              spanheap_guard_bytes(sh->cfg.guard_slots);
	KEXPECT_EQ(heap_space - room, first - mheap_space(ARENA_BYTES));
	/* What the hosted malloc fits under a limit (malloc/arena.c). */
	KEXPECT_EQ(mheap_reserved_bytes(ARENA_BYTES), mheap_space(ARENA_BYTES));
	KEXPECT_EQ(mheap_reserved_bytes(meta), mheap_space(meta));
	ktest_diag("%llu reservations, %zu KiB of address space for a %zu MiB "
	           "arena",
	           (unsigned long long)heap_nreserves, heap_space >> 10,
	           ARENA_BYTES >> 20);
	ktest_diag("so far: %llu event waits timed out, %llu pages released",
	           (unsigned long long)min_port_n.event_timeouts,
	           (unsigned long long)min_port_n.released_pages);
	check_heaps(sh);
}

/* PORTING.md section 3's order: spanheap_init refuses a page heap not
 * set up, saying so and reserving nothing; the metadata heap it makes is
 * served by the page heap's scavenger and takes none of its own, refused
 * with a line before the port is asked for a thread. */
KTEST(min_port, set_up_order)
{
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	static struct mheap unset;
	static struct spanheap other;
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	uint64_t reserves = min_port_n.reserves, logs = min_port_n.logs;
	KEXPECT(!spanheap_init(&other, &unset, &sc));
	KEXPECT_EQ(min_port_n.reserves, reserves);
	KEXPECT_EQ(min_port_n.logs, logs + 1);
	KEXPECT_STREQ(min_port_last_log,
	              "spanheap: the page heap is not set up (its mheap_init "
	              "failed or was not called)");
	uint64_t refusals = min_port_n.thread_refusals;
	KEXPECT(!mheap_scavenger_start(&sh->meta));
	KEXPECT_EQ(min_port_n.logs, logs + 2);
	KEXPECT_STREQ(min_port_last_log,
	              "mheap: no scavenger of its own for a heap served by "
	              "another heap's (start that one)");
	KEXPECT_EQ(min_port_n.thread_refusals, refusals);
	KEXPECT(sh->meta.scav_by == &heap);
	KEXPECT(heap.scav_also == &sh->meta);
}

/* Every size from 0 to 64 KiB in uneven steps, then a few large ones, all
 * live at once, each filled and read back before any is freed. */
KTEST(min_port, alloc_free_every_size)
{
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	static void *objs_live[600];
	static size_t sizes[600];
	size_t n = 0;
	for (size_t size = 0; size <= 65536 && n < 590; size += size / 8 + 1)
		sizes[n++] = size;
	sizes[n++] = 300000;
	sizes[n++] = 1 << 20;
	for (size_t i = 0; i < n; i++) {
		objs_live[i] = spanheap_alloc(sh, sizes[i], 0);
		KASSERT(objs_live[i] != NULL);
		KASSERT(min_port_in_space(objs_live[i]));
		KEXPECT_EQ((uintptr_t)objs_live[i] % 16, 0);
		KEXPECT(spanheap_usable_size(sh, objs_live[i]) >= sizes[i]);
		fill(objs_live[i], sizes[i]);
	}
	check_heaps(sh);
	for (size_t i = 0; i < n; i++) {
		size_t bad = first_bad(objs_live[i], objs_live[i], sizes[i]);
		if (bad != sizes[i])
			ktest_fail_at(
			        __FILE__, __LINE__,
			        "object %zu (%zu bytes): byte %zu changed", i,
			        sizes[i], bad);
		spanheap_free(sh, objs_live[i]);
	}
	spanheap_release_all(sh);
	expect_nothing_held(sh);
	check_heaps(sh);
}

/* Grows one object from 10 bytes to 2 MiB and back, checking every byte a
 * realloc must keep each time. */
KTEST(min_port, realloc_keeps_every_byte)
{
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	size_t size = 10;
	unsigned char *p = spanheap_alloc(sh, size, 0);
	KASSERT(p != NULL);
	const void *tag = p;
	fill(p, size);
	for (int dir = 1; dir >= -1; dir -= 2) {
		for (int i = 0; i < 18; i++) {
			size_t next = dir > 0 ? size * 2 : size / 2 + 1;
			unsigned char *q = spanheap_realloc(sh, p, next, 0);
			KASSERT(q != NULL);
			size_t keep = next < size ? next : size;
			size_t bad = first_bad(q, tag, keep);
			if (bad != keep) {
				ktest_fail_at(__FILE__, __LINE__,
				              "realloc %zu -> %zu: byte %zu "
				              "changed",
				              size, next, bad);
				spanheap_free(sh, q);
				return;
			}
			for (size_t j = keep; j < next; j++)
				q[j] = pattern(tag, j);
			p = q;
			size = next;
		}
	}
	KEXPECT(spanheap_realloc(sh, p, 0, 0) == NULL); /* frees p */
	spanheap_release_all(sh);
	expect_nothing_held(sh);
	check_heaps(sh);
}

KTEST(min_port, aligned_and_zeroed)
{
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	static const size_t aligns[] = {1, 16, 64, 512, 4096, 8192, 3 * 4096};
	for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
		for (size_t size = 1; size < 40000; size = size * 3 + 5) {
			void *p =
			        spanheap_alloc_aligned(sh, size, aligns[i], 0);
			KASSERT(p != NULL);
			KEXPECT_EQ((uintptr_t)p % aligns[i], 0);
			fill(p, size);
			spanheap_free(sh, p);
		}
	}
	/* Neither a power of two up to a page nor a page multiple above. */
	KEXPECT(spanheap_alloc_aligned(sh, 100, 24, 0) == NULL);
	KEXPECT(spanheap_alloc_aligned(sh, 100, 4096 + 16, 0) == NULL);
	/* Zeroed objects on memory the frees above left dirty. */
	for (size_t size = 1; size < 70000; size = size * 2 + 3) {
		unsigned char *p = spanheap_calloc(sh, size, 1, 0);
		KASSERT(p != NULL);
		for (size_t j = 0; j < size; j++)
			if (p[j]) {
				ktest_fail_at(__FILE__, __LINE__,
				              "calloc(%zu): byte %zu is %#x",
				              size, j, p[j]);
				break;
			}
		spanheap_free(sh, p);
	}
	KEXPECT(spanheap_calloc(sh, SIZE_MAX / 2, 4, 0) == NULL);
	void *a = spanheap_alloc(sh, 48, MM_ATOMIC | MM_ZERO);
	KEXPECT(a != NULL);
	spanheap_free(sh, a);
	spanheap_release_all(sh);
	expect_nothing_held(sh);
	check_heaps(sh);
}

/* Fills the arena with 256 KiB objects until the heap says no, then frees
 * them: NULL, and nothing leaked. */
/* Fills the arena with 256 KiB objects until the heap says no, then frees
 * them; returns how many it got. */
static size_t fill_arena(struct spanheap *sh)
{
	static void *held[ARENA_BYTES / (256 << 10) + 1];
	size_t n = 0;
	while (n < sizeof(held) / sizeof(held[0])) {
		held[n] = spanheap_alloc(sh, 256 << 10, 0);
		if (!held[n])
			break;
		fill(held[n], 256 << 10);
		n++;
	}
	KEXPECT(n < sizeof(held) / sizeof(held[0])); /* it did run out */
	KEXPECT(spanheap_alloc(sh, 1 << 20, MM_ATOMIC) == NULL);
	for (size_t i = 0; i < n; i++) {
		size_t bad = first_bad(held[i], held[i], 256 << 10);
		if (bad != 256 << 10)
			ktest_fail_at(__FILE__, __LINE__,
			              "object %zu: byte %zu changed", i, bad);
		spanheap_free(sh, held[i]);
	}
	spanheap_release_all(sh);
	return n;
}

/* Out of memory is NULL, and nothing leaked: a second run gets as many
 * objects and ends with as many pages in use. */
KTEST(min_port, out_of_memory_leaks_nothing)
{
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	size_t first = fill_arena(sh);
	size_t floor_pages = in_use_pages();
	KEXPECT(first >= ARENA_BYTES / (256 << 10) / 2);
	KEXPECT_EQ(fill_arena(sh), first);
	KEXPECT_EQ(in_use_pages(), floor_pages);
	expect_nothing_held(sh);
	check_heaps(sh);
}

/* Release everything: no free page keeps its memory, and pages given back
 * come back zeroed, never with the port's poison. */
KTEST(min_port, release_everything)
{
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	void *p = spanheap_alloc(sh, 100000, 0);
	KASSERT(p != NULL);
	fill(p, 100000);
	spanheap_free(sh, p);
	uint64_t released = min_port_n.released_pages;
	spanheap_release_all(sh);
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	KEXPECT_EQ(st.free_backed_pages, 0);
	KEXPECT(min_port_n.released_pages > released);
	KEXPECT(min_port_page_scavenged(p));
	unsigned char *q = spanheap_alloc(sh, 100000, 0);
	KASSERT(q != NULL);
	for (size_t j = 0; j < 100000; j++)
		if (q[j] != 0) {
			ktest_fail_at(__FILE__, __LINE__,
			              "reused page: byte %zu is %#x", j, q[j]);
			break;
		}
	spanheap_free(sh, q);
	KEXPECT_EQ(min_port_n.log_under_lock, 0);
	check_heaps(sh);
}

/* A reserved-element pool on the one-thread port: with the arena full, its
 * reserve still hands out its elements, MM_ATOMIC calls then get NULL,
 * and a free puts one back for the next call. (A sleeping call with the
 * reserve empty would wait for ever here: no other thread can free.)
 * Large objects fill the arena, so that no span struct is left among its
 * pages after (the next tests want long runs); everything goes back. */
KTEST(min_port, a_pool_reserve_outlasts_the_arena)
{
	enum { ELEM = 128 << 10 };
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	static struct mempool pool;
	KASSERT(mempool_init_heap(&pool, sh, "min", 4, ELEM));
	static void *held[2 * ARENA_BYTES / ELEM];
	size_t n = 0;
	for (size_t size = 2 * ELEM; size >= ELEM; size /= 2)
		while (n < sizeof(held) / sizeof(held[0]) &&
		       (held[n] = spanheap_alloc(sh, size, 0)))
			n++;
	KEXPECT(n < sizeof(held) / sizeof(held[0])); /* it ran out */
	void *e[4];
	for (int i = 0; i < 4; i++) {
		KASSERT(e[i] = mempool_alloc(&pool, MM_ATOMIC | MM_ZERO));
		size_t z = 0;
		while (z < ELEM && ((unsigned char *)e[i])[z] == 0)
			z++;
		KEXPECT_EQ(z, ELEM);
		fill(e[i], ELEM);
	}
	KEXPECT(mempool_alloc(&pool, MM_ATOMIC) == NULL);
	mempool_free(&pool, e[3]);
	KEXPECT((e[3] = mempool_alloc(&pool, 0)) != NULL);
	struct mempool_info in;
	mempool_info(&pool, &in);
	KEXPECT(in.from_reserve == 5 && in.atomic_fails == 1 && in.out == 4);
	for (int i = 0; i < 3; i++) /* e[3] came back through the reserve */
		KEXPECT_EQ(first_bad(e[i], e[i], ELEM), ELEM);
	for (int i = 0; i < 4; i++)
		mempool_free(&pool, e[i]);
	mempool_check(&pool);
	KEXPECT(mempool_destroy(&pool));
	for (size_t i = 0; i < n; i++)
		spanheap_free(sh, held[i]);
	spanheap_release_all(sh);
	expect_nothing_held(sh);
	check_heaps(sh);
}

/* MHEAP_DEBUG_SCAV_ON_FREE: a free from a thread unmaps its pages at once;
 * one that cannot sleep (pinned here) frees them the ordinary way, as
 * mheap.h says, and the port panics if it is made to unmap while pinned. */
KTEST(min_port, debug_scav_on_free_in_both_contexts)
{
	KASSERT(heap_get() != NULL); /* the first reservations are its */
	static struct mheap dh;
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 0;
	cfg.flags = MHEAP_DEBUG_SCAV_ON_FREE;
	KASSERT(mheap_init(&dh, &cfg));
	unsigned char *p = mheap_alloc_pages(&dh, 4, 0);
	KASSERT(p != NULL);
	fill(p, 4 * MM_PAGE_SIZE);
	mheap_free_pages(&dh, p, 4);
	KEXPECT(min_port_page_scavenged(p));
	KEXPECT(min_port_page_scavenged(p + 3 * MM_PAGE_SIZE));
	unsigned char *q = mheap_alloc_pages(&dh, 4, MHEAP_ZERO);
	KASSERT(q != NULL);
	KEXPECT_EQ(q[0], 0);
	fill(q, 4 * MM_PAGE_SIZE);
	struct mm_pin pin = mm_port_pin();
	mheap_free_pages(&dh, q, 4);
	mm_port_unpin(pin);
	KEXPECT(!min_port_page_scavenged(q));
	KEXPECT_EQ(first_bad(q, q, 4 * MM_PAGE_SIZE), 4 * MM_PAGE_SIZE);
	mheap_check(&dh);
}

/* PORTING.md section 3: mheap_init grows nothing, and a page heap used
 * on its own is grown to its reserve by mheap_refill, after which its
 * first MHEAP_ATOMIC | MHEAP_NO_GROW allocation finds pages;
 * spanheap_init grows the page heap it is given the same way. */
KTEST(min_port, a_page_heap_alone_refills_to_its_reserve)
{
	struct mheap_stats st;
	KASSERT(heap_get() != NULL);
	mheap_stats(&heap, &st);
	KEXPECT(st.grown_pages >= 16); /* heap_get's reserve_pages */
	static struct mheap alone;
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = 2 * PALLOC_CHUNK_BYTES;
	cfg.reserve_pages = 16;
	KASSERT(mheap_init(&alone, &cfg));
	mheap_stats(&alone, &st);
	KEXPECT_EQ(st.grown_pages, 0);
	KEXPECT(mheap_alloc_pages(&alone, 1, MHEAP_ATOMIC | MHEAP_NO_GROW) ==
	        NULL);
	KEXPECT(mheap_refill(&alone));
	mheap_stats(&alone, &st);
	KEXPECT(st.grown_pages >= 16);
	void *p = mheap_alloc_pages(&alone, 1, MHEAP_ATOMIC | MHEAP_NO_GROW);
	KEXPECT(p != NULL);
	if (p)
		mheap_free_pages(&alone, p, 1);
	mheap_check(&alone);
}

/* Runs free(p) expecting mm_panic; true if it came, with want in its
 * message. */
static bool free_panics(struct spanheap *sh, void *p, const char *want)
{
	jmp_buf jb;
	min_port_last_panic[0] = '\0';
	min_port_catch = &jb;
	if (setjmp(jb) == 0) {
		spanheap_free(sh, p);
		min_port_catch = NULL;
		return false;
	}
	return strstr(min_port_last_panic, want) != NULL;
}

/* Misuse reaches the port's mm_panic, in the build PORTING.md describes
 * (no test hooks), and is refused before the heap changes: the checkers
 * pass afterwards and everything still goes back. */
KTEST(min_port, misuse_reaches_mm_panic)
{
	struct spanheap *sh = heap_get();
	KASSERT(sh != NULL);
	void *small = spanheap_alloc(sh, 48, 0);
	char *mid = spanheap_alloc(sh, 200, 0);
	void *large = spanheap_alloc(sh, 100000, 0);
	static char not_heap[64];
	KASSERT(small && mid && large);
	spanheap_free(sh, small);
	KEXPECT(free_panics(sh, small, "double free"));
	KEXPECT(free_panics(sh, mid + 16, "interior pointer"));
	spanheap_free(sh, large);
	KEXPECT(free_panics(sh, large, "freed twice"));
	KEXPECT(free_panics(sh, not_heap, "foreign pointer"));
	spanheap_free(sh, mid);
	check_heaps(sh);
	spanheap_release_all(sh);
	expect_nothing_held(sh);
}

/* ---- The runner ---- */

extern const struct ktest __start_ktests[], __stop_ktests[];

void ktest_port_vprintf(const char *fmt, va_list ap)
{
	vprintf(fmt, ap);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	return ktest_run(__start_ktests, __stop_ktests,
	                 argc > 1 ? argv[1] : NULL) == KTEST_PASSED
	               ? 0
	               : 1;
}
