/*
 * mm/spanheap_fast.h: the span heap's fast paths given inline: a
 * magazine's pop, pinned or as a restartable sequence (rseq.h), and
 * spanheap_alloc_class for a caller that knows the class at compile
 * time. Included by spanheap.h; the functions here are the API's inner
 * steps, and their contexts are those of spanheap_alloc.
 */
#ifndef MM_SPANHEAP_FAST_H
#define MM_SPANHEAP_FAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "port.h"
#include "rseq.h"
#include "spanheap_types.h"

/*
 * How spanheap_alloc and spanheap_free are defined: a port's build may set
 * it to `__attribute__((always_inline)) inline` so that link-time
 * optimisation puts their fast paths into its own wrappers (malloc/malloc.mk
 * does: the hosted malloc's mixed sizes 24 -> 22 ns, random-order frees
 * 85 -> 72). Empty by default.
 */
#ifndef SPANHEAP_FAST
#define SPANHEAP_FAST
#endif

/*
 * Takes magazine m's newest object, or 0 if it is empty (the slot below
 * the first holds 0), and clears its free marker (word 1). Reads nothing
 * of the object. Pinned: spanheap_alloc's and spanheap_alloc_class's pop
 * (with MM_PORT_RSEQ, spanheap_rseq_pop is theirs, and this the slow
 * paths').
 */
static inline __attribute__((always_inline)) uintptr_t
spanheap_mag_pop(struct mmag *m)
{
	uintptr_t *t = __atomic_load_n(&m->top, __ATOMIC_RELAXED);
	uintptr_t a = t[-1];
	if (__builtin_expect(a == 0, 0))
		return 0;
	__atomic_store_n(&m->top, t - 1, __ATOMIC_RELAXED);
	((uintptr_t *)a)[1] = 0;
	return a;
}

/* spanheap_alloc_mag's way on an empty magazine (pin from
 * mm_port_pin_fast: the span's next object or a refill; or, if it pinned
 * nothing, a pin and the magazine again); unpins. With MM_PORT_RSEQ,
 * spanheap_alloc_refill_pin's (pin from mm_port_pin). Not to be called
 * otherwise. */
void *spanheap_alloc_refill(struct spanheap *sh, size_t size, unsigned flags,
                            struct mm_pin pin);

#ifdef MM_PORT_RSEQ
/* spanheap_alloc_refill for the restartable sequence's empty magazine
 * (nothing pinned): pins, then as spanheap_alloc_refill. */
void *spanheap_alloc_refill_pin(struct spanheap *sh, size_t size,
                                unsigned flags);

/*
 * spanheap_mag_pop as a restartable sequence (mm/rseq.h) on this CPU's
 * magazine mag_off bytes into its array: the CPU's index, the magazine,
 * its top, the newest object; the commit is the store of the lowered top.
 * Returns the object (its marker still to be cleared), or sets *empty if
 * the magazine is empty. Any context but NMI, nothing pinned.
 */
static inline __attribute__((always_inline)) uintptr_t
spanheap_rseq_pop(struct spanheap *sh, size_t mag_off, bool *empty)
{
	uintptr_t a, *t;
	struct mmag *m;
	unsigned long cpu;
	/* ZF: set by the test on the empty way, cleared by the sub (a top
	 * is never 8) on the other, so the caller tests no register. */
	__asm__ volatile("1:\n\t" MM_PORT_RSEQ_CPU "\n\t"
	                 "movq %c[mags](%[sh], %[cpu], 8), %[m]\n\t"
	                 "9:\n\t"
	                 "movq (%[m], %[off]), %[t]\n\t"
	                 "movq -8(%[t]), %[a]\n\t"
	                 "testq %[a], %[a]\n\t"
	                 "jz 2f\n\t"
	                 "subq $8, %[t]\n\t"
	                 "movq %[t], (%[m], %[off])\n" /* the commit */
	                 "2:\n\t" MM_RSEQ_RECORD("1b", "2b")
	                         MM_RSEQ_MAGS_RECORD("9b")
	                 : "=@ccz"(*empty), [a] "=&r"(a), [t] "=&r"(t),
	                   [m] "=&r"(m), [cpu] "=&r"(cpu)
	                 : [sh] "r"(sh), [off] "r"(mag_off),
	                   [mags] "i"(offsetof(struct spanheap, mags)),
	                   MM_PORT_RSEQ_CPU_ARGS
	                 : "memory");
	return a;
}
#endif

