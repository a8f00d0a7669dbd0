/*
 * The span heap's arrays, copies, rounded sizes and wiping free
 * (mm/spanheap_copy.c) through the POSIX port: an overflowing array
 * refused with nothing allocated and a realloc's object kept, copies of
 * exactly the bytes asked, strndup stopping at n and at the NUL (a
 * string ending at an unreadable page), the rounded size against the
 * usable size of real allocations at every class boundary, and the
 * wiping free's zeroes, read in the freed object (small) and at the
 * test hook before the free (large).
 *
 * Each test makes its own heap over a 1 GiB arena and gives it back at
 * the end.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../kernel/ktest.h"
#include "../../mm/mheap_testing.h"
#include "../../mm/spanheap_copy.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

static size_t bytes_in_use(void)
{
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	return st.bytes_in_use;
}

static size_t pages_in_use(void)
{
	struct mheap_stats st;
	mheap_stats(&heap, &st);
	return st.in_use_pages;
}

KTEST(spanheap_copy, an_overflowing_array_allocates_nothing)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	size_t before = bytes_in_use(), pages = pages_in_use();
	KEXPECT(spanheap_alloc_array(&sh, SIZE_MAX / 2, 3, 0) == NULL);
	KEXPECT(spanheap_alloc_array(&sh, 3, SIZE_MAX / 2, MM_ZERO) == NULL);
	KEXPECT(spanheap_alloc_array(&sh, (size_t)1 << 32, (size_t)1 << 32,
	                             MM_ATOMIC) == NULL);
	KEXPECT_EQ(bytes_in_use(), before);
	KEXPECT_EQ(pages_in_use(), pages);
	unsigned char *p = spanheap_alloc_array(&sh, 10, 30, 0);
	KASSERT(p != NULL);
	KEXPECT(spanheap_usable_size(&sh, p) >= 300);
	memset(p, 0x5a, 300);
	size_t with_p = bytes_in_use();
	KEXPECT(spanheap_realloc_array(&sh, p, SIZE_MAX / 8, 16, 0) == NULL);
	/* p is kept, whole: still allocated, its bytes as they were. */
	KEXPECT(all_bytes(p, 300, 0x5a));
	KEXPECT_EQ(bytes_in_use(), with_p);
	p = spanheap_realloc_array(&sh, p, 100, 30, 0);
	KASSERT(p != NULL);
	KEXPECT(spanheap_usable_size(&sh, p) >= 3000);
	KEXPECT(all_bytes(p, 300, 0x5a));
	/* A product that wraps to a small size (2^64 + 16 bytes as 16) is
	 * refused too, not taken as a shrink to 16 bytes. */
	size_t with_q = bytes_in_use();
	KEXPECT(spanheap_realloc_array(&sh, p, ((size_t)1 << 60) + 1, 16, 0) ==
	        NULL);
	KEXPECT(all_bytes(p, 300, 0x5a));
	KEXPECT(spanheap_usable_size(&sh, p) >= 3000);
	KEXPECT(spanheap_alloc_array(&sh, ((size_t)1 << 60) + 1, 16, 0) ==
	        NULL);
	KEXPECT_EQ(bytes_in_use(), with_q);
	/* n 0 frees p, as realloc(p, 0). */
	KEXPECT(spanheap_realloc_array(&sh, p, 0, 30, 0) == NULL);
	KEXPECT_EQ(bytes_in_use(), before);
	void *z = spanheap_alloc_array(&sh, 0, 100, 0);
	KEXPECT(z != NULL); /* a unique object, as alloc(0) */
	spanheap_free(&sh, z);
	KEXPECT_EQ(bytes_in_use(), before);
	SH_CHECK(&sh, "after the arrays");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_copy, memdup_copies_exactly)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static const size_t lens[] = {1, 15, 16, 17, 100, 4096, 40000};
	static unsigned char src[40001];
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (unsigned char)(i * 13 + 1);
	for (unsigned k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		size_t len = lens[k];
		/* MM_ZERO: the bytes past len read zero, so a copy of one
		 * byte too many shows. */
		unsigned char *p = spanheap_memdup(&sh, src, len, MM_ZERO);
		KASSERT(p != NULL);
		KEXPECT(memcmp(p, src, len) == 0);
		size_t usable = spanheap_usable_size(&sh, p);
		KEXPECT(usable >= len);
		KEXPECT(all_bytes(p + len, usable - len, 0));
		spanheap_free(&sh, p);
	}
	void *z = spanheap_memdup(&sh, src, 0, 0);
	KEXPECT(z != NULL);
	spanheap_free(&sh, z);
	KEXPECT(spanheap_memdup(&sh, NULL, 0, 0) == NULL);
	KEXPECT(spanheap_memdup(&sh, NULL, 10, 0) == NULL);
	KEXPECT_EQ(bytes_in_use(), 0);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_copy, strndup_stops_at_n_and_at_the_nul)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	/* A string with no NUL that ends where the mapping does: a read of
	 * one byte past n faults. */
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
	                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	KASSERT(map != MAP_FAILED);
	KASSERT(mprotect(map + pg, pg, PROT_NONE) == 0);
	char *s = map + pg - 5;
	memcpy(s, "hello", 5);
	char *d = spanheap_strndup(&sh, s, 5, MM_ATOMIC);
	KASSERT(d != NULL);
	KEXPECT(memcmp(d, "hello", 6) == 0);
	spanheap_free(&sh, d);
	d = spanheap_strndup(&sh, s, 3, 0);
	KASSERT(d != NULL);
	KEXPECT(memcmp(d, "hel", 4) == 0);
	spanheap_free(&sh, d);
	munmap(map, 2 * pg);
	/* The NUL first: nothing after it is copied. */
	d = spanheap_strndup(&sh, "ab\0cd", 5, MM_ZERO);
	KASSERT(d != NULL);
	KEXPECT(memcmp(d, "ab", 3) == 0);
	KEXPECT(all_bytes(d + 2, spanheap_usable_size(&sh, d) - 2, 0));
	spanheap_free(&sh, d);
	d = spanheap_strndup(&sh, "", 10, 0);
	KEXPECT(d != NULL && d[0] == '\0');
	spanheap_free(&sh, d);
	d = spanheap_strndup(&sh, "xyz", 0, 0);
	KEXPECT(d != NULL && d[0] == '\0');
	spanheap_free(&sh, d);
	/* Room for the NUL: 16 bytes and a NUL are not a 16-byte object
	 * (whose NUL would land in the next object). */
	d = spanheap_strdup(&sh, "0123456789abcdef", 0);
	KASSERT(d != NULL);
	KEXPECT(spanheap_usable_size(&sh, d) >= 17);
	KEXPECT(strcmp(d, "0123456789abcdef") == 0);
	spanheap_free(&sh, d);
	d = spanheap_strdup(&sh, "a longer string, copied whole", 0);
	KASSERT(d != NULL);
	KEXPECT(strcmp(d, "a longer string, copied whole") == 0);
	spanheap_free(&sh, d);
	KEXPECT(spanheap_strdup(&sh, NULL, 0) == NULL);
	KEXPECT(spanheap_strndup(&sh, NULL, 4, 0) == NULL);
	KEXPECT_EQ(bytes_in_use(), 0);
	sh_heap_release(&heap, &sh);
}

