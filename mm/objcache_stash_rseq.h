/*
 * mm/objcache_stash_rseq.h: a stash's pop and push (objcache_stash.c) as
 * restartable sequences (mm/rseq.h), for a port with MM_PORT_RSEQ: the
 * fast ways of the caches with slabs of their own then pin nothing, as
 * kmalloc's magazines do not (spanheap_fast.h, spanheap_free.c).
 *
 * Each reads the CPU's index, finds that CPU's stash (128 bytes, so a
 * shift), reads its count and ends with one store, the lowered or raised
 * count: the commit. An interrupt before it restarts the sequence, on
 * whatever CPU the thread then runs, from the count the handler left.
 * The push's only other store is the entry above the count, which no
 * one reads (a drain reads [0, n), a pop reads below n) and a restart
 * writes again. The stashed byte is not theirs: the free exchanges it
 * before the push (outside the sequence, so a restart does not repeat
 * it), and the allocation clears it after the pop's commit (inside, a
 * restart that popped another entry would leave the first one's byte
 * clear while it sits in the stash). Between the pop's commit and that
 * clear the object is in no stash and still marked, as one a free has
 * marked and not yet pushed is (objcache_stash.c's "Order" holds: the
 * bytes and bits are set and read as before).
 *
 * The stash array and the limit are "rm" operands: gcc adds them from
 * the cache's struct (one instruction fewer each way than a load first);
 * clang takes "rm" as memory always, a stack slot, two more.
 *
 * Only for this file's includer, objcache_stash.c. x86-64.
 */
#ifndef MM_OBJCACHE_STASH_RSEQ_H
#define MM_OBJCACHE_STASH_RSEQ_H

#ifdef MM_PORT_RSEQ
#include "objcache_internal.h"
#include "rseq.h"

_Static_assert(sizeof(struct objstash) == 1u << 7,
               "the sequences find a CPU's stash with a shift by 7");

/*
 * Takes the top entry of this CPU's stash of the array stash: the CPU's
 * index, its stash, the count n, the entry n - 1; the commit is the store
 * of n - 1. Returns the entry (its stashed byte still set), or sets *empty
 * (n was 0; nothing stored). Any context but NMI, nothing pinned.
 */
static inline __attribute__((always_inline)) uintptr_t
objstash_rseq_pop(struct objstash *stash, bool *empty)
{
	uintptr_t e;
	unsigned long st, n;
	/* CF: the sub's borrow, n was 0; the moves after it keep it. */
	__asm__ volatile(
	        "1:\n\t" MM_PORT_RSEQ_CPU "\n\t"
	        "shlq $7, %[cpu]\n\t"
	        "addq %[stash], %[cpu]\n\t"
	        "movl (%[cpu]), %k[n]\n\t"
	        "subl $1, %k[n]\n\t"
	        "jc 2f\n\t"
	        "movq %c[ent](%[cpu], %[n], 8), %[e]\n\t"
	        "movl %k[n], (%[cpu])\n" /* the commit */
	        "2:\n\t" MM_RSEQ_RECORD("1b", "2b")
	        : "=@ccc"(*empty), [e] "=&r"(e), [cpu] "=&r"(st), [n] "=&r"(n)
	        :
	        [stash] "rm"(stash), [ent] "i"(offsetof(struct objstash, ent)),
	        MM_PORT_RSEQ_CPU_ARGS
	        : "memory");
	return e;
}

/*
 * Pushes entry e (its object marked stashed) on this CPU's stash of the
 * array stash, which holds at most max: the CPU's index, its stash, the
 * count n, the entry's store into slot n; the commit is the store of
 * n + 1. False, having stored nothing, if the stash is full. Any context
 * but NMI, nothing pinned.
 */
static inline __attribute__((always_inline)) bool
objstash_rseq_push(struct objstash *stash, uint32_t max, uintptr_t e)
{
	unsigned long st, n;
	bool full;
	/* CF clear after the compare: n >= max, full; the lea keeps it. */
	__asm__ volatile("1:\n\t" MM_PORT_RSEQ_CPU "\n\t"
	                 "shlq $7, %[cpu]\n\t"
	                 "addq %[stash], %[cpu]\n\t"
	                 "movl (%[cpu]), %k[n]\n\t"
	                 "cmpl %[max], %k[n]\n\t"
	                 "jae 2f\n\t"
	                 "movq %[e], %c[ent](%[cpu], %[n], 8)\n\t"
	                 "leal 1(%[n]), %k[n]\n\t"
	                 "movl %k[n], (%[cpu])\n" /* the commit */
	                 "2:\n\t" MM_RSEQ_RECORD("1b", "2b")
	                 : "=@ccae"(full), [cpu] "=&r"(st), [n] "=&r"(n)
	                 : [stash] "rm"(stash), [max] "rm"(max), [e] "r"(e),
	                   [ent] "i"(offsetof(struct objstash, ent)),
	                   MM_PORT_RSEQ_CPU_ARGS
	                 : "memory");
	return !full;
}
#endif

#endif
