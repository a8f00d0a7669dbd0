/*
 * tests/port/min_port_test.c: the page heap and the span heap over the
 * minimal port (min_port.c): one CPU, no threads, a static address space.
 * Set up as docs/PORTING.md section 3 says, then allocation, free,
 * realloc, aligned and zeroed objects, each checked against the bytes and
 * against the heaps' checkers. Running out, giving everything back and
 * misuse are min_port_limits_test.c's.
 *
 * The tests share one heap (the port cannot give its space back except in
 * the order reserved), set up here (min_port_test.h); each leaves it with
 * nothing in use. main runs those argv[1] selects (a glob list, as
 * host-test takes) and prints KTAP.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernel/ktest.h"
#include "mm/mm.h"
#include "tests/port/min_port.h"
#include "tests/port/min_port_test.h"

struct mheap test_heap;
static struct spanheap objs;
static bool heap_ready;
/* What the port had reserved when the heaps were set up (every test sets
 * them up first, so they hold the first reservations). */
static size_t heap_space;
static uint64_t heap_nreserves;

struct spanheap *test_heap_get(void)
{
	if (heap_ready)
		return &objs;
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	cfg.arena_bytes = ARENA_BYTES;
	cfg.reserve_pages = 16;
	if (!mheap_init(&test_heap, &cfg)) {
		ktest_fail_at(__FILE__, __LINE__, "mheap_init failed");
		return NULL;
	}
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	if (!spanheap_init(&objs, &test_heap, &sc)) {
		ktest_fail_at(__FILE__, __LINE__, "spanheap_init failed");
		return NULL;
	}
	/* The page heap's scavenger after spanheap_init, which refuses a
	 * page heap whose thread runs; no threads here, so it is refused
	 * (init_without_threads checks how). */
	(void)mheap_scavenger_start(&test_heap);
	heap_ready = true;
	heap_space = min_port_reserved_bytes();
	heap_nreserves = min_port_n.reserves;
	return &objs;
}

static unsigned char pattern(const void *obj, size_t off)
{
	return (unsigned char)((uintptr_t)obj / 16 * 7 + off * 13 + 1);
}

void test_fill(void *obj, size_t n)
{
	for (size_t i = 0; i < n; i++)
		((unsigned char *)obj)[i] = pattern(obj, i);
}

size_t test_first_bad(const void *obj, const void *tag, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (((const unsigned char *)obj)[i] != pattern(tag, i))
			return i;
	return n;
}

size_t test_in_use_pages(void)
{
	struct mheap_stats st;
	mheap_stats(&test_heap, &st);
	return st.in_use_pages;
}

/* (Span structs and a magazine slab stay, by design: PORTING.md section
 * 3.) */
void test_expect_nothing_held(struct spanheap *sh)
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
	size_t pages = nbytes / MM_PAGE_SIZE;
	size_t heads = (pages / 8 + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE *
	               MM_PAGE_SIZE; /* a bit a page: mheap_heads.c */
	size_t table = pages * 8 + MM_PAGE_SIZE + heads;
	/* palloc's metadata with the bitmap of its mapped pages packed in
	 * front (palloc_grow.c): none to a page more than without it. */
	size_t meta = palloc_reserved_bytes(nbytes, 0);
	size_t extra = meta - palloc_metadata_bytes(nbytes, 0);
	KEXPECT(extra <= MM_PAGE_SIZE);
	return nbytes + table + meta;
}

void test_check_heaps(struct spanheap *sh)
{
	spanheap_check(sh);
	mheap_check(&test_heap);
}

KTEST(min_port, init_without_threads)
{
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	/* No threads here: both background threads are refused, cleanly,
	 * each saying so. */
	uint64_t logs = min_port_n.logs;
	KEXPECT(!mheap_scavenger_start(&test_heap));
	KEXPECT_EQ(min_port_n.logs, logs + 1);
	KEXPECT_STREQ(min_port_last_log,
	              "mheap: cannot start the scavenger thread");
	KEXPECT(!spanheap_sweeper_start(sh));
	KEXPECT_EQ(min_port_n.logs, logs + 2);
	KEXPECT_STREQ(min_port_last_log,
	              "spanheap: cannot start the sweeper thread");
	KEXPECT_EQ(min_port_n.thread_refusals,
	           3);                    /* test_heap_get's, these two */
	mheap_scavenger_stop(&test_heap); /* nothing to join */
	spanheap_sweeper_stop(sh);
	KEXPECT(min_port_in_space((void *)test_heap.arena_base));
	/* What PORTING.md says mheap_init reserves: the arena, the span
	 * table (8 bytes a page, plus a page, plus the run starts' bit a
	 * page in whole pages), then palloc's metadata,
	 * palloc_reserved_bytes (palloc_metadata_bytes with the bitmap of
	 * mapped pages packed in: no page more here); 16428 KiB in all for
	 * 16 MiB (16444 until review rv107 packed palloc's parts).
	 * spanheap_init then makes its metadata heap the same way, over an
	 * arena of spanheap_meta_arena_bytes (4 MiB, its floor, for 16 MiB),
	 * its arena chunk aligned like the first (the port bumps a pointer
	 * from a chunk-aligned start): 2004 KiB skipped, then 4116 KiB. */
	KEXPECT_EQ(heap_nreserves, 6);
	size_t meta = spanheap_meta_arena_bytes(&sh->cfg, ARENA_BYTES);
	KEXPECT_EQ(sh->meta.arena_pages * MM_PAGE_SIZE, meta);
	size_t first = (mheap_space(ARENA_BYTES) + PALLOC_CHUNK_BYTES - 1) /
	               PALLOC_CHUNK_BYTES * PALLOC_CHUNK_BYTES;
	KEXPECT_EQ(heap_space, first + mheap_space(meta));
	KEXPECT_EQ(heap_space, (size_t)(18432 + 4116) << 10);
	KEXPECT_EQ(mheap_space(ARENA_BYTES), (size_t)16428 << 10);
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
	test_check_heaps(sh);
}

