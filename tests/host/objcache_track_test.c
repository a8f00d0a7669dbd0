/*
 * Poison mode's records of the objects of caches with slabs of their own
 * (mm/objcache_track.c): each object's last allocation and last free,
 * kept in its slab, read back through spanheap_object_tracks, printed
 * before the panic of a double free (an object in a CPU's stash, and of
 * a cache with no stashes, free in its slab), an interior pointer and a
 * free to another cache, described by spanheap_where_log (the shell's
 * addrinfo) with the cache, the object and its state, and grouped by
 * spanheap_alloc_traces_owned (alloctraces CACHE). The functions that
 * allocate and free are out of line, so that their return addresses must
 * appear in the stacks recorded. Outside poison mode nothing is recorded
 * and the description has no records.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "../../mm/objcache_own.h"
#include "mm_port_posix.h"
#include "spanheap_test_util.h"
#include "track_log_util.h"

static struct mheap heap;
static struct spanheap sh;

static void ctor(void *p)
{
	memset(p, 0x7c, 8);
}

SH_SITE static void *own_alloc_here(struct objcache *c)
{
	void *p = objcache_alloc(c, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

SH_SITE static void own_free_here(struct objcache *c, void *p)
{
	objcache_free(c, p);
	__asm__ volatile("" ::: "memory");
}

/* The index of the first of t's return addresses inside fn, one of the
 * two above, or -1 (track_log_util.h). */
static int pc_in(const struct spanheap_track *t, void *fn)
{
	return track_pc_in(t, fn,
	                   fn == (void *)own_alloc_here
	                           ? (void *)own_free_here
	                           : (void *)own_alloc_here);
}

/* A ctor cache of size-byte objects in a fresh poison heap: 40 bytes
 * have stashes, 20000 (one a slab) none. */
static struct objcache *fresh_cache(const char *name, size_t size)
{
	if (!sh_heap_fresh_poison(&heap, &sh, true))
		return NULL;
	return objcache_create_flags(&sh, name, size, 0, 0, ctor);
}

static void done(struct objcache *c)
{
	KEXPECT(objcache_destroy(c));
	sh_heap_release(&heap, &sh);
}

/* p allocated on CPU 0 and freed on CPU 1 by the helpers: its records
 * name them, on those CPUs. */
static void expect_alloc_then_free(struct objcache *c)
{
	struct spanheap_track a, f, a2;
	char *p = own_alloc_here(c);
	KASSERT(p);
	KASSERT(spanheap_object_tracks(&sh, p + 5, &a, &f));
	KEXPECT(a.ns != 0);
	KEXPECT_EQ(a.cpu, 0u);
	KEXPECT(pc_in(&a, (void *)own_alloc_here) >= 0);
	KEXPECT_EQ(f.ns, 0u); /* a new slab's object was never freed */
	mm_port_set_cpu(1);
	own_free_here(c, p);
	mm_port_set_cpu(0);
	KASSERT(spanheap_object_tracks(&sh, p, &a2, &f));
	KEXPECT(memcmp(&a2, &a, sizeof(a)) == 0); /* the allocation kept */
	KEXPECT(f.ns >= a.ns);
	KEXPECT_EQ(f.cpu, 1u);
	KEXPECT(pc_in(&f, (void *)own_free_here) >= 0);
	KEXPECT(pc_in(&f, (void *)own_alloc_here) < 0);
}

KTEST(objcache_track, records_name_the_allocation_and_the_free)
{
	struct objcache *c = fresh_cache("tracked", 40);
	KASSERT(c);
	expect_alloc_then_free(c);
	done(c);
	c = fresh_cache("tracked-big", 20000); /* no stashes */
	KASSERT(c);
	expect_alloc_then_free(c);
	done(c);
}

/* The log holds object p's last allocation and free, naming the
 * helpers' return addresses in a and f. */
static void expect_records_logged(int line, const char *p,
                                  const struct spanheap_track *a,
                                  const struct spanheap_track *f)
{
	int ai = pc_in(a, (void *)own_alloc_here);
	int fi = pc_in(f, (void *)own_free_here);
	const char *la = line_of(log, p, "last allocated on CPU 0");
	const char *lf = line_of(log, p, "last freed on CPU 0");
	if (ai < 0 || fi < 0 || !la || !line_names(la, a->pc[ai]) || !lf ||
	    !line_names(lf, f->pc[fi]))
		ktest_fail_at(__FILE__, line,
		              "no records of the allocation and free: log: %s",
		              log);
}

/* A double free of c's object: the report names the first free. */
static void expect_double_free_named(struct objcache *c, const char *how)
{
	char *p = own_alloc_here(c);
	KASSERT(p);
	own_free_here(c, p);
	struct spanheap_track a, f;
	KASSERT(spanheap_object_tracks(&sh, p, &a, &f));
	PANIC_LOGGED(objcache_free(c, p), how);
	expect_records_logged(__LINE__, p, &a, &f);
}

