/*
 * The shell's `stress` leaves the heap as it found it: every object its
 * workers allocated is freed, those handed to another CPU and still in
 * that CPU's inbox when the workers stop too.
 */
#include <stdatomic.h>

#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"

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
