/*
 * malloc/malloc_info.c: the hosted malloc's reports and its trim:
 * glibc's statistics calls (mallinfo2, mallinfo, malloc_stats,
 * malloc_info) over this heap, malloc_trim, and the extensions the tests
 * read (mm_malloc.h: mm_malloc_threads, mm_malloc_slot_mode), and
 * mm_malloc_describe, which says what an address is to the heap. The
 * allocation calls and their conventions are in malloc.c.
 *
 * Contexts: thread context, outside any API call of the same thread
 * (none of them is async-signal-safe, as glibc's are not); each reads
 * the heap without stopping it, or, malloc_trim, releases it under
 * ctl_lock (slots.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "malloc_internal.h"
#include "mm_malloc.h"

#define API __attribute__((visibility("default")))

/*
 * glibc's statistics (mallinfo2, mallinfo, malloc_stats, malloc_info)
 * over this heap: until this version they were glibc's, whose heap this
 * library never uses, and said nothing was in use. arena is what the
 * heap holds backed (pages in spans, the span heap's own in its metadata
 * heap, and free pages of both not given back),
 * uordblks the bytes of objects in use (small and large), fordblks the
 * rest of arena; ordblks counts free objects in spans, smblks those
 * waiting in the per-CPU caches (glibc's fastbins) and fsmblks their
 * bytes: the two counts are apart, as glibc's are (until this version
 * ordblks counted the cached objects too; review). No mmapped chunks
 * (hblks, hblkhd) and no top to keep (keepcost): 0. Objects of the
 * guarded pool (MM_MALLOC_GUARD) are outside the arena and counted apart,
 * on malloc_stats' pool line. Counted without stopping the heap (exact
 * when nothing allocates meanwhile); a walk of every span, so not for a
 * hot path. Not async-signal-safe, as glibc's are not.
 */
struct info {
	size_t arena, in_use, max, free_objects, cached_objects, cached_bytes;
	/* The guarded pool (MM_MALLOC_GUARD; slots 0: none). */
	unsigned guard_slots, guard_live;
	uint64_t guard_allocs, guard_full;
};

static void info_read(struct info *in)
{
	struct spanheap_stats st; /* about 3.5 KiB of stack */
	if (!mm_malloc_heap_up()) {
		memset(in, 0, sizeof(*in)); /* its set-up failed: nothing */
		return;
	}
	/* Inside a call, as the allocations are: a fork meanwhile waits for
	 * it, so that no child inherits the heap's lock held by this
	 * thread's walk. */
	_Atomic unsigned long *held = mm_malloc_enter();
	spanheap_stats(&mm_malloc_sh, &st);
	mm_malloc_leave(held);
	/* Both page heaps': the span heap's own pages are its metadata
	 * heap's (until a review the arena left them out, poison mode's side
	 * tables too: half of what the heap held). */
	in->arena = (st.heap.in_use_pages + st.heap.free_backed_pages +
	             st.meta.in_use_pages + st.meta.free_backed_pages) *
	            MM_PAGE_SIZE;
	in->max = (st.heap.grown_pages + st.meta.grown_pages) * MM_PAGE_SIZE;
	/* A class's free objects include those in its magazines. */
	in->free_objects = in->cached_objects = in->cached_bytes = 0;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		const struct spanheap_class_stats *cs = &st.cls[cls];
		size_t cached = cs->mag_objects < cs->objects_free
		                        ? cs->mag_objects
		                        : cs->objects_free;
		in->free_objects += cs->objects_free - cached;
		in->cached_objects += cached;
		in->cached_bytes += cached * cs->size;
	}
	/* Clamped so that a release between the walk and the heap's totals
	 * leaves fordblks, the arena less the bytes in use, neither wrapped
	 * nor below the cached bytes it holds (fsmblks; until a review it
	 * could be 0 beside them). */
	if (in->cached_bytes > in->arena)
		in->cached_bytes = in->arena;
	size_t room = in->arena - in->cached_bytes;
	in->in_use = st.bytes_in_use < room ? st.bytes_in_use : room;
	in->guard_slots = st.guard_slots;
	in->guard_live = st.guard_live;
	in->guard_allocs = st.guard_allocs;
	in->guard_full = st.guard_full;
}

API struct mallinfo2 mallinfo2(void)
{
	struct info in;
	info_read(&in);
	return (struct mallinfo2){
	        .arena = in.arena,
	        .ordblks = in.free_objects,
	        .smblks = in.cached_objects,
	        .fsmblks = in.cached_bytes,
	        .uordblks = in.in_use,
	        .fordblks = in.arena - in.in_use,
	};
}

/* glibc's old form: its int fields wrap past 2 GiB, as glibc's do. */
API struct mallinfo mallinfo(void)
{
	struct mallinfo2 m = mallinfo2();
	return (struct mallinfo){
	        .arena = (int)m.arena,
	        .ordblks = (int)m.ordblks,
	        .smblks = (int)m.smblks,
	        .fsmblks = (int)m.fsmblks,
	        .uordblks = (int)m.uordblks,
	        .fordblks = (int)m.fordblks,
	};
}

