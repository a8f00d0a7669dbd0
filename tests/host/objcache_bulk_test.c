/*
 * Bulk allocation and free on named caches (mm/objcache_bulk.c): merged
 * caches (the span heap's batches), caches with slabs of their own (runs
 * of the CPU's stash, constructed objects kept as left), aligned and
 * poison-mode caches (the single calls), the live counts, all or nothing
 * when memory runs out part way, and misuse in a batch (another cache's
 * object, a double free), which panics as objcache_free does after a
 * line naming the entry's index.
 */
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache_bulk.h"
#include "../../mm/objcache_internal.h"
#include "../../mm/objcache_own.h"
#include "../../mm/spanheap_bulk.h"
#include "../../mm/spanheap_fail.h"
#include "mm_port_posix.h"
#include "objcache_test_util.h"
#include "spanheap_test_util.h"

#define MAGIC 0xb01c0b1ec7ull

static void *v[1024];
static char logbuf[4096];

struct thing {
	uint64_t magic, state;
	char rest[48];
};

static void thing_ctor(void *p)
{
	struct thing *t = p;
	t->magic = MAGIC;
	t->state = 0;
}

/* The caches' end: destroyed, every page back, the heap checked. */
static void finish(void)
{
	KEXPECT_EQ(objcache_list(&sh, NULL, 0), 0);
	sh_flush_cpus(&sh, 4);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}

/* n objects of c in one batch, each written whole and checked, freed in
 * one batch; the live count follows. */
static void round_trip(struct objcache *c, size_t n, unsigned flags)
{
	KEXPECT_EQ(objcache_alloc_bulk(c, flags, n, v), n);
	KEXPECT_EQ(live(c), (int64_t)n);
	for (size_t i = 0; i < n; i++) {
		KEXPECT_EQ((uintptr_t)v[i] % (c->align > 16 ? c->align : 16),
		           0);
		if (flags & MM_ZERO)
			KEXPECT(all_bytes(v[i], c->size, 0));
		memset(v[i], (int)i, c->size);
	}
	for (size_t i = 0; i < n; i++)
		KEXPECT(all_bytes(v[i], c->size, (unsigned char)i));
	objcache_free_bulk(c, n, v);
	KEXPECT_EQ(live(c), 0);
}

KTEST(objcache_bulk, merged_aligned_and_large_caches)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *a = objcache_create(&sh, "bulk-48", 48, 0);
	struct objcache *b = objcache_create(&sh, "bulk-al", 200, 256);
	struct objcache *l = objcache_create(&sh, "bulk-big", 70000, 0);
	KASSERT(a && b && l);
	round_trip(a, 1000, 0);
	round_trip(a, 300, MM_ZERO | MM_ATOMIC);
	round_trip(b, 100, 0);
	round_trip(l, 4, MM_ZERO);
	v[0] = NULL; /* NULL entries: nothing, not counted */
	objcache_free_bulk(a, 1, v);
	KEXPECT_EQ(live(a), 0);
	KEXPECT(objcache_destroy(a) && objcache_destroy(b) &&
	        objcache_destroy(l));
	finish();
}

KTEST(objcache_bulk, own_slabs_keep_the_constructed_state)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create_flags(
	        &sh, "bulk-ctor", sizeof(struct thing), 0, 0, thing_ctor);
	KASSERT(c && c->own->fast);
	KEXPECT_EQ(objcache_alloc_bulk(c, 0, 500, v), 500);
	KEXPECT_EQ(live(c), 500);
	for (size_t i = 0; i < 500; i++) {
		struct thing *t = v[i];
		KEXPECT_EQ(t->magic, MAGIC);
		KEXPECT_EQ(t->state, 0);
		t->state = i + 1;
	}
	KEXPECT(objcache_own_check(c));
	objcache_free_bulk(c, 500, v);
	KEXPECT_EQ(live(c), 0);
	KEXPECT(objcache_own_check(c));
	/* Each object as left (a state seen once) or, from a slab made
	 * again after its emptied one went back, as constructed. */
	static bool seen[501];
	memset(seen, 0, sizeof(seen));
	KEXPECT_EQ(objcache_alloc_bulk(c, MM_ATOMIC, 500, v), 500);
	for (size_t i = 0; i < 500; i++) {
		struct thing *t = v[i];
		KEXPECT_EQ(t->magic, MAGIC);
		KASSERT(t->state <= 500);
		KEXPECT(!t->state || !seen[t->state]);
		seen[t->state] = true;
	}
	/* MM_ZERO on a ctor cache: refused, nothing left out. */
	mm_port_set_quiet(true);
	KEXPECT_EQ(objcache_alloc_bulk(c, MM_ZERO, 3, v + 500), 0);
	mm_port_set_quiet(false);
	KEXPECT_EQ(live(c), 500);
	objcache_free_bulk(c, 500, v);
	objcache_shrink(c);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	finish();
}

