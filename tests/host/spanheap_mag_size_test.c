/*
 * The magazines' sizes (mm/spanheap_cache.c, "Sizes"): a magazine
 * starts at its class's most; a CPU that only frees the class halves it
 * at every third spill in a row, down to its floor (4 KiB of objects,
 * at least 16), so that a consumer of objects another CPU allocates holds
 * few of them; a refill of it empty doubles it again, up to the most, and
 * starts the count of spills over. Through the POSIX port, one thread
 * playing two CPUs; spanheap_check runs at every quiet point.
 */
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/spanheap_internal.h"
#include "spanheap_test_util.h"

static struct mheap heap;
static struct spanheap sh;

enum { OBJ = 256, NOBJ = 1200 };

/* CPU cpu's magazine of the class of OBJ: its size and what it holds. */
static uint32_t mag_size(unsigned cpu)
{
	unsigned cls = sizeclass_of(OBJ);
	return (uint32_t)(sh.caches[cpu].mag[cls].limit -
	                  mag_base(&sh, cpu, cls));
}

static uint32_t mag_held(unsigned cpu)
{
	unsigned cls = sizeclass_of(OBJ);
	return (uint32_t)(sh.caches[cpu].mag[cls].top -
	                  mag_base(&sh, cpu, cls));
}

/* The size after a magazine of size `size` spills for the `nth` time in a
 * row: halved at every third, down to the floor. */
static uint32_t size_after_spill(uint32_t size, unsigned nth, uint32_t floor)
{
	if (nth % 3)
		return size;
	return size / 2 > floor ? size / 2 : floor;
}

/* Frees n objects of p on CPU cpu, checking each spill's size against the
 * rule (*spills counts them in a row, *size is the size). Returns false at
 * the first difference, after a KEXPECT naming it. */
static bool free_counting_spills(unsigned cpu, void **p, unsigned n,
                                 unsigned *spills, uint32_t *size)
{
	unsigned cls = sizeclass_of(OBJ);
	uint32_t floor = mag_floor(&sh, cls);
	mm_port_set_cpu(cpu);
	for (unsigned i = 0; i < n; i++) {
		uint32_t held = mag_held(cpu);
		spanheap_free(&sh, p[i]);
		if (held == *size) { /* it was full: a spill */
			*size = size_after_spill(*size, ++*spills, floor);
			KEXPECT_EQ(mag_size(cpu), *size);
			KEXPECT_EQ(mag_held(cpu), *size / 2 + 1);
		} else {
			KEXPECT_EQ(mag_size(cpu), *size);
			KEXPECT_EQ(mag_held(cpu), held + 1);
		}
		if (mag_size(cpu) != *size)
			return false;
	}
	return true;
}

/* A CPU that only frees the class: its magazine starts at the most,
 * keeps it for two spills, halves at the third, and ends at its floor,
 * where it holds at most 16 objects of 256 bytes (4 KiB) instead of 128.
 * Objects of CPU 1's spans, freed on CPU 0. */
KTEST(spanheap_mag_size, cpu_that_only_frees_shrinks_to_the_floor)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(OBJ);
	uint32_t max = sh.mag_max[cls], floor = mag_floor(&sh, cls);
	KASSERT_EQ(max, SPANHEAP_MAG_MAX);
	KASSERT_EQ(floor, 4096 / OBJ);
	static void *p[NOBJ];
	mm_port_set_cpu(1);
	KASSERT(sh_alloc_n(&sh, p, NOBJ, OBJ));
	mm_port_set_cpu(0);
	spanheap_free(&sh, p[0]); /* makes CPU 0's slab */
	KEXPECT_EQ(mag_size(0), max);
	unsigned spills = 0;
	uint32_t size = max;
	KEXPECT(free_counting_spills(0, p + 1, NOBJ - 1, &spills, &size));
	KEXPECT_EQ(size, floor);
	KEXPECT_EQ(mag_size(0), floor);
	/* 128 -> 64 -> 32 -> 16: the ninth spill in a row reached it. */
	KEXPECT(spills >= 9);
	KEXPECT(mag_held(0) <= floor);
	struct spanheap_stats st;
	spanheap_stats(&sh, &st);
	KEXPECT_EQ(st.cls[cls].objects_in_use, 0);
	SH_CHECK(&sh, "a magazine at its floor");
	/* CPU 1, which only allocated, kept its size. */
	KEXPECT_EQ(mag_size(1), max);
	/* The statistics say so: what both magazines hold, and may. */
	KEXPECT_EQ(st.cls[cls].mag_room, (size_t)floor + max);
	KEXPECT_EQ(st.cls[cls].mag_objects, (size_t)mag_held(0) + mag_held(1));
	KEXPECT_EQ(st.mag_objects, st.cls[cls].mag_objects);
	sh_flush_cpus(&sh, 2);
	SH_CHECK(&sh, "flushed");
	sh_heap_release(&heap, &sh);
}

