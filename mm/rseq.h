/*
 * mm/rseq.h: restartable sequences, the fast paths' pin for a port that
 * offers them (MM_PORT_RSEQ, mm/port.h).
 *
 * A restartable sequence is a short run of instructions that reads the
 * CPU's index, works on that CPU's data and ends with one store, its
 * commit. If anything interrupts it before the commit, the port's interrupt
 * entry moves the saved instruction pointer back to the sequence's first
 * instruction (mm_rseq_restart), so it starts over: on whatever CPU the
 * thread then runs, from data the handler may have changed. Its stores
 * before the commit go only where no one reads them (above a magazine's
 * top) or are repeated by the restart (an object's free marker). So the
 * sequence behaves as one step on its CPU, with no interrupts disabled and
 * no preemption count: Linux's user-space rseq, in kernel mode.
 *
 * Each sequence leaves a struct mm_rseq_range {first instruction, the
 * address past the commit} in the section mm_rseq (writable: init sorts
 * it). The port's linker script keeps the section and gives its bounds to
 * mm_rseq_init, once, before the first interrupt that could land in a
 * sequence. x86-64 only (the sequences are assembly).
 */
#ifndef MM_RSEQ_H
#define MM_RSEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One sequence: [start, end); start is also where it restarts. */
struct mm_rseq_range {
	uintptr_t start, end;
};

/*
 * Sorts the table [begin, end) (the port's mm_rseq section) by address
 * and checks it: every range non-empty, none overlapping another. A bad
 * table mm_panics naming the ranges; bounds that cannot hold one (end
 * below begin, begin NULL, not a whole number of ranges apart) mm_panic
 * naming them, before the table is read. Thread context, before the first
 * interrupt that may land in a sequence; once.
 */
void mm_rseq_init(struct mm_rseq_range *begin, struct mm_rseq_range *end);

/*
 * For the port's interrupt entry, with the interrupted instruction
 * pointer: inside a sequence (start <= *ip < end), sets *ip to its start
 * and returns true; else false. O(log n) in the sequences, one compare
 * when *ip is outside all of them. Any context, interrupts off.
 */
bool mm_rseq_restart(uintptr_t *ip);

/* Restarts so far, all CPUs (for statistics and tests). */
uint64_t mm_rseq_restarts(void);

/* The sequences mm_rseq_init was given: 0 before it ran, or if the
 * port's linker script dropped the section (spanheap_init refuses that
 * with MM_PORT_RSEQ: no sequence could be restarted). */
size_t mm_rseq_count(void);

#ifdef MM_TEST_HOOKS
/* Set by a test: mm_rseq_count answers 0 while the table stays as it is
 * (so restarts go on), as if the port had dropped the section. */
extern _Atomic bool mm_rseq_test_hide_count;
#endif

/* The assembly that records the sequence from local label START to local
 * label END (strings, "1b" and "2b") in the table. */
#define MM_RSEQ_RECORD(start, end)         \
	".pushsection mm_rseq, \"aw\"\n\t" \
	".balign 8\n\t"                    \
	".quad " start ", " end "\n\t"     \
	".popsection\n\t"

/*
 * The assembly that records local label at (a string, "9b") in the
 * section mm_rseq_mags: the instruction of a magazine sequence that
 * reads through the pointer it has just loaded from struct spanheap's
 * mags[cpu]. A fault there below an address of MM_PAGE_SIZE is a heap
 * whose mags[] holds NULL (or a value no spanheap_init stores): a span
 * heap never set up, such as a zeroed one, whose slow paths say so but
 * whose fast path has no test to spare (docs/DESIGN.md). Data only: no
 * instruction more. A port's fault report may search the section to
 * name that case (the kernel's heap_fault_unset_mags); nothing in mm/
 * reads it, and a port that does not keep it loses only that line.
 */
#define MM_RSEQ_MAGS_RECORD(at)                 \
	".pushsection mm_rseq_mags, \"aw\"\n\t" \
	".balign 8\n\t"                         \
	".quad " at "\n\t"                      \
	".popsection\n\t"

#endif