/*
 * The magazine path of an allocation of size bytes whose class's magazine
 * is mag_off bytes into every CPU's (the class times sizeof(struct mmag)):
 * the fast pin, the pop, the unpin (or, with MM_PORT_RSEQ, the pop as a
 * restartable sequence); on an empty magazine (or a pin that named no
 * CPU) spanheap_alloc_refill (with MM_PORT_RSEQ,
 * spanheap_alloc_refill_pin). Shared by spanheap_alloc and
 * spanheap_alloc_class; contexts as theirs.
 */
static inline __attribute__((always_inline)) void *
spanheap_alloc_mag(struct spanheap *sh, size_t mag_off, size_t size,
                   unsigned flags)
{
#ifdef MM_PORT_RSEQ
	bool empty;
	uintptr_t r = spanheap_rseq_pop(sh, mag_off, &empty);
	if (__builtin_expect(!empty, 1)) {
		((uintptr_t *)r)[1] = 0; /* its free marker */
		return (void *)r;
	}
	return spanheap_alloc_refill_pin(sh, size, flags);
#else
	struct mm_pin pin = mm_port_pin_fast();
	uintptr_t a = spanheap_mag_pop(
	        (struct mmag *)((char *)sh->mags[pin.cpu] + mag_off));
	if (__builtin_expect(a != 0, 1)) {
		mm_port_unpin_fast(pin);
		return (void *)a;
	}
	return spanheap_alloc_refill(sh, size, flags, pin);
#endif
}

/*
 * spanheap_alloc's fast path inline, for a caller that knows the class
 * where it calls (a port's wrapper for a size fixed at compile time, such
 * as the kernel's kmalloc(sizeof(struct ...))): the pin, the class's
 * magazine, the unpin (with MM_PORT_RSEQ, the magazine's restartable
 * sequence alone); the class lookup, the size and flag tests and the
 * call are left out. cls must be sizeclass_of(size) and flags may hold
 * only MM_ATOMIC and MM_NO_GROW: nothing here refuses an unknown bit (the
 * caller sends those, and MM_ZERO, to spanheap_alloc). Contexts as
 * spanheap_alloc's with those flags.
 */
static inline __attribute__((always_inline)) void *
spanheap_alloc_class(struct spanheap *sh, unsigned cls, size_t size,
                     unsigned flags)
{
	return spanheap_alloc_mag(sh, cls * sizeof(struct mmag), size, flags);
}

/*
 * spanheap_alloc for a caller whose flags are known where it calls and
 * hold only MM_ATOMIC and MM_NO_GROW (the kernel's kmalloc with a
 * constant flags word and a size known at run time): the size's test,
 * its class's magazine, the pop, with no test of the flags; nothing here
 * refuses an unknown bit, as in spanheap_alloc_class (the caller sends
 * those, and MM_ZERO, to spanheap_alloc). Out of line, as spanheap_alloc.
 * Contexts as spanheap_alloc's with those flags.
 */
void *spanheap_alloc_sized(struct spanheap *sh, size_t size, unsigned flags);

/*
 * The fast paths alone, for a port whose entry point already holds CPU
 * cpu (pinned with mm_port_pin, or the hosted malloc's slot for the
 * call) and keeps its slow work out of line, so that its fast path makes
 * no call and saves no register: spanheap_alloc_held
 * gives size's object from cpu's magazine, or NULL, having changed
 * nothing, if size is over SC_MAX_SIZE or the magazine is empty;
 * spanheap_free_held puts p, a small object handed out, into cpu's
 * magazine and returns true, or returns false, having changed nothing,
 * for anything else (NULL, a large object, a foreign or interior pointer,
 * a full magazine). On NULL or false the caller, holding nothing, calls
 * spanheap_alloc or spanheap_free, which do the rest and tell misuse
 * apart. A double free panics in either. Contexts: spanheap_alloc's
 * without MM_ZERO, and spanheap_free's, with cpu held throughout.
 */
bool spanheap_free_held(struct spanheap *sh, void *p, unsigned cpu);

static inline __attribute__((always_inline)) void *
spanheap_alloc_held(struct spanheap *sh, size_t size, unsigned cpu)
{
	if (__builtin_expect(size > SC_MAX_SIZE, 0))
		return NULL;
	return (void *)spanheap_mag_pop(
	        (struct mmag *)((char *)sh->mags[cpu] +
	                        sh->mag_by16[(size + 15) / 16]));
}

/* The class of size when the compiler knows size, up to SC_LINEAR_MAX
 * (sizeclasses.h: class k holds 16 * k bytes there), as sizeclass_of
 * would give it; for other sizes, sizeclass_of. */
static inline __attribute__((always_inline)) unsigned
spanheap_class_linear(size_t size)
{
	return size ? (unsigned)((size + 15) / 16) : 1;
}

#endif
