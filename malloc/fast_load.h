/*
 * malloc/fast_load.h: the fast entry's test of its slot's state
 * (enter.h), one instruction on x86-64. Included by enter.h.
 *
 * Contexts: any; it reads one word.
 */
#ifndef MALLOC_FAST_LOAD_H
#define MALLOC_FAST_LOAD_H

#include <stdatomic.h>
#include <stdbool.h>

/* True if *w is v, read with acquire order: on x86-64 one compare with
 * the word in memory (GCC loads an atomic into a register first and
 * compares that, one instruction more a call; the 16-byte malloc+free
 * pair 80 -> 78 callgrind instructions with this), an asm with a memory
 * clobber so that nothing moves across it, as nothing moves across the
 * acquire load. ThreadSanitizer must see the load: the C atomic there. */
static inline __attribute__((always_inline)) bool
mm_malloc_load_is(const atomic_uint *w, unsigned v)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	bool is;
	__asm__ volatile("cmpl %[v], %[w]"
	                 : "=@ccz"(is)
	                 : [w] "m"(*(const unsigned *)w), [v] "ir"(v)
	                 : "memory");
	return is;
#else
	return atomic_load_explicit(w, memory_order_acquire) == v;
#endif
}

#endif
