/*
 * malloc/mm_malloc.h: what libmm_malloc.so exports beyond the C and POSIX
 * malloc API (which <stdlib.h> and <malloc.h> declare). For tests and
 * tools; a program that only allocates needs nothing from here.
 */
#ifndef MM_MALLOC_H
#define MM_MALLOC_H

/* Threads that own a slot (a per-CPU cache of the span heap) right now:
 * the live threads that have allocated, at most 64 apart from sharing.
 * A thread's slot is given back when it exits. */
unsigned mm_malloc_threads(void);

/* How a thread that owns its slot alone holds it for a call:
 * "membarrier" (a plain store; fork and sharing threads call
 * membarrier(2) to wait it out) or "exchange" (an atomic
 * compare-and-swap, as every other holder: membarrier(2) is unavailable, or the
 * environment said MM_MALLOC_MEMBARRIER=0). Decided once per process, at the
 * first allocation (again in a fork child). */
const char *mm_malloc_slot_mode(void);

/* Writes to stderr what p is to the heap (ASan's __asan_describe_address):
 * the object it points into, how far in, its span and size class, and
 * whether it is allocated, free or never handed out; a large object; a
 * freed large object's pages; a free page of the heap; or no address of
 * the heap ("outside the heap arena"). With MM_MALLOC_POISON=1 also the
 * bytes asked, and whether p is in the red zone past them. For a debugger
 * ("call mm_malloc_describe(p)" in gdb) or a test; reads the heap without
 * locks, so any thread may call it at any time, another thread's objects
 * showing as they were an instant before. */
void mm_malloc_describe(const void *p);

#endif
