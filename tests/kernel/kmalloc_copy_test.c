/*
 * kmalloc's arrays, copies, rounded sizes and wiping free
 * (kernel/heap_copy.h over mm/spanheap_copy.c) on the real kernel, in
 * whichever heap mode it booted (mm.debug_poison, mm.guard): overflow
 * refused with nothing allocated, copies of exactly the bytes asked,
 * kstrndup stopping at n and at the NUL, kmalloc_size_roundup against
 * ksize at every size class edge, and kfree_sensitive's zeroes read at
 * the heap's test hook before the free and, in normal mode, in the freed
 * object. The host suite's spanheap_copy tests check the same calls
 * exactly, over a heap of their own.
 */
#include <stdatomic.h>

#include "kernel/heap_copy.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/string.h"
#include "mm/mheap_testing.h"
#include "tests/kernel/heap_util.h"

static bool guarded(const void *p)
{
	return spanheap_guard_owns(&kspanheap.guard, p);
}

/* The heap's objects in use once everything cached is given back; with
 * nothing else allocating meanwhile (the suite runs one test at a time),
 * the same before and after a sequence that leaks nothing. */
static size_t settled_bytes_in_use(void)
{
	heap_release_all();
	struct spanheap_stats st;
	spanheap_stats(&kspanheap, &st);
	return st.bytes_in_use;
}

KTEST(kmalloc_copy, overflow_gives_null_and_leaks_nothing)
{
	/* Products that wrap to 16 bytes: allocated, they would leak. */
	size_t n = SIZE_MAX / 16 + 2;
	uint8_t *keep = kmalloc_array(10, 30, 0);
	KASSERT(keep != NULL);
	memset(keep, 0x5a, 300);
	size_t before = settled_bytes_in_use();
	unsigned got = 0;
	for (unsigned i = 0; i < 4; i++) {
		got += kmalloc_array(n, 16, 0) != NULL;
		got += kmalloc_array(16, n, KM_ATOMIC | KM_ZERO) != NULL;
		got += krealloc_array(keep, n, 16, 0) != NULL;
	}
	KEXPECT_EQ(got, 0);
	KEXPECT_EQ(settled_bytes_in_use(), before);
	size_t bad = 0;
	for (unsigned i = 0; i < 300; i++)
		bad += keep[i] != 0x5a;
	KEXPECT_EQ(bad, 0); /* krealloc_array kept it */
	keep = krealloc_array(keep, 100, 40, 0);
	KASSERT(keep != NULL);
	KEXPECT(ksize(keep) >= 4000);
	for (unsigned i = 0; i < 300; i++)
		bad += keep[i] != 0x5a;
	KEXPECT_EQ(bad, 0);
	KEXPECT(krealloc_array(keep, 0, 40, 0) == NULL); /* freed */
}

KTEST(kmalloc_copy, kmemdup_and_kstrndup_copy_exactly)
{
	static uint8_t src[5000];
	for (unsigned i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 13 + 1);
	static const size_t lens[] = {1, 16, 17, 100, 4096, 5000};
	for (unsigned k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		uint8_t *p = kmemdup(src, lens[k], KM_ZERO);
		KASSERT(p != NULL);
		KEXPECT(memcmp(p, src, lens[k]) == 0);
		size_t past = 0;
		for (size_t i = lens[k]; i < ksize(p); i++)
			past += p[i] != 0;
		KEXPECT_EQ(past, 0);
		kfree(p);
	}
	KEXPECT(kmemdup(NULL, 8, 0) == NULL);
	/* n before the NUL, the NUL before n, nothing, with KM_ATOMIC. */
	static const char text[] = "kernel\0hidden";
	char *a = kstrndup(text, 3, KM_ATOMIC);
	char *b = kstrndup(text, sizeof(text), KM_ZERO);
	char *c = kstrndup(text, 0, 0);
	char *d = kstrdup("whole string", 0);
	KASSERT(a && b && c && d);
	KEXPECT(memcmp(a, "ker", 4) == 0);
	KEXPECT(memcmp(b, "kernel", 7) == 0);
	size_t past = 0;
	for (size_t i = 7; i < ksize(b); i++)
		past += b[i] != 0; /* "hidden" not copied */
	KEXPECT_EQ(past, 0);
	KEXPECT_EQ(c[0], '\0');
	KEXPECT(strcmp(d, "whole string") == 0);
	kfree(a);
	kfree(b);
	kfree(c);
	kfree(d);
	KEXPECT(kstrdup(NULL, 0) == NULL);
	KEXPECT(kstrndup(NULL, 5, 0) == NULL);
}

