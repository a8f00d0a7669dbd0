/*
 * Bulk allocation and free on the span heap (mm/spanheap_bulk.c): every
 * class and large sizes, batches past a magazine's size, MM_ZERO, all or
 * nothing when memory runs out part way (a full arena, and the failure
 * injection), poison mode's fallback to the single calls, the refusals,
 * and misuse inside a batch, which must panic as the single free does and
 * name the entry's index. Each test checks the heap (spanheap_check) and
 * that every page came back.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_bulk.h"
#include "../../mm/spanheap_fail.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;
static void *v[1 << 17]; /* 4 chunks of 64-byte objects */
static char logbuf[4096];
static int a_static_object;

/* Fills n bytes at p with a pattern of tag and the offset. */
static void fill(void *p, size_t n, unsigned tag)
{
	unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(tag * 31 + i);
}

static bool filled(const void *p, size_t n, unsigned tag)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != (unsigned char)(tag * 31 + i))
			return false;
	return true;
}

/* The page heap's pages in use once every cache is handed back. */
static size_t pages_settled(void)
{
	spanheap_release_all(&sh);
	return sh_in_use_pages(&heap);
}

/* Allocates n objects of size in one batch, checks them (distinct, 16
 * aligned, usable size at least size), fills each, checks every fill,
 * frees the batch; false on a failed check (reported). */
static bool round_trip(size_t size, size_t n, unsigned flags)
{
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, size, flags, n, v), n);
	for (size_t i = 0; i < n; i++) {
		if (!v[i] || ((uintptr_t)v[i] & 15) ||
		    spanheap_usable_size(&sh, v[i]) < size) {
			ktest_fail_at(__FILE__, __LINE__,
			              "size %zu: entry %zu %p", size, i, v[i]);
			return false;
		}
		if ((flags & MM_ZERO) && size && !all_bytes(v[i], size, 0)) {
			ktest_fail_at(__FILE__, __LINE__,
			              "size %zu: entry %zu not zeroed", size,
			              i);
			return false;
		}
		fill(v[i], size, (unsigned)i);
	}
	for (size_t i = 0; i < n; i++)
		if (!filled(v[i], size, (unsigned)i)) {
			ktest_fail_at(__FILE__, __LINE__,
			              "size %zu: entry %zu overwritten", size,
			              i);
			return false;
		}
	spanheap_free_bulk(&sh, n, v);
	return true;
}

KTEST(spanheap_bulk, every_class_and_large_sizes)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t base = pages_settled();
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		size_t size = sizeclass_info[cls].size;
		if (!round_trip(size, size <= 1024 ? 300 : 40, 0))
			break;
		if (!round_trip(size - 1, 17, MM_ZERO))
			break;
	}
	round_trip(0, 64, 0);
	round_trip(SC_MAX_SIZE + 1, 5, 0);
	round_trip(200000, 3, MM_ZERO);
	SH_CHECK(&sh, "after the batches");
	KEXPECT_EQ(pages_settled(), base);
	sh_heap_release(&heap, &sh);
}

/* A batch many magazines long, and MM_ZERO over objects left dirty. */
KTEST(spanheap_bulk, batches_bigger_than_a_magazine)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t base = pages_settled();
	KEXPECT(round_trip(64, 4096, 0)); /* dirty: freed with the fill */
	KEXPECT(round_trip(64, 4096, MM_ZERO));
	KEXPECT(round_trip(512, 1000, MM_ATOMIC));
	mm_port_set_cpu(1); /* another CPU frees the first's objects */
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, 48, 0, 700, v), 700);
	mm_port_set_cpu(0);
	spanheap_free_bulk(&sh, 700, v);
	SH_CHECK(&sh, "after the batches");
	KEXPECT_EQ(pages_settled(), base);
	sh_heap_release(&heap, &sh);
}

/* A batch that fits the arena on paper but not beside a hog: 0, and every
 * object it had is back (its pages too). */
KTEST(spanheap_bulk, out_of_memory_mid_batch_leaks_nothing)
{
	static const size_t sizes[] = {2048, 64, 20000, 100000};
	for (size_t k = 0; k < 4; k++) {
		KASSERT(sh_heap_tight(&heap, &sh, 4));
		size_t base = pages_settled();
		void *hog = spanheap_alloc(&sh, 3 * PALLOC_CHUNK_BYTES, 0);
		KASSERT(hog);
		size_t n = 4 * PALLOC_CHUNK_BYTES / sizes[k];
		for (size_t i = 0; i < n; i++)
			v[i] = &a_static_object; /* entries past a failure */
		KEXPECT_EQ(spanheap_alloc_bulk(&sh, sizes[k], 0, n, v), 0);
		spanheap_free(&sh, hog);
		SH_CHECK(&sh, "after the failed batch");
		KEXPECT_EQ(pages_settled(), base);
		KEXPECT(round_trip(sizes[k], 8, 0)); /* and it works after */
		sh_heap_release(&heap, &sh);
	}
}

/* The failure injection (the tests' failpoints) fails call 50 of a
 * batch: 0, the 49 before it freed, the injection's count says one. */
