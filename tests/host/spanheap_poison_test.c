/*
 * Poison mode of the span heap (spanheap_config.poison, mm/spanheap_poison.c):
 * every freed small object holds the poison but for its free marker's
 * word; a write after the free panics, naming the object, its span and its
 * class and the first byte changed, when the object is handed out again,
 * when its span goes back to the page heap, or in spanheap_check; the CPUs
 * keep no magazines; and normal mode writes nothing but the marker. Every
 * size class is tried. Each case runs on a heap of its own, as a caught
 * panic abandons the call where it was.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

/* A fresh heap, poisoned or not, on CPU 0. */
static bool heap_with(bool poison)
{
	return sh_heap_fresh_poison(&heap, &sh, poison);
}

/* True if object p of size bytes holds the poison in every byte but those
 * of its second word. */
static bool poisoned(const void *p, size_t size)
{
	return all_bytes(p, 8, SPANHEAP_POISON_BYTE) &&
	       all_bytes((const char *)p + 16, size - 16, SPANHEAP_POISON_BYTE);
}

/* The first span of class cls on a fresh heap: all its objects, in p
 * (of poison mode's largest size for the class, sh_poison_size). */
static bool take_span(unsigned cls, void **p)
{
	return sh_alloc_n(&sh, p, sizeclass_info[cls].nelems,
	                  sh_poison_size(cls));
}

static void *objs[SC_BITMAP_WORDS * 64];

KTEST(spanheap_poison, every_class_freed_holds_the_poison)
{
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		KASSERT(heap_with(true));
		size_t size = sizeclass_info[cls].size;
		KASSERT(take_span(cls, objs));
		unsigned n = sizeclass_info[cls].nelems;
		for (unsigned i = 0; i < n; i++)
			memset(objs[i], 0x11, sh_poison_size(cls));
		for (unsigned i = 0; i < n; i++)
			spanheap_free(&sh, objs[i]);
		for (unsigned i = 0; i < n; i++)
			if (!poisoned(objs[i], size))
				ktest_fail_at(__FILE__, __LINE__,
				              "class %u (%zu bytes): freed "
				              "object %u is not poisoned",
				              cls, size, i);
		/* No magazine: nothing waits unchecked on a CPU. */
		KEXPECT_EQ(atomic_load(&sh.mag_slabs), 0);
		SH_CHECK(&sh, "after the frees");
		/* Handed out again, checked, and as good as new. */
		KASSERT(take_span(cls, objs));
		SH_CHECK(&sh, "after the second round");
		sh_heap_release(&heap, &sh);
	}
}

/*
 * Each class: a span's objects freed, one written after its free (byte
 * off of it, or its marker's word), then all handed out again: the
 * allocation that takes it panics, naming it.
 */
static void write_then_reuse(unsigned cls, size_t off, const char *want)
{
	KASSERT(heap_with(true));
	unsigned n = sizeclass_info[cls].nelems;
	KASSERT(take_span(cls, objs));
	for (unsigned i = 0; i < n; i++)
		spanheap_free(&sh, objs[i]);
	char *victim = objs[n / 2];
	victim[off] ^= 0x40; /* the stale pointer's store */
	char msg[64];
	snprintf(msg, sizeof(msg), want, off);
	bool fired = false;
	for (unsigned i = 0; i < n && !fired; i++) {
		fired = MM_PORT_PANICS(
		        objs[i] = spanheap_alloc(&sh, sh_poison_size(cls), 0));
		sh_unpin_after_panic();
	}
	sh_expect_message(__FILE__, __LINE__, fired, msg, victim);
	if (fired && !strstr(mm_port_last_panic(), "as it was handed out "
	                                           "again"))
		ktest_fail_at(__FILE__, __LINE__,
		              "the report does not say when: %s",
		              mm_port_last_panic());
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_poison, every_class_write_after_free_found_at_reuse)
{
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		size_t size = sizeclass_info[cls].size;
		/* Its first byte, its last, and one in between. */
		write_then_reuse(cls, 0,
		                 "byte %zu is 0x9b, not the poison 0xdb");
		if (size > 16) /* a 16-byte object ends in its marker */
			write_then_reuse(cls, size - 1,
			                 "byte %zu is 0x9b, not the poison "
			                 "0xdb");
		if (size > 16)
			write_then_reuse(cls, 16 + (size - 16) / 3,
			                 "byte %zu is 0x9b");
	}
}

