/*
 * mm/pcpu.h: dynamic per-CPU memory over the span heap, Linux's
 * alloc_percpu / free_percpu: one allocation gives every CPU its own
 * zeroed copy of an object (a counter, a small list head), reached as
 * pcpu_ptr(pc, handle, cpu). Included by mm.h.
 *
 * Representation: a chunk is one block of the span heap of nunits units
 * of PCPU_UNIT_BYTES, unit i being CPU i's; an allocation is the same
 * range of granules in every unit of one chunk. The handle is the address
 * of its CPU 0 copy, and CPU c's copy lies c * PCPU_UNIT_BYTES after it,
 * whatever the chunk: one stride for every allocation, so pcpu_ptr is a
 * multiply and an add and reads nothing but its arguments (Linux keeps a
 * unit offset per CPU, the same for every chunk, because its chunks are
 * mapped to mirror the first one; a single stride needs no table, and the
 * span heap's arena is mapped for every CPU already). The handle is
 * CPU 0's copy, readable as such; use pcpu_ptr for the others.
 *
 * Which CPUs get a unit: the first nunits, fixed at pcpu_init (the port's
 * count of possible CPUs, every one that may ever run: the kernel's MADT
 * count). A CPU numbered nunits or above has no copy: pcpu_ptr mm_panics
 * naming it.
 *
 * Contexts: pcpu_init, pcpu_alloc, pcpu_free, pcpu_trim and
 * pcpu_empty_chunks in thread context (they
 * may sleep in the span heap); pcpu_ptr, pcpu_add, pcpu_sum and
 * pcpu_stats in any context but NMI. No atomic allocation: a chunk is
 * grown by a thread-context allocation of the span heap, and one shared
 * lock for both kinds would have to be taken with interrupts off for
 * every free (Linux's atomic percpu allocations too serve only chunks
 * already there).
 */
#ifndef MM_PCPU_H
#define MM_PCPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "port.h"

struct spanheap;

/* A CPU's unit: the stride between two CPUs' copies and the largest
 * allocation. A granule: the allocation unit inside it. */
#define PCPU_UNIT_BYTES ((size_t)8192)
#define PCPU_GRANULE    ((size_t)8)
#define PCPU_GRANULES   (PCPU_UNIT_BYTES / PCPU_GRANULE)
#define PCPU_MAP_WORDS  (PCPU_GRANULES / 64)
/* Chunks per allocator (the allocator's own limit on memory). */
#define PCPU_MAX_CHUNKS 64

_Static_assert(PCPU_UNIT_BYTES % MM_PAGE_SIZE == 0,
               "a unit is whole pages, so a page alignment holds in all");
_Static_assert(PCPU_GRANULES % 64 == 0, "the maps are whole words");

/* One chunk (pcpu.c): its memory and the maps of its unit's granules. */
struct pcpu_chunk {
	uintptr_t base; /* CPU 0's unit; nunits * PCPU_UNIT_BYTES, a page
	                   aligned block of the span heap */
	size_t free_granules;
	uint64_t used[PCPU_MAP_WORDS];  /* 1: the granule is allocated */
	uint64_t start[PCPU_MAP_WORDS]; /* 1: an allocation starts there */
};

/* An allocator. */
struct pcpu {
	/* Immutable after pcpu_init: */
	struct spanheap *sh;
	unsigned nunits;
	size_t chunk_bytes; /* nunits * PCPU_UNIT_BYTES */
	/* Rank MM_RANK_PCPU, a leaf taken alone (irqsave, thread context);
	 * nothing is allocated, freed or printed under it. Protects: */
	mm_lock_t lock;
	struct pcpu_chunk *chunks[PCPU_MAX_CHUNKS];
	unsigned nchunks, max_chunks;
	size_t used_granules; /* over all chunks, one unit's */
	uint64_t nlive, nallocs, nfrees;
};

/* Sets pc up over sh with nunits units per chunk (1 to MM_MAX_CPUS; the
 * CPUs numbered below it have a copy of every allocation). False, with a
 * line naming what was wrong, for a bad count. No memory is taken until
 * the first allocation. Thread context. */
