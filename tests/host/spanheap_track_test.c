/*
 * Poison mode's records of callers (mm/spanheap_track.c): every small
 * object's last allocation and last free, with the time, the CPU and the
 * stack, read back through spanheap_object_tracks and printed before the
 * panic of every report of the object (a double free, a write past its
 * end, a write after its free, an interior pointer, a realloc or usable
 * size of it freed). The functions that allocate and free here are kept
 * out of line, so that their return addresses must appear in the stacks
 * recorded. Outside poison mode, for
 * a large object and for a pointer outside the heap, nothing is recorded.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache.h"
#include "spanheap_test_util.h"
#include "track_log_util.h"

static struct mheap heap;
static struct spanheap sh;

/* Where the recorded stacks must lead: out of line, each the only caller
 * of the heap's call in its body. */
SH_SITE static void *track_alloc_here(size_t size)
{
	void *p = spanheap_alloc(&sh, size, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

SH_SITE static void track_free_here(void *p)
{
	spanheap_free(&sh, p);
	__asm__ volatile("" ::: "memory");
}

/* The index of the first of t's return addresses inside fn, one of the
 * two above, or -1 (track_log_util.h). */
static int pc_in(const struct spanheap_track *t, void *fn)
{
	return track_pc_in(t, fn,
	                   fn == (void *)track_alloc_here
	                           ? (void *)track_free_here
	                           : (void *)track_alloc_here);
}

KTEST(spanheap_track, records_name_the_callers_time_and_cpu)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	struct spanheap_track a, f;
	char *p = track_alloc_here(40);
	KASSERT(p);
	KASSERT(spanheap_object_tracks(&sh, p, &a, &f));
	KEXPECT(a.ns != 0);
	KEXPECT_EQ(a.cpu, 0u);
	KEXPECT(a.npcs >= 2);
	KEXPECT(pc_in(&a, (void *)track_alloc_here) >= 0);
	KEXPECT_EQ(f.ns, 0u); /* a fresh span's object was never freed */
	KEXPECT_EQ(f.npcs, 0u);
	/* An interior pointer reads its object's records. */
	struct spanheap_track a2, f2;
	KASSERT(spanheap_object_tracks(&sh, p + 17, &a2, &f2));
	KEXPECT_EQ(a2.ns, a.ns);

	mm_port_set_cpu(1); /* freed on another CPU */
	track_free_here(p);
	mm_port_set_cpu(0);
	KASSERT(spanheap_object_tracks(&sh, p, &a2, &f));
	KEXPECT(memcmp(&a2, &a, sizeof(a)) == 0); /* the allocation kept */
	KEXPECT(f.ns >= a.ns);
	KEXPECT_EQ(f.cpu, 1u);
	KEXPECT(pc_in(&f, (void *)track_free_here) >= 0);
	KEXPECT(pc_in(&f, (void *)track_alloc_here) < 0);
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_track, nothing_recorded_where_there_is_nothing_to_record)
{
	struct spanheap_track a, f;
	memset(&a, 0x5a, sizeof(a));
	KASSERT(sh_heap_fresh_poison(&heap, &sh, false));
	void *p = spanheap_alloc(&sh, 40, 0);
	KASSERT(p);
	KEXPECT(!spanheap_object_tracks(&sh, p, &a, &f)); /* not poison */
	spanheap_free(&sh, p);
	sh_heap_release(&heap, &sh);

	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	void *big = spanheap_alloc(&sh, SC_MAX_SIZE + 1, 0);
	KASSERT(big);
	KEXPECT(!spanheap_object_tracks(&sh, big, &a, &f)); /* large */
	static char outside[64];
	KEXPECT(!spanheap_object_tracks(&sh, outside, &a, &f));
	KEXPECT(!spanheap_object_tracks(&sh, NULL, &a, &f));
	KEXPECT_EQ(a.ns, 0x5a5a5a5a5a5a5a5aull); /* nothing written */
	spanheap_free(&sh, big);
	sh_heap_release(&heap, &sh);
}

/* A 100-byte object allocated and freed by the tracked helpers, into
 * *p, and the return addresses its records hold of each; false if it
 * cannot be had or its records do not name them. */
static bool freed_tracked(char **p, uintptr_t *apc, uintptr_t *fpc)
{
	*p = track_alloc_here(100);
	if (!*p)
		return false;
	track_free_here(*p);
	struct spanheap_track a, f;
	if (!spanheap_object_tracks(&sh, *p, &a, &f))
		return false;
	int ai = pc_in(&a, (void *)track_alloc_here);
	int fi = pc_in(&f, (void *)track_free_here);
	if (ai < 0 || fi < 0)
		return false;
	*apc = a.pc[ai];
	*fpc = f.pc[fi];
	return true;
}

/* The log holds p's last allocation and free, naming apc and fpc. */
static void expect_records_logged(int line, const char *p, uintptr_t apc,
                                  uintptr_t fpc)
{
	const char *la = line_of(log, p, "last allocated on CPU 0");
	const char *lf = line_of(log, p, "last freed on CPU 0");
	if (!la || !line_names(la, apc) || !lf || !line_names(lf, fpc))
		ktest_fail_at(__FILE__, line,
		              "no records of the allocation and free: log: %s",
		              log);
}

KTEST(spanheap_track, a_double_free_report_names_both_calls)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	char *p;
	uintptr_t apc, fpc;
	KASSERT(freed_tracked(&p, &apc, &fpc));
	PANIC_LOGGED(spanheap_free(&sh, p), "double free");
	expect_records_logged(__LINE__, p, apc, fpc);
	sh_heap_release(&heap, &sh);
}