KTEST(spanheap_poison, a_changed_marker_is_named)
{
	write_then_reuse(1, 9, "its free marker (bytes 8-15) is 0x");
	write_then_reuse(5, 15, "its free marker (bytes 8-15) is 0x");
}

/* A write after free over the free marker, then a second free, once the
 * first has folded into the span (no bit left to tell it): the side table
 * says the object is free already. Until a review the second free passed,
 * the object was handed out with its pending bit set, and the report came
 * later, as a write after free at its hand-out. */
KTEST(spanheap_poison, a_double_free_after_the_marker_was_overwritten)
{
	KASSERT(heap_with(true));
	uintptr_t *p = spanheap_alloc(&sh, 40, 0);
	void *keep = spanheap_alloc(&sh, 40, 0); /* keeps the span in use */
	KASSERT(p && keep);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh); /* folded: free in its span's bits */
	uintptr_t marker = p[1];
	p[1] = 0; /* the write after free */
	EXPECT_MISUSE(spanheap_free(&sh, p), "double free", p);
	p[1] = marker;
	SH_CHECK(&sh, "after the refused free");
	spanheap_free(&sh, keep);
	sh_heap_release(&heap, &sh);
}

/* The same write after free, then the object's usable size or a realloc
 * that would keep it: the side table says it is free. Until a review
 * both read the marker alone: the usable size was the free entry's value
 * (4 GiB less one), and the realloc handed the freed object back as the
 * caller's (and a growth copied that many bytes as the old object's). */
static void stale_call_refused(int op)
{
	KASSERT(heap_with(true));
	uintptr_t *p = spanheap_alloc(&sh, 40, 0);
	void *keep = spanheap_alloc(&sh, 40, 0); /* keeps the span in use */
	KASSERT(p && keep);
	spanheap_free(&sh, p);
	uintptr_t marker = p[1];
	p[1] = 0; /* the write after free */
	if (op == 0)
		EXPECT_MISUSE(spanheap_usable_size(&sh, p),
		              "usable size of an object", p);
	else
		EXPECT_MISUSE(spanheap_realloc(&sh, p, 24, 0),
		              "realloc of an object", p);
	p[1] = marker;
	SH_CHECK(&sh, "after the refused call");
	spanheap_free(&sh, keep);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_poison, usable_size_or_realloc_after_the_marker_was_overwritten)
{
	stale_call_refused(0);
	stale_call_refused(1);
}

/* A write after a free of an object never handed out again: found when
 * its span, empty, goes back to the page heap (release-all here). */
KTEST(spanheap_poison, write_found_when_the_span_goes_back)
{
	KASSERT(heap_with(true));
	char *p = spanheap_alloc(&sh, 63, 0); /* 64-byte objects */
	char *q = spanheap_alloc(&sh, 63, 0);
	KASSERT(p && q);
	spanheap_free(&sh, p);
	spanheap_free(&sh, q);
	q[63] = 0;
	EXPECT_MISUSE(spanheap_release_all(&sh),
	              "write after free, found as its span went back to the "
	              "page heap",
	              q);
	KEXPECT(strstr(mm_port_last_panic(), "size class 4 (64-byte objects)"));
	KEXPECT(strstr(mm_port_last_panic(), "byte 63 is 0, not the poison"));
	sh_heap_release(&heap, &sh);
}