bool pcpu_init(struct pcpu *pc, struct spanheap *sh, unsigned nunits);

/* A handle to nunits zeroed copies of size bytes aligned to align (a
 * power of two up to a page; 0: 8), each the start of its CPU's copy
 * pcpu_ptr gives; or NULL: a line names what was wrong for size 0, a size
 * above PCPU_UNIT_BYTES or a bad alignment, and for the allocator's
 * PCPU_MAX_CHUNKS full; no memory, quietly. Nothing is kept from a failed
 * call. Thread context, no mm lock held. */
void *pcpu_alloc(struct pcpu *pc, size_t size, size_t align);

/* Frees every copy of handle h (NULL: nothing); an emptied chunk goes
 * back to the span heap unless it is the last. mm_panics naming h for
 * what no pcpu_alloc of pc returned: a pointer no chunk holds, a CPU's
 * copy other than CPU 0's, a pointer into an allocation, an allocation
 * freed already. Thread context, no mm lock held. */
void pcpu_free(struct pcpu *pc, void *h);

/* Gives every empty chunk back to the span heap: the spare pcpu_free
 * keeps, and one a race of two growing allocations left empty. Returns
 * how many went back; the next allocation makes a chunk again. Thread
 * context, no mm lock held. */
size_t pcpu_trim(struct pcpu *pc);

/* How many chunks pcpu_trim would give back now (a scan of the table
 * under the lock). Thread context, no mm lock held. */
size_t pcpu_empty_chunks(struct pcpu *pc);

__attribute__((noreturn)) void pcpu_bad_cpu(const struct pcpu *pc,
                                            const void *h, unsigned cpu);

/* CPU cpu's copy of h. Any context. */
static inline void *pcpu_ptr(const struct pcpu *pc, const void *h, unsigned cpu)
{
	if (__builtin_expect(cpu >= pc->nunits, 0))
		pcpu_bad_cpu(pc, h, cpu);
	return (char *)(uintptr_t)h + (size_t)cpu * PCPU_UNIT_BYTES;
}

/* Adds d to this CPU's copy of the 64-bit counter h: pinned, so no other
 * thread and no interrupt on this CPU writes it meanwhile, and no other
 * CPU ever does. Any context but NMI. */
static inline void pcpu_add(const struct pcpu *pc, int64_t *h, int64_t d)
{
	struct mm_pin pin = mm_port_pin();
	int64_t *n = (int64_t *)pcpu_ptr(pc, h, (unsigned)pin.cpu);
	__atomic_store_n(n, __atomic_load_n(n, __ATOMIC_RELAXED) + d,
	                 __ATOMIC_RELAXED);
	mm_port_unpin(pin);
}

/* The sum of every CPU's copy of the counter h: exact when no CPU adds
 * meanwhile. Any context. */
static inline int64_t pcpu_sum(const struct pcpu *pc, const int64_t *h)
{
	int64_t sum = 0;
	for (unsigned cpu = 0; cpu < pc->nunits; cpu++)
		sum += __atomic_load_n((const int64_t *)pcpu_ptr(pc, h, cpu),
		                       __ATOMIC_RELAXED);
	return sum;
}

/* What the shell's meminfo gives. Bytes are one unit's, so each CPU's;
 * the memory taken is chunks * chunk_bytes. */
struct pcpu_stats {
	unsigned nunits, nchunks, max_chunks;
	size_t unit_bytes, chunk_bytes;
	size_t used_bytes, free_bytes; /* in the chunks, per unit */
	uint64_t nlive, nallocs, nfrees;
};

/* pc's statistics. Any context but NMI. */
void pcpu_stats(struct pcpu *pc, struct pcpu_stats *out);

/* Checks every invariant of pc (pcpu.c) and mm_panics naming the first
 * broken one, with the chunk dumped. Thread context. */
void pcpu_check(struct pcpu *pc);

#endif