/* Batches of a 16-byte ctor cache (a 15-entry stash, slabs of four
 * bitmap words), sizes across the stash's and a word's bounds: the slabs'
 * runs take a word of bits at a time and move a slab's count and list
 * once a run, the free's runs check an entry in the slab before's bytes
 * without the table. Each object is c's, constructed, none twice (each
 * holds its index while the batch is out), freed interleaving slabs
 * (evens, then odds), the cache checked after each call. */
KTEST(objcache_bulk, own_runs_cross_words_slabs_and_the_stash)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c =
	        objcache_create_flags(&sh, "bulk-16", 16, 0, 0, thing_ctor);
	KASSERT(c && c->own->fast && c->own->nobjs > 128);
	static const size_t ns[] = {1, 15, 16, 17, 63, 64, 65, 129, 700, 1024};
	static void *odd[512];
	for (size_t r = 0; r < 2 * sizeof(ns) / sizeof(ns[0]); r++) {
		size_t n = ns[r % (sizeof(ns) / sizeof(ns[0]))];
		KASSERT(objcache_alloc_bulk(c, 0, n, v) == n);
		KEXPECT(objcache_own_check(c));
		for (size_t i = 0; i < n; i++) {
			KEXPECT(objcache_own_live(c, v[i]));
			KEXPECT_EQ(*(uint64_t *)v[i], MAGIC);
			((uint64_t *)v[i])[1] = i;
		}
		size_t nodd = 0;
		for (size_t i = 0; i < n; i++) {
			KEXPECT_EQ(((uint64_t *)v[i])[1], i);
			((uint64_t *)v[i])[1] = 0; /* as constructed */
			if (i % 2)
				odd[nodd++] = v[i];
			else
				v[i / 2] = v[i];
		}
		objcache_free_bulk(c, n - nodd, v);
		KEXPECT(objcache_own_check(c));
		objcache_free_bulk(c, nodd, odd);
		KEXPECT_EQ(live(c), 0);
		KEXPECT(objcache_own_check(c));
	}
	objcache_shrink(c);
	KEXPECT(objcache_destroy(c));
	finish();
}

/* The failure injection fails the batch's 40th object: 0, nothing out. */
KTEST(objcache_bulk, a_failure_mid_batch_leaves_nothing_out)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *m = objcache_create(&sh, "bulk-m", 64, 0);
	KASSERT(m);
	struct spanheap_fail_attr a = {.interval = 40,
	                               .probability = SPANHEAP_FAIL_PROB_ALL,
	                               .times = 1};
	KASSERT(spanheap_fail_arm(&sh, &a));
	KEXPECT_EQ(objcache_alloc_bulk(m, 0, 100, v), 0);
	KEXPECT_EQ(live(m), 0);
	spanheap_fail_disarm(&sh);
	KEXPECT(objcache_destroy(m));
	finish();
	/* A ctor cache over a full arena: its slabs run out part way. */
	KASSERT(sh_heap_tight(&heap, &sh, 4));
	struct objcache *c = objcache_create_flags(
	        &sh, "bulk-ctor", sizeof(struct thing), 0, 0, thing_ctor);
	KASSERT(c);
	static void *hog[2048];
	size_t nhog = 0;
	while (nhog < 2048 && (hog[nhog] = spanheap_alloc(&sh, 8192, 0)))
		nhog++;
	KASSERT(nhog < 2048);
	spanheap_free(&sh, hog[--nhog]); /* room for a slab or two */
	mm_port_set_quiet(true);
	KEXPECT_EQ(objcache_alloc_bulk(c, 0, 1000, v), 0);
	mm_port_set_quiet(false);
	KEXPECT_EQ(live(c), 0);
	spanheap_free_bulk(&sh, nhog, hog);
	objcache_shrink(c);
	KEXPECT(objcache_own_check(c));
	KEXPECT(objcache_destroy(c));
	finish();
}

