/*
 * mm/spanheap_usercopy.c: the hardened copy check (spanheap_usercopy.h):
 * whether [p, p + n) stays inside one live object of the heap.
 *
 * Purpose: a copy to or from another address space whose length is wrong
 * reads out or writes over whatever follows its object; Linux's hardened
 * usercopy stops it at the copy, before a byte moves. This is its check
 * for the span heap, written once for every port's copy routines.
 *
 * Representation: none of its own; the answer of spanheap_where.
 *
 * Algorithm. spanheap_where(p) names what holds the first byte. Outside
 * the heap, the copy must not reach any of the heap's three reservations
 * (the object arena, the guarded pool, the metadata arena): a copy that
 * starts on a stack and runs into the heap is refused. A small object
 * allocated bounds the copy at its class size, or in poison mode (and in
 * the guarded pool) at the bytes asked, so a copy into the red zone is
 * refused where it would otherwise reach only the slack; a large object
 * at its pages. Everything else the heap holds (a free object, one never
 * handed out, a span's tail, free pages, freed large pages, a guard page,
 * metadata) is refused whatever n is. A page-heap run is not an object
 * (its extent is not kept): every page of the copy must be a run's, none
 * after the first the start of another allocation (mheap_run_holds), and
 * the rest is the caller's to judge. The end is compared as n against the
 * bytes left (no p + n that could wrap).
 *
 * Invariants: a verdict of INSIDE means that at the time of the lookup
 * [p, p + n) lay in one object that was allocated.
 *
 * Locking: none (spanheap_where's: fields fixed while a span lives or
 * read atomically, the marker read only from a live span).
 *
 * A large span that is a slab of a cache with slabs of its own is read
 * as its objects (objcache_track_object): one allocated bounds the copy
 * at the cache's size; the header, the tail and free objects refuse it.
 *
 * Limits: a merged cache's objects are bounded by their class's size, not
 * the cache's (the span does not know the cache) except in poison mode,
 * where the bytes asked are the cache's size; Linux's per-cache usercopy
 * windows (kmem_cache_create_usercopy) have no counterpart. Modelled on
 * Linux's mm/usercopy.c and SLUB's __check_heap_object.
 */
#include "objcache.h"
#include "objcache_track.h"
#include "spanheap_internal.h"
#include "spanheap_usercopy.h"

/* True if [a, a + n) meets [base, base + bytes). n > 0, no wrap. */
static bool meets(uintptr_t a, size_t n, uintptr_t base, size_t bytes)
{
	return bytes != 0 && a < base + bytes && base < a + n;
}

/* True if [a, a + n), outside the heap at a, reaches into any of it. */
static bool reaches_heap(const struct spanheap *sh, uintptr_t a, size_t n)
{
	return meets(a, n, sh->arena_base, sh->arena_bytes) ||
	       meets(a, n, sh->guard.base, sh->guard.bytes) ||
	       meets(a, n, sh->meta.arena_base,
	             (size_t)sh->meta.arena_pages * MM_PAGE_SIZE);
}

/* What holds the address, for the report. */
static const char *kind_name(const struct spanheap_where *w)
{
	switch (w->kind) {
	case SPANHEAP_WHERE_FREE_PAGES:
		return "free pages of the heap arena (a use after free?)";
	case SPANHEAP_WHERE_FREED_LARGE:
		return "the pages of a freed large object (a use after free?)";
	case SPANHEAP_WHERE_META:
		return "the heap's own metadata, never an object";
	case SPANHEAP_WHERE_GUARD:
		return w->on_guard ? "a guard page of the guarded pool"
		                   : "the guarded pool, outside its object";
	default:
		return "?";
	}
}

static const char *dir_name(enum spanheap_copy_dir dir)
{
	return dir == SPANHEAP_COPY_TO_USER ? "exposure (copy to user)"
	                                    : "overwrite (copy from user)";
}

/* Logs the refusal of a copy for a reason that needs no object's
 * details ("it " + why) and gives the verdict. */
static enum spanheap_copy_verdict refuse(enum spanheap_copy_dir dir,
                                         uintptr_t a, size_t n, const char *why)
{
	mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: it %s",
	       dir_name(dir), n, (unsigned long)a, why);
	return SPANHEAP_COPY_BAD;
}

/* The refusal of a copy at an object (small, large or guarded): what it
 * is, where the copy starts in it, and why (the overrun past limit, or
 * the object's state). */
