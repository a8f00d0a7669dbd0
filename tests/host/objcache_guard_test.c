/*
 * The guarded pool sampling the caches with slabs of their own
 * (mm/objcache_guard.c, rv123): a constructor cache's sampled object is
 * constructed, faults past its end and after its free, and every misuse
 * report about it names the cache; a typesafe cache's freed sampled
 * object stays readable, as it was, until a grace period has passed; and
 * kfree_bulk given such a cache's object says what it is.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/objcache_bulk.h"
#include "../../mm/objcache_own.h"
#include "../../mm/spanheap_bulk.h"
#include "../../mm/spanheap_internal.h"
#include "../../mm/spanheap_usercopy.h"
#include "fault_touch_util.h"
#include "guard_test_util.h"
#include "mm_port_posix.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;
static char log_buf[4096];
static int ctor_calls;

static void ctor(void *p)
{
	memset(p, 0x5c, 40);
	ctor_calls++;
}

/* A fresh heap with a pool of 8 slots sampling every interval-th
 * refill or slow call; poison mode if poison. */
static bool guard_heap(unsigned interval, bool poison)
{
	return sh_guard_heap_fresh(&heap, &sh, 8, interval, poison);
}

static void guard_release(void)
{
	sh_guard_give_back(&sh);
	KEXPECT_EQ(sh.guard.nrcu, 0);
	sh_heap_release(&heap, &sh);
}

static void capture(void)
{
	log_buf[0] = '\0';
	mm_port_set_quiet(true);
	mm_port_log_capture(log_buf, sizeof(log_buf));
}

static void uncapture(void)
{
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
}

static bool logged(const char *s)
{
	bool yes = strstr(log_buf, s) != NULL;
	if (!yes)
		printf("# no \"%s\" in: %s\n", s, log_buf);
	return yes;
}

/* An object of c the pool holds (with interval 1, every slow call's). */
static char *sampled(struct objcache *c)
{
	for (int i = 0; i < 64; i++) {
		char *p = objcache_alloc(c, 0);
		if (!p || spanheap_guard_owns(&sh.guard, p))
			return p;
		objcache_free(c, p);
	}
	return NULL;
}

/* Until rv123 such a cache was never sampled: the object came from a
 * slab ("not sampled"). The sampled one is constructed once, faults past
 * its end and after its free, and is named with its cache. */
KTEST(objcache_guard, a_ctor_cache_s_sampled_object_is_constructed)
{
	KASSERT(guard_heap(1, false));
	struct objcache *c =
	        objcache_create_flags(&sh, "gctor", 40, 0, 0, ctor);
	KASSERT(c);
	int before = ctor_calls;
	char *p = sampled(c);
	KASSERT(p);
	KEXPECT(spanheap_guard_owns(&sh.guard, p)); /* sampled */
	KEXPECT(all_bytes(p, 40, 0x5c));
	KEXPECT_EQ(ctor_calls, before + 1); /* its own ctor call only */
	struct spanheap_where w;
	KEXPECT(spanheap_where(&sh, p, &w) && w.kind == SPANHEAP_WHERE_GUARD);
	char log[2048];
	sh_where_log(&sh, p, log, sizeof(log));
	KEXPECT(strstr(log, "cache 'gctor''s") != NULL);
	/* Past its end: the guard page (page-end) or the canary. */
	uintptr_t end = ((uintptr_t)p | (MM_PAGE_SIZE - 1)) + 1;
	if (end - (uintptr_t)p == 48)
		KEXPECT(touch_faults((char *)end));
	objcache_free(c, p);
	KEXPECT(touch_faults(p));
	sh_where_log(&sh, p + 3, log, sizeof(log));
	KEXPECT(strstr(log, "(free; 40 bytes asked") != NULL);
	KEXPECT(strstr(log, "cache 'gctor''s") != NULL);
	KEXPECT_EQ(ctor_calls, before + 1); /* not constructed at its free */
	KEXPECT(objcache_destroy(c));
	spanheap_flush_cache(&sh);
	guard_release();
}

/* Each misuse of a sampled constructor cache's object panics naming the
 * cache: another cache's free (with slabs of its own, or merged), kfree,
 * ksize, a copy past it, an overrun seen at its free, a double free. */