KTEST(spanheap_bulk, injected_failure_mid_batch_leaks_nothing)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t base = pages_settled();
	struct spanheap_fail_attr a = {.interval = 50,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1};
	KASSERT(spanheap_fail_arm(&sh, &a));
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, 64, 0, 200, v), 0);
	KEXPECT(spanheap_fail_get(&sh, &a));
	KEXPECT_EQ(a.times, 0); /* the one failure was taken */
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, 64, 0, 200, v), 200);
	spanheap_free_bulk(&sh, 200, v);
	spanheap_fail_disarm(&sh);
	SH_CHECK(&sh, "after the injection");
	KEXPECT_EQ(pages_settled(), base);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_bulk, refusals_and_empty_batches)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	v[0] = &a_static_object;
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, 64, 0, 0, v), 0);
	KEXPECT(v[0] == &a_static_object); /* n 0 touches nothing */
	spanheap_free_bulk(&sh, 0, NULL);
	mm_port_log_capture(logbuf, sizeof(logbuf));
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, 64, 0, 4, NULL), 0);
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, 64, 1u << 9, 4, v), 0);
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, SH_ARENA_BYTES / 2, 0, 3, v), 0);
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, SIZE_MAX / 2, 0, 3, v), 0);
	spanheap_free_bulk(&sh, 3, NULL);
	mm_port_log_capture(NULL, 0);
	KEXPECT(strstr(logbuf, "alloc_bulk of 4 objects of 64 bytes refused: "
	                       "out is NULL"));
	KEXPECT(strstr(logbuf, "alloc_bulk of 64 bytes refused: unknown "
	                       "flags 0x200"));
	char want[120];
	snprintf(want, sizeof(want),
	         "alloc_bulk of 3 objects of %zu bytes refused: more than "
	         "the arena holds",
	         SH_ARENA_BYTES / 2);
	KEXPECT(strstr(logbuf, want));
	KEXPECT(strstr(logbuf, "free_bulk of 3 objects refused"));
	v[1] = NULL; /* NULL entries are nothing */
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, 64, 0, 1, v), 1);
	spanheap_free_bulk(&sh, 2, v);
	SH_CHECK(&sh, "after the refusals");
	sh_heap_release(&heap, &sh);
}

/* Poison mode takes the single calls: red zones, records, the owner
 * table; a right batch logs no misuse line. */
KTEST(spanheap_bulk, poison_mode_takes_the_single_calls)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	mm_port_log_capture(logbuf, sizeof(logbuf));
	KEXPECT(round_trip(24, 100, 0));
	KEXPECT(round_trip(40000, 3, MM_ZERO));
	mm_port_log_capture(NULL, 0);
	KEXPECT(!strstr(logbuf, "free_bulk"));
	KEXPECT_EQ(spanheap_alloc_bulk(&sh, 24, 0, 4, v), 4);
	((char *)v[2])[24] = 1; /* into its red zone */
	EXPECT_MISUSE(spanheap_free_bulk(&sh, 4, v),
	              "24 bytes asked: byte 24 is 0x1,", v[2]);
	sh_heap_release(&heap, &sh);
}

/* Misuse in a batch: the single free's panic, naming the pointer, after a
 * line naming its index; the entries before it were freed. */
static void expect_bulk_misuse(size_t n, size_t bad, const char *what)
{
	char idx[64];
	snprintf(idx, sizeof(idx), "entry %zu of %zu, %p", bad, n, v[bad]);
	mm_port_log_capture(logbuf, sizeof(logbuf));
	EXPECT_MISUSE(spanheap_free_bulk(&sh, n, v), what, v[bad]);
	mm_port_log_capture(NULL, 0);
	if (!strstr(logbuf, idx))
		ktest_fail_at(__FILE__, __LINE__, "no line \"%s\" in: %s", idx,
		              logbuf);
}

KTEST(spanheap_bulk, misuse_in_a_batch_names_the_entry)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(spanheap_alloc_bulk(&sh, 64, 0, 4, v) == 4);
	v[4] = v[1]; /* the same object twice */
	expect_bulk_misuse(5, 4, "double free");
	sh_heap_release(&heap, &sh);

	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(spanheap_alloc_bulk(&sh, 64, 0, 4, v) == 4);
	spanheap_free(&sh, v[3]); /* freed before the batch */
	expect_bulk_misuse(4, 3, "double free");
	sh_heap_release(&heap, &sh);

	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(spanheap_alloc_bulk(&sh, 64, 0, 4, v) == 4);
	v[2] = &a_static_object;
	expect_bulk_misuse(4, 2, "foreign pointer");
	sh_heap_release(&heap, &sh);

	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(spanheap_alloc_bulk(&sh, 64, 0, 4, v) == 4);
	v[1] = (char *)v[1] + 16;
	expect_bulk_misuse(4, 1, "interior pointer");
	sh_heap_release(&heap, &sh);

	KASSERT(sh_heap_fresh(&heap, &sh));
	KASSERT(spanheap_alloc_bulk(&sh, 100000, 0, 2, v) == 2);
	v[2] = v[0]; /* a large object twice */
	expect_bulk_misuse(3, 2, "a large span freed twice");
	sh_heap_release(&heap, &sh);
}