/* Misuse in a batch: objcache_free's panic after a line naming the
 * entry. */
static void expect_bulk_misuse(struct objcache *c, size_t n, size_t bad,
                               const char *what)
{
	char idx[96];
	snprintf(idx, sizeof(idx), "entry %zu of %zu, %p", bad, n, v[bad]);
	mm_port_log_capture(logbuf, sizeof(logbuf));
	SH_EXPECT_PANIC(objcache_free_bulk(c, n, v), what);
	mm_port_log_capture(NULL, 0);
	char ptr[32];
	snprintf(ptr, sizeof(ptr), "%p", v[bad]);
	KEXPECT(strstr(mm_port_last_panic(), ptr));
	if (!strstr(logbuf, idx))
		ktest_fail_at(__FILE__, __LINE__, "no line \"%s\" in: %s", idx,
		              logbuf);
}

KTEST(objcache_bulk, misuse_in_a_batch_names_the_entry)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	mm_port_set_quiet(true);
	struct objcache *m = objcache_create(&sh, "bulk-m", 64, 0);
	struct objcache *o = objcache_create_flags(
	        &sh, "bulk-own", sizeof(struct thing), 0, 0, thing_ctor);
	KASSERT(m && o);
	KASSERT(objcache_alloc_bulk(m, 0, 3, v) == 3);
	v[3] = spanheap_alloc(&sh, 200, 0); /* another class: kmalloc's */
	expect_bulk_misuse(m, 4, 3, "another cache's or kmalloc's");
	spanheap_free(&sh, v[3]);
	KASSERT(objcache_alloc_bulk(o, 0, 3, v) == 3);
	v[3] = v[0]; /* twice in the batch */
	expect_bulk_misuse(o, 4, 3, "double free of");
	KASSERT(objcache_alloc_bulk(o, 0, 2, v) == 2);
	v[2] = objcache_alloc(m, 0);
	expect_bulk_misuse(o, 3, 2, "to cache 'bulk-own'");
	objcache_free(m, v[2]);
	/* In the bytes of the slab of the entry before, which the run
	 * checks without the table: an interior pointer, the header. */
	KASSERT(objcache_alloc_bulk(o, 0, 2, v) == 2);
	KASSERT(objcache_stash_ent_of(o, v[0]) >> MM_PAGE_SHIFT ==
	        objcache_stash_ent_of(o, v[1]) >> MM_PAGE_SHIFT);
	v[2] = (char *)v[1] + 8;
	expect_bulk_misuse(o, 3, 2, "an interior pointer of its slab");
	KASSERT(objcache_alloc_bulk(o, 0, 2, v) == 2);
	v[2] = (void *)(objcache_stash_ent_of(o, v[1]) &
	                ~(uintptr_t)(MM_PAGE_SIZE - 1));
	expect_bulk_misuse(o, 3, 2, "an interior pointer of its slab");
	mm_port_set_quiet(false);
	objcache_shrink(o);
	KEXPECT(objcache_destroy(o) && objcache_destroy(m));
	finish();
}

/* Poison mode: each object's owner is set and checked by the single
 * calls; a right batch logs no misuse line, another cache's object in a
 * batch of the same class panics naming both. */
KTEST(objcache_bulk, poison_mode_checks_every_owner)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	struct objcache *a = objcache_create(&sh, "bulk-pa", 40, 0);
	struct objcache *b = objcache_create(&sh, "bulk-pb", 40, 0);
	KASSERT(a && b);
	mm_port_log_capture(logbuf, sizeof(logbuf));
	round_trip(a, 50, 0);
	mm_port_log_capture(NULL, 0);
	KEXPECT(!strstr(logbuf, "free_bulk"));
	KASSERT(objcache_alloc_bulk(a, 0, 2, v) == 2);
	v[2] = objcache_alloc(b, 0);
	mm_port_set_quiet(true);
	expect_bulk_misuse(a, 3, 2, "cache 'bulk-pb''s");
	mm_port_set_quiet(false);
	objcache_free(b, v[2]);
	KEXPECT(objcache_destroy(a) && objcache_destroy(b));
	finish();
}