KTEST(objcache_guard, misuse_of_a_sampled_own_slab_object_names_the_cache)
{
	KASSERT(guard_heap(1, false));
	struct objcache *c = objcache_create_flags(&sh, "gmis", 40, 0, 0, ctor);
	struct objcache *o =
	        objcache_create_flags(&sh, "gother", 40, 0, 0, ctor);
	struct objcache *m = objcache_create(&sh, "gmerged", 40, 16);
	KASSERT(c && o && m);
	char *p = sampled(c);
	KASSERT(p && spanheap_guard_owns(&sh.guard, p));
	SH_EXPECT_PANIC(objcache_free(o, p), "cache 'gmis''s");
	SH_EXPECT_PANIC(objcache_free(m, p), "cache 'gmis''s");
	SH_EXPECT_PANIC(spanheap_free(&sh, p), "cache 'gmis''s");
	SH_EXPECT_PANIC(spanheap_usable_size(&sh, p), "cache 'gmis''s");
	capture();
	KEXPECT(spanheap_check_copy(&sh, p, 100, SPANHEAP_COPY_TO_USER) ==
	        SPANHEAP_COPY_BAD);
	uncapture();
	KEXPECT(logged("cache 'gmis''s"));
	/* The slack past its 40 bytes (either side of the page): the
	 * canary, at the free. */
	p[40] = 'x';
	SH_EXPECT_PANIC(objcache_free(c, p), "cache 'gmis''s");
	KEXPECT(strstr(mm_port_last_panic(), "(an overrun)") != NULL);
	p[40] = (char)(0xa5 ^ (((uintptr_t)p + 40) & 0x3f));
	/* The slot stayed BUSY after the caught panic: give it back. */
	atomic_store(
	        &sh.guard.slot[spanheap_guard_slot_at(&sh.guard, (uintptr_t)p)]
	                 .state,
	        GUARD_LIVE);
	objcache_free(c, p);
	SH_EXPECT_PANIC(objcache_free(c, p), "a double free");
	KEXPECT(strstr(mm_port_last_panic(), "cache 'gmis''s") != NULL);
	KEXPECT(objcache_destroy(c) && objcache_destroy(o) &&
	        objcache_destroy(m));
	spanheap_flush_cache(&sh);
	guard_release();
}

/* A typesafe cache's sampled object, freed, stays mapped and as it was
 * (a reader that found it under its read lock reads an object of the
 * type) until a grace period has passed; then it faults. */
KTEST(objcache_guard, a_typesafe_sampled_object_stays_readable_until_a_gp)
{
	KASSERT(guard_heap(1, false));
	struct objcache *c = objcache_create_flags(
	        &sh, "gts", 64, 0, OBJCACHE_TYPESAFE_BY_RCU, NULL);
	KASSERT(c);
	mm_port_posix_rcu_advance(); /* no earlier callback in the way */
	char *p = sampled(c);
	KASSERT(p);
	KEXPECT(spanheap_guard_owns(&sh.guard, p)); /* sampled */
	memset(p, 0x7e, 64);                        /* its type's tag */
	objcache_free(c, p);
	KEXPECT(!touch_faults(p) && !touch_faults(p + 63));
	KEXPECT(all_bytes(p, 64, 0x7e));
	KEXPECT_EQ(sh.guard.nrcu, 1);
	SH_CHECK(&sh, "a slot waiting for its grace period");
	SH_EXPECT_PANIC(objcache_free(c, p), "a double free");
	KEXPECT(strstr(mm_port_last_panic(), "cache 'gts''s") != NULL);
	KEXPECT(mm_port_posix_rcu_advance() >= 1);
	KEXPECT_EQ(sh.guard.nrcu, 0);
	KEXPECT(touch_faults(p));
	char log[2048];
	sh_where_log(&sh, p, log, sizeof(log));
	KEXPECT(strstr(log, "cache 'gts''s") != NULL);
	SH_CHECK(&sh, "after the grace period");
	KEXPECT(objcache_destroy(c));
	spanheap_flush_cache(&sh);
	guard_release();
}

/* kfree_bulk given a constructor cache's object: its line says what the
 * object is (until rv123: "is no allocated object's start", then the
 * free's panic named the cache); so does a merged cache's bulk free. */
KTEST(objcache_guard, kfree_bulk_names_an_own_slab_object)
{
	KASSERT(sh_heap_fresh(&heap, &sh));
	struct objcache *c = objcache_create_flags(&sh, "kbn", 48, 0, 0, ctor);
	struct objcache *m = objcache_create(&sh, "kbm", 48, 16);
	KASSERT(c && m);
	void *o = objcache_alloc(c, 0);
	void *v[3] = {spanheap_alloc(&sh, 48, 0), o,
	              spanheap_alloc(&sh, 48, 0)};
	KASSERT(o && v[0] && v[2]);
	capture();
	SH_EXPECT_PANIC(spanheap_free_bulk(&sh, 3, v), "cache 'kbn'");
	uncapture();
	KEXPECT(logged("entry 1 of 3, "));
	KEXPECT(logged("is an object of cache 'kbn' (allocated), which has "
	               "slabs of its own: free it with kmem_cache_free"));
	KEXPECT(!strstr(log_buf, "no allocated object's start"));
	void *w[2] = {objcache_alloc(m, 0), o};
	KASSERT(w[0]);
	capture();
	SH_EXPECT_PANIC(objcache_free_bulk(m, 2, w), "free of");
	uncapture();
	KEXPECT(logged("is an object of cache 'kbn'"));
	KEXPECT(!strstr(log_buf, "no allocated object's start"));
	objcache_count(m, -1); /* w[0], freed by the run before the panic */
	objcache_free(c, o);
	spanheap_free(&sh, v[2]);
	KEXPECT(objcache_destroy(c) && objcache_destroy(m));
	spanheap_release_all(&sh);
	sh_heap_release(&heap, &sh);
}
