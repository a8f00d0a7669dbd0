/*
 * mm/spanheap_config.h: what a port chooses when it sets up a span heap
 * (spanheap_init): the sweeper's pace and the poison mode, and the
 * defaults spanheap_config_default gives. Included by spanheap_types.h.
 */
#ifndef MM_SPANHEAP_CONFIG_H
#define MM_SPANHEAP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spanheap_config {
	/* A sweep cycle starts when pending frees pass this share of the
	 * bytes in use (permille, 1 to 1000) and at least min_pending_bytes
	 * (any value; 0: no floor, but some must be pending), or every
	 * period_ns (SPANHEAP_MIN_PERIOD_NS to UINT64_MAX, which is never)
	 * when anything is pending. spanheap_init refuses a value out of
	 * range, naming the field. */
	unsigned pending_permille;
	/*
	 * Poison mode, a debugging aid off by default (the kernel's
	 * mm.debug_poison, the hosted malloc's MM_MALLOC_POISON=1): every
	 * small object is filled with SPANHEAP_POISON_BYTE when it is freed
	 * (all of it but its second word, which holds the free marker), and
	 * the poison and the marker are checked when it is handed out again,
	 * when its span goes back to the page heap, and by spanheap_check.
	 * A write after a free then panics, naming the object, its span, its
	 * class and the first byte changed. Each small object also gets a red
	 * zone, the bytes of its class past those asked for, filled with
	 * SPANHEAP_REDZONE_BYTE when it is handed out and checked at its
	 * free and at a realloc that keeps it (spanheap_redzone.c): a write
	 * past its end panics the same way (a request of a class's own size
	 * takes a larger class to have one; but 32 KiB), and
	 * spanheap_usable_size gives the bytes asked. The CPUs keep no
	 * magazines in this mode, so every allocation and free takes the slow
	 * paths (no object waits unchecked in a cache). Large objects are not
	 * poisoned: their pages go back to the page heap at once (the kernel's
	 * mm.debug_pagealloc unmaps them). In this field's place in the
	 * struct, the padding after pending_permille, it leaves the struct's
	 * size (and struct spanheap's layout) as it was.
	 */
	bool poison : 1;
	/*
	 * For a port whose CPUs have no idle loop to call spanheap_cpu_idle
	 * and whose mm_port_each_other_cpu is cheap (the hosted malloc: a
	 * CPU is a thread's slot, and a blocked thread keeps its cache):
	 * the sweeper hands back the caches of the other CPUs that have not
	 * flushed since a cycle that began at least period_ns ago, at most
	 * once a period (spanheap_sweeper.c, quiet_visit). Off by default: a
	 * kernel's idle loop does it, and its each_other_cpu stops the
	 * world. A bit of poison's byte: the struct stays 32 bytes.
	 */
	bool flush_quiet_cpus : 1;
	/*
	 * The guarded pool (spanheap_guard.c, Linux's KFENCE), off when
	 * guard_slots is 0 (the default): up to guard_slots objects at once
	 * (KFENCE's default is 255), each on a page of its own between
	 * unmapped guard pages, and one allocation of a page or less in
	 * guard_interval refills and out-of-line allocations of each CPU
	 * goes there (guard_interval 1 to 65535 with slots; 0 with slots is
	 * refused, and without slots it is not read). An overrun, an
	 * underrun or a use after free of such an
	 * object faults at the access; a smaller overrun is seen at its
	 * free. Both fill the rest of poison's padding: the struct stays 32
	 * bytes, and the fields of struct spanheap every free reads keep
	 * their offsets (8 bytes more before them took the 64-byte pair from
	 * 2.98 to 3.45 ns, the same instructions: a load of one of them
	 * 4 KiB-aliased the object's marker store).
	 */
	uint8_t guard_slots;
	uint16_t guard_interval;
	size_t min_pending_bytes;
	uint64_t period_ns;
	/* Spans the sweeper sweeps between yields (at least 1). */
	unsigned batch_spans;
	/* The sweeper's CPU budget, in thousandths of one CPU (1 to 1000):
	 * after a cycle it sleeps long enough to stay within it. */
	unsigned cpu_permille;
};

#define SPANHEAP_DEFAULT_PENDING_PERMILLE 125 /* 1/8 */
#define SPANHEAP_DEFAULT_MIN_PENDING      ((size_t)1 << 20)
#define SPANHEAP_DEFAULT_PERIOD_NS        ((uint64_t)1000 * 1000 * 1000)
#define SPANHEAP_DEFAULT_BATCH_SPANS      32
#define SPANHEAP_DEFAULT_CPU_PERMILLE     10 /* 1% of one CPU */

/* The shortest period_ns spanheap_init takes. An idle sweeper looks every
 * quarter period, outside its CPU budget's pacing: until a review any
 * period from 1 ns was taken, and at 1 ns an idle heap's sweeper spun,
 * taking two thirds of a CPU and every class's lock over and over. */
#define SPANHEAP_MIN_PERIOD_NS ((uint64_t)1000 * 1000) /* 1 ms */

/* Poison mode's fill: read as a pointer, eight of it are not canonical on
 * x86-64 (nor on any 48- or 57-bit address space), so a freed object's
 * stale pointer faults at its first use. */
#define SPANHEAP_POISON_BYTE 0xdbu

/* Poison mode's red zone, the slack past the bytes asked for: not the
 * poison, so that a report tells an overrun from a write after a free. */
#define SPANHEAP_REDZONE_BYTE 0xbbu

#endif
