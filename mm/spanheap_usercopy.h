/*
 * mm/spanheap_usercopy.h: the check a copy between the heap and another
 * address space makes before it moves a byte (Linux's
 * CONFIG_HARDENED_USERCOPY, check_object_size and __check_heap_object):
 * does [p, p + n) lie inside one live object of the heap? Written by
 * spanheap_usercopy.c over spanheap_where (spanheap_where.h). Included by
 * mm.h.
 *
 * A copy_to_user whose length came from its caller's arithmetic, or a
 * copy_from_user whose length came from the user, is the overflow an
 * attacker steers: it reads the next object's bytes out, or writes the
 * user's bytes over it. The heap knows every object's bounds without a
 * lock (the span table, the span's class, poison mode's bytes asked), so
 * a port's copy routines ask it first and refuse what crosses them.
 */
#ifndef MM_SPANHEAP_USERCOPY_H
#define MM_SPANHEAP_USERCOPY_H

#include <stddef.h>

struct spanheap;

/* Which way the copy goes: out of the heap's memory (an exposure if it
 * overruns) or into it (an overwrite). Only the report's words differ. */
enum spanheap_copy_dir {
	SPANHEAP_COPY_TO_USER,   /* reads [p, p + n) */
	SPANHEAP_COPY_FROM_USER, /* writes [p, p + n) */
};

/* What the heap makes of [p, p + n). */
enum spanheap_copy_verdict {
	/* None of it is the heap's (a stack, static data, another
	 * allocator's), or all of it lies in one page-heap run of
	 * mheap_alloc_pages: the caller's other checks judge it. n 0 is
	 * always this. */
	SPANHEAP_COPY_NOT_OURS,
	/* Wholly inside one allocated object: a small object's class size
	 * (poison mode and the guarded pool: the bytes asked), or a large
	 * object's pages. */
	SPANHEAP_COPY_INSIDE,
	/* Anything else the heap holds: it runs past its object's end (or
	 * into the heap from outside it), the object is free or was never
	 * handed out, or it is on free pages, a span's tail, a guard page
	 * or the heap's own metadata; or it wraps the address space. A
	 * line names the copy, the object, its span and class, and what
	 * was wrong (the overrun's bytes). */
	SPANHEAP_COPY_BAD,
};

/*
 * The verdict on a copy of n bytes at p, dir's way. Lock-free, reads no
 * memory a live span does not map (as spanheap_where): any context, an
 * interrupt handler's included, on any CPU. Costs a span-table lookup and
 * one word of the object (its free marker); not on the allocator's paths.
 * A snapshot: an object freed by another CPU while the copy runs is the
 * caller's race, as it is Linux's.
 */
enum spanheap_copy_verdict spanheap_check_copy(struct spanheap *sh,
                                               const void *p, size_t n,
                                               enum spanheap_copy_dir dir);

#endif