KTEST(objcache_track, a_double_free_report_names_both_calls)
{
	struct objcache *c = fresh_cache("twice", 40);
	KASSERT(c);
	expect_double_free_named(c, "in a CPU's stash already");
	done(c);
	c = fresh_cache("twice-big", 20000);
	KASSERT(c);
	expect_double_free_named(c, "free already");
	done(c);
}

/* An interior pointer, and an object freed to another cache: the
 * report names the object's allocation. */
KTEST(objcache_track, a_bad_pointer_report_names_the_allocation)
{
	struct objcache *c = fresh_cache("bad", 40);
	KASSERT(c);
	struct objcache *o =
	        objcache_create_flags(&sh, "other", 40, 0, 0, ctor);
	KASSERT(o);
	char *p = own_alloc_here(c);
	KASSERT(p);
	PANIC_LOGGED(objcache_free(c, p + 8), "interior pointer");
	KEXPECT(line_of(log, p, "last allocated on CPU 0"));
	KEXPECT(line_of(log, p, "never freed since its span was made"));
	PANIC_LOGGED(objcache_free(o, p), "is of cache 'bad''s slabs");
	KEXPECT(line_of(log, p, "last allocated on CPU 0"));
	PANIC_LOGGED(spanheap_free(&sh, p), "an object of cache 'bad'");
	KEXPECT(line_of(log, p, "last allocated on CPU 0"));
	objcache_free(c, p);
	KEXPECT(objcache_destroy(o));
	done(c);
}

/* spanheap_where_log (the shell's addrinfo): the cache, the object, its
 * state, and in poison mode its records. */
KTEST(objcache_track, where_names_the_cache_object_and_records)
{
	struct objcache *c = fresh_cache("where", 40);
	KASSERT(c);
	char *p = own_alloc_here(c), *q = own_alloc_here(c);
	KASSERT(p && q);
	char want[160];
	mm_port_log_capture(log, sizeof(log));
	spanheap_where_log(&sh, p + 9);
	mm_port_log_capture(NULL, 0);
	snprintf(want, sizeof(want),
	         "9 bytes into object 0 at %#lx (allocated) "
	         "of cache 'where''s slab",
	         (unsigned long)(uintptr_t)p);
	KEXPECT(strstr(log, want));
	KEXPECT(line_of(log, p, "last allocated on CPU 0"));
	own_free_here(c, q);
	mm_port_log_capture(log, sizeof(log));
	spanheap_where_log(&sh, q);
	mm_port_log_capture(NULL, 0);
	KEXPECT(strstr(log, "(free, in a CPU's stash) of cache 'where''s"));
	KEXPECT(line_of(log, q, "last freed on CPU 0"));
	mm_port_log_capture(log, sizeof(log));
	spanheap_where_log(&sh, p - 1); /* object 0's: the header */
	mm_port_log_capture(NULL, 0);
	KEXPECT(strstr(log, "in the header of cache 'where''s slab"));
	objcache_free(c, p);
	done(c);
}

/* spanheap_alloc_traces_owned (alloctraces CACHE): the cache's live
 * objects under their allocating stack, those freed left out. */
KTEST(objcache_track, alloc_traces_group_the_live_objects)
{
	struct objcache *c = fresh_cache("traced", 40);
	KASSERT(c);
	struct objcache_info in;
	objcache_info(c, &in);
	char *p[7];
	/* One call site, one stack: clang -O2 would unroll it. */
#pragma GCC unroll 1
	for (int i = 0; i < 7; i++)
		KASSERT(p[i] = own_alloc_here(c));
	own_free_here(c, p[6]);
	own_free_here(c, p[5]);
	struct spanheap_trace t[4];
	size_t rest = 1;
	size_t n = spanheap_alloc_traces_owned(&sh, 0, in.owner, t, 4, &rest);
	KEXPECT_EQ(rest, 0u);
	KASSERT(n == 1);
	KEXPECT_EQ(t[0].objects, 5u);
	KEXPECT_EQ(t[0].bytes, 5u * 40);
	struct spanheap_track a = {.npcs = t[0].npcs};
	memcpy(a.pc, t[0].pc, sizeof(a.pc));
	KEXPECT(pc_in(&a, (void *)own_alloc_here) >= 0);
	for (int i = 0; i < 5; i++)
		objcache_free(c, p[i]);
	done(c);
}

/* Outside poison mode: no records; the description says the object. */
KTEST(objcache_track, without_poison_nothing_is_recorded)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, false));
	struct objcache *c =
	        objcache_create_flags(&sh, "plain", 40, 0, 0, ctor);
	KASSERT(c);
	char *p = own_alloc_here(c);
	KASSERT(p);
	struct spanheap_track a, f;
	KEXPECT(!spanheap_object_tracks(&sh, p, &a, &f));
	mm_port_log_capture(log, sizeof(log));
	spanheap_where_log(&sh, p);
	mm_port_log_capture(NULL, 0);
	KEXPECT(strstr(log, "(allocated) of cache 'plain''s slab"));
	KEXPECT(!line_of(log, p, "last allocated"));
	objcache_free(c, p);
	done(c);
}
