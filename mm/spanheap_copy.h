/*
 * mm/spanheap_copy.h: the calls a kernel expects beside allocation and
 * free (Linux's kmalloc_array, krealloc_array, kmemdup, kstrdup,
 * kstrndup, kfree_sensitive and kmalloc_size_roundup), built on
 * spanheap_alloc, spanheap_realloc and spanheap_free (spanheap.h):
 * arrays whose size is checked, copies of memory and strings, the size a
 * request really gets, and a free that wipes. Written by
 * spanheap_copy.c. Included by mm.h.
 *
 * Flags, contexts and failures are those of the call each builds on:
 * flags of enum mm_alloc_flags; thread context, or any but NMI with
 * MM_ATOMIC (the copies read their source in the caller's context, so a
 * source must be readable there); NULL when memory ran out. A size that
 * overflows (n * size, a string's length and its NUL) is refused before
 * anything is allocated or freed: NULL and a line naming the call and the
 * sizes.
 */
#ifndef MM_SPANHEAP_COPY_H
#define MM_SPANHEAP_COPY_H

#include <stddef.h>

#include "spanheap.h"

/* n * size bytes, not zeroed (MM_ZERO zeroes them); NULL if the product
 * overflows. n or size 0: a unique object, as spanheap_alloc(0). */
void *spanheap_alloc_array(struct spanheap *sh, size_t n, size_t size,
                           unsigned flags);

/* spanheap_realloc(p, n * size); if the product overflows, NULL with p
 * untouched (still allocated, its contents kept). n or size 0 frees p
 * and returns NULL, as spanheap_realloc(p, 0) does. */
void *spanheap_realloc_array(struct spanheap *sh, void *p, size_t n,
                             size_t size, unsigned flags);

/* A new object of len bytes holding a copy of [src, src + len). src
 * NULL: NULL (with a line if len is not 0). len 0: a unique object, src
 * not read. */
void *spanheap_memdup(struct spanheap *sh, const void *src, size_t len,
                      unsigned flags);

/* A copy of the string s, NUL-terminated: its bytes up to its NUL or to
 * n, whichever comes first (s need not hold a NUL within n bytes, and no
 * byte past either is read). s NULL: NULL, silently (as Linux's). */
char *spanheap_strndup(struct spanheap *sh, const char *s, size_t n,
                       unsigned flags);

/* spanheap_strndup(s, SIZE_MAX): the whole string. */
char *spanheap_strdup(struct spanheap *sh, const char *s, unsigned flags);

/* The usable size an allocation of size bytes gets (spanheap_usable_size
 * of it): its size class's size, or whole pages for a large one; 16
 * bytes or so for 0, the smallest class. 0 if no allocation of that size
 * can be had at all (over SPANHEAP_LARGE_MAX_PAGES pages). A small
 * object's usable size in poison mode, and a guarded object's, is the
 * size asked, so a caller that wants to use the rounded size asks for it.
 * Any context. */
size_t spanheap_roundup_size(const struct spanheap *sh, size_t size);

/* Frees p as spanheap_free does, having first zeroed its whole usable
 * size (spanheap_usable_size) with a store the compiler may not drop, so
 * no key or password outlives the object. NULL: nothing. Contexts and
 * misuse as spanheap_free (a bad pointer panics, naming free_sensitive,
 * before any byte is written); the zeroing costs the object's size, in
 * the caller's context. */
void spanheap_free_sensitive(struct spanheap *sh, void *p);

/* spanheap_usable_size, whose misuse panics name the call op as its
 * caller made it ("usable size", "free_sensitive", and "kfree_rcu",
 * which checks at its call an object the rcu thread frees later, while
 * the caller's stack still says who passed it). Any context but NMI. */
size_t spanheap_usable_size_as(struct spanheap *sh, const void *p,
                               const char *op);

/* Panics, naming op, for what spanheap_free(sh, p) would refuse: the
 * checks of spanheap_usable_size_as, and in poison mode a named cache's
 * object (objcache.h). For a free done later elsewhere (kfree_rcu's, in
 * the rcu thread): checked while the caller's stack names it. NULL:
 * nothing. Any context but NMI; writes nothing. */
void spanheap_check_free_as(struct spanheap *sh, const void *p, const char *op);

#endif