static void log_object(enum spanheap_copy_dir dir, uintptr_t a, size_t n,
                       const struct spanheap_where *w, size_t limit)
{
	const char *what =
	        w->kind == SPANHEAP_WHERE_GUARD ? "guarded object" : "object";
	if (w->state != SPANHEAP_OBJ_ALLOCATED &&
	    w->kind != SPANHEAP_WHERE_LARGE) {
		mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: "
		       "%zu bytes into %s %u of span [%#lx, +%u pages), size "
		       "class %u (%zu-byte objects), which is %s",
		       dir_name(dir), n, (unsigned long)a, w->offset, what,
		       w->index, (unsigned long)w->span_base, w->span_pages,
		       w->sizeclass, w->elemsize,
		       spanheap_obj_state_name(w->state));
		return;
	}
	/* offset + n - limit, without a sum that could wrap. */
	size_t over = w->offset >= limit ? (w->offset - limit) + n
	                                 : n - (limit - w->offset);
	if (w->kind == SPANHEAP_WHERE_LARGE) {
		mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: "
		       "%zu bytes into a large object [%#lx, +%u pages), it "
		       "runs %zu bytes past the object's %zu bytes",
		       dir_name(dir), n, (unsigned long)a, w->offset,
		       (unsigned long)w->span_base, w->span_pages, over, limit);
		return;
	}
	mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: %zu "
	       "bytes into %s %u of span [%#lx, +%u pages), size class %u "
	       "(%zu-byte objects%s), it runs %zu bytes past the object's "
	       "%zu bytes",
	       dir_name(dir), n, (unsigned long)a, w->offset, what, w->index,
	       (unsigned long)w->span_base, w->span_pages, w->sizeclass,
	       w->elemsize, w->asked != UINT32_MAX ? ", the bytes asked" : "",
	       over, limit);
}

/* The verdict for a copy that starts in span or pool object w. */
static enum spanheap_copy_verdict object_verdict(enum spanheap_copy_dir dir,
                                                 uintptr_t a, size_t n,
                                                 const struct spanheap_where *w)
{
	size_t limit;
	if (w->kind == SPANHEAP_WHERE_LARGE)
		limit = (size_t)w->span_pages * MM_PAGE_SIZE;
	else if (w->state != SPANHEAP_OBJ_ALLOCATED ||
	         (w->kind == SPANHEAP_WHERE_GUARD &&
	          (w->before || w->on_guard)))
		limit = 0;
	else
		limit = w->asked != UINT32_MAX ? w->asked : w->elemsize;
	if (w->state == SPANHEAP_OBJ_TAIL) {
		mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: "
		       "%zu bytes past the last of the %u objects of span "
		       "[%#lx, +%u pages), size class %u, in its tail",
		       dir_name(dir), n, (unsigned long)a, w->offset, w->index,
		       (unsigned long)w->span_base, w->span_pages,
		       w->sizeclass);
		return SPANHEAP_COPY_BAD;
	}
	if (w->kind == SPANHEAP_WHERE_GUARD && limit == 0 &&
	    w->state == SPANHEAP_OBJ_ALLOCATED) {
		mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: "
		       "on %s, near guarded object %u [%#lx, +%zu bytes)",
		       dir_name(dir), n, (unsigned long)a, kind_name(w),
		       w->index, (unsigned long)w->start, w->elemsize);
		return SPANHEAP_COPY_BAD;
	}
	if (w->offset < limit && n <= limit - w->offset)
		return SPANHEAP_COPY_INSIDE;
	log_object(dir, a, n, w, limit);
	return SPANHEAP_COPY_BAD;
}

/* The verdict for a copy that starts in a slab of a cache with slabs of
 * its own (large span s): an allocated object bounds it at the cache's
 * size; the header, the records, a free object are refused. Until rv118
 * the slab passed as one large object, neighbours and header included. */
