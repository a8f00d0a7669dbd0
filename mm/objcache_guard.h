/*
 * mm/objcache_guard.h: the guarded pool's samples of the caches with
 * slabs of their own (objcache_guard.c). For objcache_own.c, the stash's
 * slow free and mempool.c; not for callers.
 */
#ifndef MM_OBJCACHE_GUARD_H
#define MM_OBJCACHE_GUARD_H

#include <stdbool.h>

struct objcache;

/* An object of c (with slabs of its own) from the guarded pool if this
 * call is a sample, constructed and counted; NULL if not a sample, or
 * the pool has no slot or page for it (the slabs serve it then). Any
 * context an objcache allocation is. */
void *objcache_guard_alloc(struct objcache *c, unsigned flags);

/* If p is in the guarded pool: frees it to the pool as c's object and
 * returns true (misuse panics naming the caches: a double free, an
 * interior pointer, another cache's or kmalloc's object); else false,
 * nothing done. Uncounted (objcache_free counts). Any context a free
 * is. */
bool objcache_guard_free(struct objcache *c, void *p);

/* If p is in the guarded pool: true, p checked a live object of c (else
 * a panic naming the misuse and the caches); else false. Any context. */
bool objcache_guard_check(struct objcache *c, const void *p);

#endif