/* ksize of kmalloc(size) against kmalloc_size_roundup(size): equal, but
 * for the size asked where the heap's mode gives that (a small object in
 * poison mode, a guarded object). 1 on a mismatch, named. */
static unsigned roundup_mismatch(size_t size)
{
	void *p = kmalloc(size, 0);
	if (!p)
		return 1;
	size_t want = kmalloc_size_roundup(size);
	if ((kspanheap.cfg.poison && size <= SC_MAX_SIZE) || guarded(p))
		want = size;
	size_t got = ksize(p);
	kfree(p);
	if (got != want)
		ktest_diag("size %zu: ksize %zu, expected %zu", size, got,
		           want);
	return got != want;
}

KTEST(kmalloc_copy, roundup_is_ksize_at_every_class_edge)
{
	unsigned bad = 0, sizes = 0;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		size_t sz = sizeclass_info[cls].size;
		size_t edge[] = {sizeclass_info[cls - 1].size + 1, sz - 1, sz,
		                 sz + 1};
		for (unsigned k = 0; k < 4; k++, sizes++)
			bad += roundup_mismatch(edge[k]);
	}
	static const size_t large[] = {65536, 65537, 100000, 1 << 20};
	for (unsigned k = 0; k < 4; k++, sizes++)
		bad += roundup_mismatch(large[k]);
	ktest_diag("%u sizes, %u mismatched", sizes, bad);
	KEXPECT_EQ(bad, 0);
	KEXPECT(kmalloc_size_roundup(0) >= 1);
	KEXPECT_EQ(kmalloc_size_roundup(SIZE_MAX), 0);
}

#ifdef MM_TEST_HOOKS
static uint8_t *volatile wiped_obj;
static _Atomic size_t wiped_bad, wiped_seen;

/* At MHEAP_HOOK_FREE_WIPED: counts the bytes of wiped_obj's usable size
 * that are not zero (the object is still allocated). */
static void check_wiped(struct mheap *h, enum mheap_hook_point where)
{
	uint8_t *p = wiped_obj;
	if (h != &kheap || where != MHEAP_HOOK_FREE_WIPED || !p)
		return;
	size_t bad = 0, n = ksize(p);
	for (size_t i = 0; i < n; i++)
		bad += p[i] != 0;
	atomic_fetch_add(&wiped_bad, bad);
	atomic_fetch_add(&wiped_seen, 1);
}

KTEST(kmalloc_copy, kfree_sensitive_zeroes_the_whole_ksize)
{
	static const size_t sizes[] = {1, 17, 100, 1000, 4096, 32768, 100000};
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	mheap_test_hook = check_wiped;
	for (unsigned k = 0; k < N; k++) {
		uint8_t *p = kmalloc(sizes[k], 0);
		KASSERT(p != NULL);
		memset(p, 0xa5, ksize(p));
		wiped_obj = p;
		kfree_sensitive(p);
		wiped_obj = NULL;
	}
	mheap_test_hook = NULL;
	KEXPECT_EQ(atomic_load(&wiped_seen), N);
	KEXPECT_EQ(atomic_load(&wiped_bad), 0);
	kfree_sensitive(NULL);
	/* After the free, in normal mode: its bytes but the free marker's
	 * word read zero. Preemption off, so nothing on this CPU, which
	 * holds it in its magazine, hands it out again meanwhile. */
	if (kspanheap.cfg.poison)
		return; /* a free fills the object with the poison byte */
	static struct guard_aside aside;
	preempt_disable();
	uint8_t *p = kmalloc_plain(500, KM_ATOMIC, &aside);
	size_t n = 0, bad = 0;
	if (p) {
		n = ksize(p);
		memset(p, 0xa5, n);
		kfree_sensitive(p);
		for (size_t i = 0; i < n; i++)
			bad += i / 8 != 1 && p[i] != 0;
	}
	preempt_enable();
	kmalloc_plain_done(&aside);
	KASSERT(p != NULL);
	KEXPECT_EQ(n, 512u);
	KEXPECT_EQ(bad, 0);
}
#endif