static enum spanheap_copy_verdict
own_verdict(struct spanheap *sh, enum spanheap_copy_dir dir, uintptr_t a,
            size_t n, const struct objcache_track_obj *o)
{
	if (o->changing)
		return refuse(
		        dir, a, n,
		        "starts in a slab of a cache with slabs of its own, "
		        "being made or freed");
	char name[OBJCACHE_NAME_MAX + 1];
	objcache_owner_name(sh, o->owner, name);
	if (!o->state) {
		mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: "
		       "it starts %s cache '%s''s slab [%#lx, +%u pages), no "
		       "object",
		       dir_name(dir), n, (unsigned long)a,
		       o->idx == UINT32_MAX ? "in the header of"
		                            : "past the objects of",
		       name, (unsigned long)o->slab, o->pages);
		return SPANHEAP_COPY_BAD;
	}
	size_t off = a - o->start;
	if (o->live && off < o->size && n <= o->size - off)
		return SPANHEAP_COPY_INSIDE;
	if (!o->live) {
		mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: "
		       "%zu bytes into object %u of cache '%s''s slab [%#lx, "
		       "+%u pages) (%u-byte objects), which is %s",
		       dir_name(dir), n, (unsigned long)a, off, o->idx, name,
		       (unsigned long)o->slab, o->pages, o->objsize, o->state);
		return SPANHEAP_COPY_BAD;
	}
	/* The overrun, off + n - size, with no sum that could wrap. */
	size_t over =
	        off >= o->size ? (off - o->size) + n : n - (o->size - off);
	mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: %zu "
	       "bytes into object %u of cache '%s''s slab [%#lx, +%u pages) "
	       "(%u-byte objects), it runs %zu bytes past the object's %u "
	       "bytes (the cache's size)",
	       dir_name(dir), n, (unsigned long)a, off, o->idx, name,
	       (unsigned long)o->slab, o->pages, o->objsize, over, o->size);
	return SPANHEAP_COPY_BAD;
}

/* object_verdict for a guarded object, whose refusal names its cache. */
static enum spanheap_copy_verdict guard_verdict(struct spanheap *sh,
                                                enum spanheap_copy_dir dir,
                                                uintptr_t a, size_t n,
                                                const struct spanheap_where *w)
{
	enum spanheap_copy_verdict v = object_verdict(dir, a, n, w);
	char part[OBJCACHE_NAME_MAX + 16];
	if (v == SPANHEAP_COPY_BAD && w->owner != UINT32_MAX) {
		spanheap_guard_cache_part(sh, w->owner, part, sizeof(part));
		if (part[0])
			mm_log("spanheap: usercopy: refused at guarded "
			       "object %#lx%s",
			       (unsigned long)w->start, part);
	}
	return v;
}

enum spanheap_copy_verdict spanheap_check_copy(struct spanheap *sh,
                                               const void *p, size_t n,
                                               enum spanheap_copy_dir dir)
{
	uintptr_t a = (uintptr_t)p;
	if (n == 0)
		return SPANHEAP_COPY_NOT_OURS;
	if (n - 1 > UINTPTR_MAX - a) {
		return refuse(dir, a, n,
		              "wraps past the end of the address space");
	}
	struct spanheap_where w;
	spanheap_where(sh, p, &w);
	switch (w.kind) {
	case SPANHEAP_WHERE_OUTSIDE:
		if (!reaches_heap(sh, a, n))
			return SPANHEAP_COPY_NOT_OURS;
		return refuse(dir, a, n,
		              "starts outside the heap and runs into it");
	case SPANHEAP_WHERE_PAGES:
		if (mheap_run_holds(sh->heap, p, n))
			return SPANHEAP_COPY_NOT_OURS;
		return refuse(dir, a, n,
		              "starts on a page-heap run and runs off it (into "
		              "a span, free pages or another run)");
	case SPANHEAP_WHERE_LARGE: {
		struct mspan *s = mheap_span_lookup(sh->heap, a);
		struct objcache_track_obj o;
		if (mheap_span_is_span(s) &&
		    objcache_track_object(sh, s, a, &o))
			return own_verdict(sh, dir, a, n, &o);
		return object_verdict(dir, a, n, &w);
	}
	case SPANHEAP_WHERE_SMALL:
		return object_verdict(dir, a, n, &w);
	case SPANHEAP_WHERE_GUARD:
		if (w.state == SPANHEAP_OBJ_ALLOCATED ||
		    w.state == SPANHEAP_OBJ_FREE)
			return guard_verdict(sh, dir, a, n, &w);
		break;
	default:
		break;
	}
	mm_log("spanheap: usercopy: %s of %zu bytes at %#lx refused: it starts "
	       "on %s",
	       dir_name(dir), n, (unsigned long)a, kind_name(&w));
	return SPANHEAP_COPY_BAD;
}