/* A shrunk magazine doubles at each refill of it empty, up to the most:
 * its CPU allocates the class after all. By the magazine's path (flags
 * 0), or by the general one (flags MM_ZERO: zeroed, and aligned, take
 * it) alike. */
static void grow_back(unsigned flags)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(OBJ);
	uint32_t max = sh.mag_max[cls], floor = mag_floor(&sh, cls);
	static void *p[NOBJ];
	mm_port_set_cpu(1);
	KASSERT(sh_alloc_n(&sh, p, NOBJ, OBJ));
	mm_port_set_cpu(0);
	spanheap_free(&sh, p[0]); /* makes CPU 0's slab */
	unsigned spills = 0;
	uint32_t size = max;
	KASSERT(free_counting_spills(0, p + 1, NOBJ - 1, &spills, &size));
	KASSERT_EQ(size, floor);
	/* CPU 0 allocates: the pops take what the magazine holds; each
	 * allocation that finds it empty is a refill, which doubles it
	 * (and fills it with a few of the span's next objects). */
	unsigned refills = 0, n = 0;
	while (mag_size(0) < max && n < NOBJ) {
		bool empty = mag_held(0) == 0;
		uint32_t before = mag_size(0);
		p[n] = spanheap_alloc(&sh, OBJ, flags);
		KASSERT(p[n]);
		if (flags & MM_ZERO)
			KEXPECT(all_bytes(p[n], OBJ, 0));
		memset(p[n++], 0x5a, OBJ);
		if (empty) {
			refills++;
			KEXPECT_EQ(mag_size(0),
			           2 * before < max ? 2 * before : max);
		} else {
			KEXPECT_EQ(mag_size(0), before);
		}
	}
	KEXPECT_EQ(mag_size(0), max);
	KEXPECT_EQ(refills, 3); /* 16 -> 32 -> 64 -> 128 */
	SH_CHECK(&sh, "grown back");
	for (unsigned i = 0; i < n; i++)
		spanheap_free(&sh, p[i]);
	sh_flush_cpus(&sh, 2);
	SH_CHECK(&sh, "flushed");
	sh_heap_release(&heap, &sh);
}

KTEST(spanheap_mag_size, refills_grow_it_back_to_the_most)
{
	grow_back(0);
}

KTEST(spanheap_mag_size, zeroed_refills_grow_it_back_too)
{
	grow_back(MM_ZERO);
}

/* Only spills in a row count: a refill of the magazine empty between two
 * starts the count over, so a CPU that both frees and allocates the
 * class keeps its magazine at the most. Here two spills, then the
 * magazine is emptied and refilled, then two more: no halving; a third
 * in a row halves it. */
KTEST(spanheap_mag_size, a_refill_between_spills_starts_the_count_over)
{
	KASSERT(sh_heap_new(&heap, &sh, SH_ARENA_BYTES));
	unsigned cls = sizeclass_of(OBJ);
	uint32_t max = sh.mag_max[cls];
	static void *p[NOBJ];
	mm_port_set_cpu(1);
	KASSERT(sh_alloc_n(&sh, p, NOBJ, OBJ));
	mm_port_set_cpu(0);
	spanheap_free(&sh, p[0]); /* makes CPU 0's slab */
	/* fill it, spill, then max / 2 to the second spill */
	unsigned two = max + 1 + max / 2;
	unsigned spills = 0;
	uint32_t size = max;
	KASSERT(free_counting_spills(0, p + 1, two - 1, &spills, &size));
	KASSERT_EQ(spills, 2);
	KEXPECT_EQ(mag_size(0), max);
	/* Empty it, and one more allocation: the refill. */
	static void *q[SPANHEAP_MAG_MAX + 1];
	uint32_t held = mag_held(0);
	for (uint32_t i = 0; i <= held; i++) {
		q[i] = spanheap_alloc(&sh, OBJ, 0);
		KASSERT(q[i]);
	}
	KEXPECT_EQ(mag_size(0), max);
	KEXPECT_EQ(sh.caches[0].mag_spills[cls], 0);
	/* Two more spills: fill what the refill left room for, then two. */
	unsigned more = (max - mag_held(0)) + 1 + max / 2;
	spills = 0;
	KASSERT(free_counting_spills(0, p + two, more, &spills, &size));
	KEXPECT_EQ(spills, 2);
	KEXPECT_EQ(mag_size(0), max);
	/* The third in a row halves it. */
	KASSERT(free_counting_spills(0, p + two + more, max / 2, &spills,
	                             &size));
	KEXPECT_EQ(spills, 3);
	KEXPECT_EQ(mag_size(0), max / 2);
	SH_CHECK(&sh, "halved");
	for (uint32_t i = 0; i <= held; i++)
		spanheap_free(&sh, q[i]);
	for (unsigned i = two + more + max / 2; i < NOBJ; i++)
		spanheap_free(&sh, p[i]);
	sh_flush_cpus(&sh, 2);
	SH_CHECK(&sh, "flushed");
	sh_heap_release(&heap, &sh);
}