/* Whether spanheap_roundup_size(size) is the usable size of a real
 * allocation of size bytes; says which size if not. */
static bool roundup_matches(size_t size)
{
	void *p = spanheap_alloc(&sh, size, 0);
	if (!p)
		return false;
	size_t got = spanheap_usable_size(&sh, p);
	size_t said = spanheap_roundup_size(&sh, size);
	spanheap_free(&sh, p);
	if (got != said)
		ktest_diag("size %zu: roundup %zu, usable %zu", size, said,
		           got);
	return got == said;
}

KTEST(spanheap_copy, roundup_is_the_usable_size_at_every_class_edge)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	unsigned bad = 0, sizes = 0;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		size_t sz = sizeclass_info[cls].size;
		size_t prev = sizeclass_info[cls - 1].size; /* [0]: 0 */
		size_t edge[] = {prev + 1, sz - 1, sz, sz + 1};
		for (unsigned k = 0; k < 4; k++, sizes++)
			bad += !roundup_matches(edge[k]);
	}
	static const size_t large[] = {0,       SC_MAX_SIZE + 1, 65535,
	                               65536,   65537,           100000,
	                               1 << 20, (1 << 20) + 1};
	for (unsigned k = 0; k < sizeof(large) / sizeof(large[0]); k++, sizes++)
		bad += !roundup_matches(large[k]);
	ktest_diag("%u sizes, %u mismatched", sizes, bad);
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(spanheap_roundup_size(&sh, SIZE_MAX), 0);
	KEXPECT_EQ(spanheap_roundup_size(&sh, SPANHEAP_LARGE_MAX_PAGES *
	                                              MM_PAGE_SIZE),
	           SPANHEAP_LARGE_MAX_PAGES * MM_PAGE_SIZE);
	KEXPECT_EQ(spanheap_roundup_size(
	                   &sh, SPANHEAP_LARGE_MAX_PAGES * MM_PAGE_SIZE + 1),
	           0);
	sh_heap_release(&heap, &sh);
}

