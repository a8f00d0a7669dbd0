/*
 * mm/objcache_track.h: poison mode's records of who allocated and who
 * freed each object of a cache with slabs of its own (objcache_own.h),
 * and the reports and views that read them: the misuse reports, the
 * heap's description of an address (spanheap_where_log), its records of
 * an object (spanheap_object_tracks) and its grouping of live objects by
 * stack (spanheap_alloc_traces). The span heap's own records are
 * spanheap_track.h's; these have their shape. Not for the heap's users.
 *
 * Contexts, unless said: any but NMI; no lock taken, no memory allocated
 * but the stack depot's chunks (spanheap_depot.c) by the two records.
 */
#ifndef MM_OBJCACHE_TRACK_H
#define MM_OBJCACHE_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap_track.h"

struct mspan;
struct objcache;
struct objslab;
struct spanheap;
struct spanheap_trace_table;

/* The bytes a slab keeps an object for its records (when its heap keeps
 * them, sh->track): two struct spanheap_rec, the last allocation's and
 * the last free's, for the slabs' geometry (objcache_own.c). */
size_t objcache_track_rec_bytes(void);

/* Records the allocation of object p of c (whose slabs keep records),
 * from objcache_own_alloc_slow once p is taken: the stack from the
 * return into its caller on. flags: the allocation's (MM_NO_GROW). */
void objcache_track_alloc(struct objcache *c, const void *p, unsigned flags);

/* Records the free of object idx of slab sl of c (whose slabs keep
 * records), after the free's double-free check passed and before the
 * object can be handed out again: the stack from the return into the
 * caller of this call's caller on. */
void objcache_track_free(struct objcache *c, struct objslab *sl, uint32_t idx);

/* Object idx of slab sl's two records, expanded (ns 0: never since the
 * slab was made; SPANHEAP_TRACK_CHANGING: written while read). False
 * (nothing written) if its cache keeps none. */
bool objcache_track_read(struct spanheap *sh, const struct objslab *sl,
                         uint32_t idx, struct spanheap_track *alloc,
                         struct spanheap_track *freed);

/* mm_logs object idx of slab sl's records, as the span heap's reports
 * do (spanheap_track_log); nothing if its cache keeps none. */
void objcache_track_report(struct spanheap *sh, const struct objslab *sl,
                           uint32_t idx);

/* For large span s of sh carrying a cache's owner number (mspan.objslab;
 * read without a lock, the span maybe freed meanwhile): the records of
 * the object holding address a (spanheap_object_tracks: false if a is
 * in no object or its cache keeps none); the report's records of that
 * object (nothing if none); and spanheap_where_log's lines for a: the
 * cache, the object, its state, its records. */
bool objcache_track_tracks(struct spanheap *sh, const struct mspan *s,
                           uintptr_t a, struct spanheap_track *alloc,
                           struct spanheap_track *freed);
void objcache_track_report_at(struct spanheap *sh, const struct mspan *s,
                              uintptr_t a);
void objcache_track_where_log(struct spanheap *sh, const struct mspan *s,
                              uintptr_t a);

/* For the hardened copy check (spanheap_usercopy.c): what of a slab
 * address a falls in, as objcache_track_where_log reads it. */
struct objcache_track_obj {
	uintptr_t slab, start; /* the slab's header; the object's first byte */
	uint32_t idx; /* the object; UINT32_MAX: the header; nobjs: past */
	uint32_t nobjs, objsize, size, owner;
	unsigned pages;
	const char *state; /* "allocated", "free", ...; NULL: no object */
	bool live;         /* state is "allocated" */
	bool changing;     /* the slab was being made or freed: no answer */
};

/* The object of large span s holding a into *out; false if s carries no
 * owner number (a large object's span). Contexts as the readers above. */
bool objcache_track_object(struct spanheap *sh, const struct mspan *s,
                           uintptr_t a, struct objcache_track_obj *out);

/* Counts the live objects of large span s (spanheap_alloc_traces' walk)
 * into tt by their allocations' stacks, if s is a slab of a cache whose
 * slabs keep records and whose owner number tt asks for. Thread context,
 * the span read without a lock (spanheap_alloc_traces' terms). */
void objcache_track_traces(struct spanheap *sh, struct spanheap_trace_table *tt,
                           const struct mspan *s);

/* The free's misuse reports (objcache_own.c, objcache_stash.c): each
 * mm_logs the records of the object concerned, if it has any (poison
 * mode), then panics naming the caches. A double free of object idx of
 * slab sl of c (p), how: what its state said; p given to c but in no
 * slab (a small span's object: spanheap_span_of panics for the rest);
 * p in slab s of another cache (owner); p an interior pointer of c's
 * slab s. */
__attribute__((noreturn, cold)) void
objcache_own_double_free(struct objcache *c, const void *p,
                         const struct objslab *sl, uint32_t idx,
                         const char *how);
__attribute__((noreturn, cold)) void objcache_own_not_a_slab(struct objcache *c,
                                                             const void *p);
__attribute__((noreturn, cold)) void
objcache_own_other_cache(struct objcache *c, const void *p,
                         const struct mspan *s, uint8_t owner);
__attribute__((noreturn, cold)) void
objcache_own_interior(struct objcache *c, const void *p, const struct mspan *s);

#endif
