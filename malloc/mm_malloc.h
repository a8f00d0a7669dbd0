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

#endif