/* Whether the freed object p of usable bytes reads zero but its second
 * word, which a free sets to the free marker. */
static bool freed_reads_zero(const unsigned char *p, size_t usable)
{
	size_t bad = 0;
	for (size_t i = 0; i < usable; i++)
		bad += (i < 8 || i >= 16) && p[i] != 0;
	if (bad)
		ktest_diag("%zu of %zu bytes not zeroed at %p", bad, usable,
		           (const void *)p);
	return bad == 0;
}

static unsigned char *wiped_obj;
static size_t wiped_usable, wiped_bad, wiped_seen;

static void check_wiped(struct mheap *h, enum mheap_hook_point where)
{
	if (h != &heap || where != MHEAP_HOOK_FREE_WIPED)
		return;
	wiped_seen++;
	for (size_t i = 0; i < wiped_usable; i++)
		wiped_bad += wiped_obj[i] != 0;
}

KTEST(spanheap_copy, free_sensitive_zeroes_the_whole_usable_size)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	static const size_t sizes[] = {1, 16, 17, 100, 1000, 4096, 32768};
	for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		unsigned char *p = spanheap_alloc(&sh, sizes[k], 0);
		KASSERT(p != NULL);
		size_t usable = spanheap_usable_size(&sh, p);
		memset(p, 0xa5, usable);
		spanheap_free_sensitive(&sh, p);
		/* Freed into this CPU's magazine, the only thread of this
		 * heap: nothing reuses it before the read. */
		KEXPECT(freed_reads_zero(p, usable));
	}
	/* A large object's pages go back to the page heap at its free: its
	 * bytes are read at the hook, zeroed and not yet freed. */
	static const size_t big[] = {SC_MAX_SIZE + 1, 100000};
	mheap_test_hook = check_wiped;
	for (unsigned k = 0; k < 2; k++) {
		wiped_obj = spanheap_alloc(&sh, big[k], 0);
		KASSERT(wiped_obj != NULL);
		wiped_usable = spanheap_usable_size(&sh, wiped_obj);
		memset(wiped_obj, 0xa5, wiped_usable);
		spanheap_free_sensitive(&sh, wiped_obj);
	}
	mheap_test_hook = NULL;
	KEXPECT_EQ(wiped_seen, 2);
	KEXPECT_EQ(wiped_bad, 0);
	spanheap_free_sensitive(&sh, NULL);
	/* A second wiping free is named as the call it is, before any byte
	 * is written (it read "usable size of an object already freed",
	 * a call the caller never made). */
	unsigned char *twice = spanheap_alloc(&sh, 64, 0);
	KASSERT(twice != NULL);
	spanheap_free_sensitive(&sh, twice);
	bool fired = MM_PORT_PANICS(spanheap_free_sensitive(&sh, twice));
	sh_unpin_after_panic();
	KEXPECT(fired);
	if (fired && !strstr(mm_port_last_panic(),
	                     "free_sensitive of an object already freed"))
		ktest_fail_at(__FILE__, __LINE__,
		              "panic \"%s\" does not name "
		              "free_sensitive",
		              mm_port_last_panic());
	KEXPECT_EQ(bytes_in_use(), 0);
	SH_CHECK(&sh, "after the wiping frees");
	sh_heap_release(&heap, &sh);
}