/* glibc's lines on stderr, for the one arena there is; then, with
 * MM_MALLOC_GUARD, the guarded pool's counts. */
API void malloc_stats(void)
{
	struct info in;
	info_read(&in);
	int saved_errno = errno;
	fprintf(stderr,
	        "Arena 0:\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
	        "Total (incl. mmap):\nsystem bytes     = %10zu\n"
	        "in use bytes     = %10zu\nmax mmap regions = %10u\n"
	        "max mmap bytes   = %10u\n",
	        in.arena, in.in_use, in.arena, in.in_use, 0u, 0u);
	/* Ours, after glibc's lines, only with a pool. */
	if (in.guard_slots)
		fprintf(stderr,
		        "guarded pool     = %10u slots, %u live, %llu "
		        "allocated, %llu found full\n",
		        in.guard_slots, in.guard_live,
		        (unsigned long long)in.guard_allocs,
		        (unsigned long long)in.guard_full);
	errno = saved_errno;
}

/* glibc's XML (version 1): one heap, its totals, the process's totals,
 * each in glibc's order (the process's has mmap's line between the
 * blocks and the system sizes: tools read them by position; until a
 * review it came last). Returns 0, or EINVAL for options other than 0
 * with errno untouched, as glibc 2.36 does (its manual page says -1 and
 * errno EINVAL; until a review this did that). */
API int malloc_info(int options, FILE *fp)
{
	if (options != 0)
		return EINVAL;
	struct info in;
	info_read(&in);
	char blocks[192], system[320];
	snprintf(blocks, sizeof(blocks),
	         "<total type=\"fast\" count=\"%zu\" size=\"%zu\"/>\n"
	         "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n",
	         in.cached_objects, in.cached_bytes, in.free_objects,
	         in.arena - in.in_use > in.cached_bytes
	                 ? in.arena - in.in_use - in.cached_bytes
	                 : 0);
	snprintf(system, sizeof(system),
	         "<system type=\"current\" size=\"%zu\"/>\n"
	         "<system type=\"max\" size=\"%zu\"/>\n"
	         "<aspace type=\"total\" size=\"%zu\"/>\n"
	         "<aspace type=\"mprotect\" size=\"%zu\"/>\n",
	         in.arena, in.max, in.arena, in.arena);
	fprintf(fp,
	        "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n"
	        "%s%s</heap>\n%s<total type=\"mmap\" count=\"0\" size=\"0\"/>\n"
	        "%s</malloc>\n",
	        blocks, system, blocks, system);
	return 0;
}

/* Threads holding a slot (owners summed); for the tests. */
API unsigned mm_malloc_threads(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < MM_MAX_CPUS; i++)
		n += atomic_load(&mm_malloc_slots[i].state) / MM_SLOT_ONE;
	return n;
}

/* How exclusive owners hold their slot: "membarrier" (a plain store) or
 * "exchange" (membarrier(2) unavailable, or MM_MALLOC_MEMBARRIER=0);
 * decided once, at the heap's initialisation. */
API const char *mm_malloc_slot_mode(void)
{
	if (mm_malloc_self.slot_id < 0)
		mm_malloc_first_use(); /* the mode is decided at init */
	return mm_malloc_fences ? "membarrier" : "exchange";
}

/*
 * malloc_trim (malloc.c lists the conventions): flushes this thread's
 * cache, runs a sweep cycle and gives every free page back
 * (spanheap_release_all), as the background threads do, outside any API
 * call: its pins take this thread's slot step by step, so it holds none
 * while it waits. Under ctl_lock, as the background threads run, so that
 * fork waits for it: a child forked in the middle inherited the cycle
 * semaphore held, or a scavenge batch's pages out of the free set, with
 * no thread to give them back. Returns 1 if pages were given back (the
 * guarded pool's unmapped slots too), else 0: also before the heap is set up
 * (it holds nothing), inside a call (a signal handler that interrupted one: mm/
 * may be in the middle of something) or inside this thread's hold of ctl_lock
 * (EDEADLK). pad is ignored: there is no top of heap to keep. Keeps errno.
 */
API int malloc_trim(size_t pad)
{
	(void)pad;
	if (mm_malloc_self.held || !mm_malloc_heap_ready())
		return 0;
	int saved_errno = errno;
	size_t npages = 0;
	if (mm_malloc_ctl_take() == 0) {
		npages = spanheap_release_all(&mm_malloc_sh);
		mm_malloc_ctl_give();
	}
	errno = saved_errno;
	return npages != 0;
}

API void mm_malloc_describe(const void *p)
{
	/* mm_log's lines, which this library prints only when asked
	 * (MM_MALLOC_VERBOSE), are this call's output: this thread's, now. */
	mm_malloc_log_here(true);
	if (mm_malloc_heap_up())
		spanheap_where_log(&mm_malloc_sh, p);
	else
		mm_log("%p: there is no heap (its set-up failed)", p);
	mm_malloc_log_here(false);
}

#ifdef MM_TEST_HOOKS
API void mm_malloc_test_check(void)
{
	if (!mm_malloc_heap_up())
		return;
	spanheap_check(&mm_malloc_sh);
	mheap_check(&mm_malloc_heap);
}
#endif
