/*
 * The shell's `stress` leaves the heap as it found it: every object its
 * workers allocated is freed, those handed to another CPU and still in
 * that CPU's inbox when the workers stop too; and its rss counts both of
 * the kernel heap's page heaps.
 */
#include <stdatomic.h>

#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "tests/kernel/capture_util.h"

/* Static: the statistics are too big for a stack, and a kmalloc would
 * count in them. */
static struct spanheap_stats st;

/* Objects in use in the span heap, every class and large ones, with no
 * CPU's magazine holding a freed one. */
static uint64_t objects_in_use(void)
{
	heap_flush_caches();
	spanheap_stats(&kspanheap, &st);
	uint64_t n = 0;
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++)
		n += st.cls[cls].objects_in_use;
	return n;
}

/* Tried a few times, in case another thread allocated meanwhile: a leak
 * shows on every try. */
KTEST(shell_stress, frees_every_object_it_allocated)
{
	if (atomic_load(&ncpus_online) < 2) {
		ktest_skip("needs 2 CPUs: objects cross CPUs only then");
		return;
	}
	uint64_t before = 0, after = 0;
	for (int tries = 0; tries < 5; tries++) {
		before = objects_in_use();
		KEXPECT_EQ(shell_run_line("stress 1"), SHELL_OK);
		after = objects_in_use();
		if (after == before)
			break;
	}
	if (after != before)
		ktest_diag("%llu objects in use before stress, %llu after",
		           (unsigned long long)before,
		           (unsigned long long)after);
	KEXPECT_EQ(after, before);
}

#if KTEST_HOOKS
/* Pages held in the span heap's metadata heap while `stress` runs: more
 * than the object heap holds in a run of shell_stress alone (a few MiB),
 * so that an rss of kheap's alone falls short of them. */
#define META_HELD 8192

/* The rss `stress` reports counts the metadata heap's pages too (span
 * structs, slabs, side tables: mm/spanheap_meta.c): with META_HELD of
 * them in use its peak is at least the metadata heap's pages in use.
 * Until a review it counted kheap's alone, and read less. */
KTEST(shell_stress, rss_counts_the_metadata_heap)
{
	void *held = mheap_alloc_pages(&kspanheap.meta, META_HELD, 0);
	KASSERT(held != NULL);
	struct mheap_stats m, h;
	mheap_stats(&kspanheap.meta, &m);
	mheap_stats(&kheap, &h);
	capture_start();
	enum shell_status st = shell_run_line("stress 1 1");
	capture_stop();
	mheap_free_pages(&kspanheap.meta, held, META_HELD);
	KEXPECT_EQ(st, SHELL_OK);
	const char *p = strstr(seen, "peak rss ");
	KASSERT(p != NULL);
	p += strlen("peak rss ");
	uint64_t rss = number_at(&p);
	ktest_diag("peak rss %llu frames; before: metadata heap %zu in use, "
	           "kheap %zu in use + %zu free backed",
	           (unsigned long long)rss, m.in_use_pages, h.in_use_pages,
	           h.free_backed_pages);
	KEXPECT(rss >= m.in_use_pages);
}
#endif