/* A use after free through realloc or usable size: the free the
 * report is about is named as a double free's is (until a review the
 * panic came with no records). */
KTEST(spanheap_track, a_use_after_free_report_names_both_calls)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	char *p;
	uintptr_t apc, fpc;
	KASSERT(freed_tracked(&p, &apc, &fpc));
	PANIC_LOGGED(spanheap_realloc(&sh, p, 200, 0),
	             "realloc of an object already freed");
	expect_records_logged(__LINE__, p, apc, fpc);
	PANIC_LOGGED(spanheap_usable_size(&sh, p),
	             "usable size of an object already freed");
	KEXPECT(line_of(log, p, "last freed on CPU 0"));
	sh_heap_release(&heap, &sh);
}

/* A cache's object given to the heap's free: the report names the
 * allocation, as every other report of a tracked object does (until a
 * review this one came with no records). */
KTEST(spanheap_track, a_cache_objects_free_to_the_heap_names_its_allocation)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	struct objcache *c = objcache_create(&sh, "tracked", 40, 0);
	KASSERT(c);
	void *p = objcache_alloc(c, 0);
	KASSERT(p);
	PANIC_LOGGED(spanheap_free(&sh, p), "the object is cache 'tracked''s");
	KEXPECT(line_of(log, p, "last allocated on CPU 0"));
	objcache_free(c, p);
	KEXPECT(objcache_destroy(c));
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_track, an_overrun_report_names_the_allocation)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	char *p = track_alloc_here(20); /* a 32-byte class */
	KASSERT(p);
	p[20] = 0x41;
	struct spanheap_track a, f;
	KASSERT(spanheap_object_tracks(&sh, p, &a, &f));
	int ai = pc_in(&a, (void *)track_alloc_here);
	KASSERT(ai >= 0);
	PANIC_LOGGED(spanheap_free(&sh, p), "write past the end");
	const char *la = line_of(log, p, "last allocated on CPU 0");
	KEXPECT(la && line_names(la, a.pc[ai]));
	KEXPECT(line_of(log, p, "never freed since its span was made"));
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_track, a_write_after_free_report_names_the_free)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	size_t size = 64;
	unsigned n = sizeclass_info[sizeclass_of(size)].nelems;
	char *objs[SC_MAX_NELEMS];
	for (unsigned i = 0; i < n; i++)
		KASSERT(objs[i] = track_alloc_here(size));
	for (unsigned i = 0; i < n; i++)
		track_free_here(objs[i]);
	char *victim = objs[n / 2];
	struct spanheap_track a, f;
	KASSERT(spanheap_object_tracks(&sh, victim, &a, &f));
	int fi = pc_in(&f, (void *)track_free_here);
	KASSERT(fi >= 0);
	victim[30] = 0x11; /* the stale pointer's store */
	mm_port_set_quiet(true);
	mm_port_log_capture(log, sizeof(log));
	bool fired = false;
	for (unsigned i = 0; i < n && !fired; i++) {
		fired = MM_PORT_PANICS(objs[i] = spanheap_alloc(&sh, size, 0));
		sh_unpin_after_panic();
	}
	mm_port_log_capture(NULL, 0);
	mm_port_set_quiet(false);
	KEXPECT(fired && strstr(mm_port_last_panic(), "write after free"));
	const char *lf = line_of(log, victim, "last freed on CPU 0");
	KEXPECT(lf && line_names(lf, f.pc[fi]));
	sh_heap_release(&heap, &sh);
}

/* Records across CPUs and threads: objects allocated on CPU 0 and freed
 * by a thread on CPU 1 carry each side's CPU, and a heap full of records
 * checks clean and gives every page back. */
static void free_all_on_cpu1(void *arg)
{
	char **objs = arg;
	mm_port_set_cpu(1);
	for (unsigned i = 0; objs[i]; i++)
		track_free_here(objs[i]);
}

KTEST(spanheap_track, cross_cpu_frees_and_every_page_back)
{
	KASSERT(sh_heap_fresh_poison(&heap, &sh, true));
	enum { N = 3000 };
	static char *objs[N + 1];
	for (unsigned i = 0; i < N; i++) {
		objs[i] = track_alloc_here(8 + (i * 37) % 3000);
		KASSERT(objs[i]);
		memset(objs[i], 0x33, spanheap_usable_size(&sh, objs[i]));
	}
	objs[N] = NULL;
	struct mm_thread *t =
	        mm_port_thread_start("track", free_all_on_cpu1, objs);
	KASSERT(t);
	mm_port_thread_join(t);
	for (unsigned i = 0; i < N; i += 97) {
		struct spanheap_track a, f;
		if (!spanheap_object_tracks(&sh, objs[i], &a, &f))
			continue; /* its span went back already */
		KEXPECT_EQ(a.cpu, 0u);
		KEXPECT_EQ(f.cpu, 1u);
		KEXPECT(pc_in(&f, (void *)track_free_here) >= 0);
	}
	SH_CHECK(&sh, "after the cross-CPU frees");
	spanheap_release_all(&sh); /* the spans' tables with them */
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	sh_heap_release(&heap, &sh);
}