/* And by the checker, for a free object of a span on a central list. */
KTEST(spanheap_poison, write_found_by_the_checker)
{
	KASSERT(heap_with(true));
	char *p = spanheap_alloc(&sh, 256, 0);
	char *q = spanheap_alloc(&sh, 256, 0);
	KASSERT(p && q);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh); /* the span, q live, to its list */
	SH_CHECK(&sh, "before the write");
	memset(p + 100, 0, 4);
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(), "was written after its free: "
	                                     "byte 100 is 0, not the poison"));
	spanheap_free(&sh, q);
	sh_heap_release(&heap, &sh);
}

/*
 * The checker reports the first damaged free object it meets on a class's
 * lists, and the spans it walks after that span, clean, do not clear the
 * finding: three spans of one class, a free object in each, the one of
 * the first span the walk visits written after its free.
 */
KTEST(spanheap_poison, write_found_by_the_checker_before_clean_spans)
{
	KASSERT(heap_with(true));
	unsigned cls = sizeclass_of(256), n = sizeclass_info[cls].nelems;
	static void *p[3 * SC_BITMAP_WORDS * 64];
	KASSERT(sh_alloc_n(&sh, p, 3 * n, sh_poison_size(cls)));
	for (unsigned i = 0; i < 3; i++)
		spanheap_free(&sh, p[i * n]);
	spanheap_flush_cache(&sh); /* every span on the class's lists */
	struct mcentral *c = &sh.central[cls];
	struct mspan *first = NULL;
	size_t listed = 0;
	for (unsigned k = 0; k < 4; k++)
		for (struct mspan *s =
		             (k < 2 ? &c->partial[k] : &c->full[k - 2])->first;
		     s; s = s->next, listed++)
			if (!first)
				first = s;
	KASSERT(first && listed == 3);
	SH_CHECK(&sh, "before the write");
	char *victim = NULL;
	for (unsigned i = 0; i < 3; i++)
		if (mheap_span_lookup(&heap, (uintptr_t)p[i * n]) == first)
			victim = p[i * n];
	KASSERT(victim);
	victim[200] = 0;
	KEXPECT(sh_check_panics(&sh));
	KEXPECT(strstr(mm_port_last_panic(), "was written after its free: "
	                                     "byte 200 is 0, not the poison"));
	sh_heap_release(&heap, &sh);
}

/* Poison mode changes nothing a program sees: zeroed memory is zero, a
 * realloc keeps the contents, and misuse is still named. */
KTEST(spanheap_poison, zeroing_realloc_and_misuse_as_in_normal_mode)
{
	KASSERT(heap_with(true));
	char *p = spanheap_alloc(&sh, 512, 0);
	KASSERT(p);
	memset(p, 0x5a, 512);
	spanheap_free(&sh, p);
	spanheap_flush_cache(&sh);
	char *z = spanheap_calloc(&sh, 1, 512, 0);
	KASSERT(z);
	KEXPECT(all_bytes(z, 512, 0));
	memset(z, 0x33, 512);
	char *r = spanheap_realloc(&sh, z, 2000, 0);
	KASSERT(r);
	KEXPECT(all_bytes(r, 512, 0x33));
	spanheap_free(&sh, r);
	EXPECT_MISUSE(spanheap_free(&sh, r), "double free", r);
	sh_heap_release(&heap, &sh);
}

/* Normal mode: a free writes the marker alone (the fast path stays as it
 * was), and the CPU keeps a magazine. */
KTEST(spanheap_poison, normal_mode_writes_only_the_marker)
{
	KASSERT(heap_with(false));
	char *p = spanheap_alloc(&sh, 128, 0);
	KASSERT(p);
	memset(p, 0x11, 128);
	spanheap_free(&sh, p);
	KEXPECT(all_bytes(p, 8, 0x11));
	KEXPECT(all_bytes(p + 16, 112, 0x11));
	KEXPECT_EQ(atomic_load(&sh.mag_slabs), 1);
	sh_heap_release(&heap, &sh);
}