/* PORTING.md section 3's order: spanheap_init refuses a page heap not
 * set up, saying so and reserving nothing; the metadata heap it makes is
 * served by the page heap's scavenger and takes none of its own, refused
 * with a line before the port is asked for a thread. */
KTEST(min_port, set_up_order)
{
	struct spanheap *sh = test_heap_get();
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
	KEXPECT(sh->meta.scav_by == &test_heap);
	KEXPECT(test_heap.scav_also == &sh->meta);
}

/* Every size from 0 to 64 KiB in uneven steps, then a few large ones, all
 * live at once, each filled and read back before any is freed. */
KTEST(min_port, alloc_free_every_size)
{
	struct spanheap *sh = test_heap_get();
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
		test_fill(objs_live[i], sizes[i]);
	}
	test_check_heaps(sh);
	for (size_t i = 0; i < n; i++) {
		size_t bad =
		        test_first_bad(objs_live[i], objs_live[i], sizes[i]);
		if (bad != sizes[i])
			ktest_fail_at(
			        __FILE__, __LINE__,
			        "object %zu (%zu bytes): byte %zu changed", i,
			        sizes[i], bad);
		spanheap_free(sh, objs_live[i]);
	}
	spanheap_release_all(sh);
	test_expect_nothing_held(sh);
	test_check_heaps(sh);
}

/* Grows one object from 10 bytes to 2 MiB and back, checking every byte a
 * realloc must keep each time. */
KTEST(min_port, realloc_keeps_every_byte)
{
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	size_t size = 10;
	unsigned char *p = spanheap_alloc(sh, size, 0);
	KASSERT(p != NULL);
	const void *tag = p;
	test_fill(p, size);
	for (int dir = 1; dir >= -1; dir -= 2) {
		for (int i = 0; i < 18; i++) {
			size_t next = dir > 0 ? size * 2 : size / 2 + 1;
			unsigned char *q = spanheap_realloc(sh, p, next, 0);
			KASSERT(q != NULL);
			size_t keep = next < size ? next : size;
			size_t bad = test_first_bad(q, tag, keep);
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
	test_expect_nothing_held(sh);
	test_check_heaps(sh);
}

KTEST(min_port, aligned_and_zeroed)
{
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	static const size_t aligns[] = {1, 16, 64, 512, 4096, 8192, 3 * 4096};
	for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
		for (size_t size = 1; size < 40000; size = size * 3 + 5) {
			void *p =
			        spanheap_alloc_aligned(sh, size, aligns[i], 0);
			KASSERT(p != NULL);
			KEXPECT_EQ((uintptr_t)p % aligns[i], 0);
			test_fill(p, size);
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
	test_expect_nothing_held(sh);
	test_check_heaps(sh);
}

static void count_ctor(void *p)
{
	*(uint64_t *)p = 0xc7012;
}

/* A cache with a constructor works on a port without MM_PORT_RCU; a
 * TYPESAFE_BY_RCU one, which needs grace periods, is refused saying so. */
KTEST(min_port, typesafe_cache_refused_without_rcu)
{
	struct spanheap *sh = test_heap_get();
	KASSERT(sh != NULL);
	KEXPECT(!objcache_create_flags(sh, "typesafe", 64, 0,
	                               OBJCACHE_TYPESAFE_BY_RCU, NULL));
	KEXPECT(strstr(min_port_last_log, "MM_PORT_RCU") != NULL);
	struct objcache *c =
	        objcache_create_flags(sh, "built", 64, 0, 0, count_ctor);
	KASSERT(c != NULL);
	uint64_t *p = objcache_alloc(c, 0);
	KASSERT(p != NULL);
	KEXPECT_EQ(*p, 0xc7012);
	objcache_free(c, p);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	spanheap_release_all(sh);
	test_expect_nothing_held(sh);
	test_check_heaps(sh);
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
