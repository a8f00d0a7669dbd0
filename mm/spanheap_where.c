/*
 * mm/spanheap_where.c: what an address is to the span heap
 * (spanheap_where.h), and the report line that says it.
 *
 * Purpose: a fault on an address of the heap, a pointer in a register, a
 * word in a dump: the developer asks whose memory it is. The heap knows
 * without a lock: the span table names what holds each page, the span
 * where its objects lie, the object's free marker whether it is free. A
 * page fault report in the kernel prints this for its CR2 (a use after
 * free of a large object under mm.debug_pagealloc names that object's
 * pages); the shell's addrinfo prints it for any address.
 *
 * Representation: none of its own; reads spanheap.c's.
 *
 * Algorithm: the span table's entry for p's page (mheap_spanmap.h): a
 * mark (no span: a free page, a small span's once; a page-heap run; a
 * freed large span), or a span struct. A struct that is dead or does not
 * cover p is a span being freed (its entries are cleared after its
 * state), or one that was freed and made anew elsewhere while this ran:
 * free pages too. A large span holds
 * one object. A small span's object index comes from the offset
 * (obj_index); an index at or past marked was never handed out; below
 * it, the free marker (cookie ^ address, in the object's second word)
 * tells a free object from an allocated one, and in poison mode the side
 * table gives the bytes asked.
 *
 * Locking: none. Every field read is fixed while the span lives or read
 * atomically; a span freed and made anew while this runs may show its
 * old or its new self. The marker is read only from a span in use, whose
 * pages are mapped.
 *
 * Limits: a freed large object's pages carry a mark, not the object: the
 * heap remembers its last 32 large frees (spanheap_freed.c), and of an
 * older one nothing more is known; a page-heap run's
 * entries stay after its free, so "a run" may be one freed since; a free
 * page may be in a CPU's page cache. Modelled on Linux's kmem_dump_obj
 * (mm/slab_common.c) and KASAN's description of a bad access's object.
 */
#include "objcache.h"
#include "objcache_track.h"
#include "spanheap_internal.h"

const char *spanheap_obj_state_name(enum spanheap_obj_state s)
{
	static const char *const names[] = {
	        [SPANHEAP_OBJ_NONE] = "no object",
	        [SPANHEAP_OBJ_ALLOCATED] = "allocated",
	        [SPANHEAP_OBJ_FREE] = "free",
	        [SPANHEAP_OBJ_UNUSED] = "never handed out",
	        [SPANHEAP_OBJ_TAIL] = "past the span's last object",
	};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* The entry's kind when it is a mark, not a span. */
static enum spanheap_where_kind mark_kind(const void *e)
{
	if (e == MHEAP_SPAN_PAGES)
		return SPANHEAP_WHERE_PAGES;
	if (e == MHEAP_SPAN_FREED_LARGE)
		return SPANHEAP_WHERE_FREED_LARGE;
	return SPANHEAP_WHERE_FREE_PAGES; /* NULL or MHEAP_SPAN_NONE */
}

/* Object idx of small span s (below its object count): its state, and in
 * poison mode the bytes asked for it. */
static void small_state(const struct spanheap *sh, struct mspan *s,
                        uint32_t idx, struct spanheap_where *w)
{
	uint32_t marked =
	        atomic_load_explicit(&s->marked, memory_order_acquire);
	if (idx >= marked) {
		w->state = SPANHEAP_OBJ_UNUSED;
		return;
	}
	uintptr_t marker =
	        __atomic_load_n(&obj_words(w->start)[1], __ATOMIC_RELAXED);
	if (marker == (sh->mag_cookie ^ w->start)) {
		w->state = SPANHEAP_OBJ_FREE;
		return;
	}
	w->state = SPANHEAP_OBJ_ALLOCATED;
	const struct spanheap_redzone *rz =
	        __atomic_load_n(&s->redzone, __ATOMIC_RELAXED);
	if ((__atomic_load_n(&s->poison, __ATOMIC_RELAXED) & 1) && rz) {
		uint32_t asked =
		        __atomic_load_n(&rz[idx].asked, __ATOMIC_RELAXED);
		/* Free by its entry, its marker written after the free: as
		 * the free tells it (spanheap_poison_freed). Until a review,
		 * "allocated", for the use after free the mode is for. */
		if (asked == SPANHEAP_REDZONE_FREE) {
			w->state = SPANHEAP_OBJ_FREE;
			return;
		}
		w->asked = asked;
		w->owner = __atomic_load_n(&rz[idx].owner, __ATOMIC_RELAXED);
	}
}

/* p in the pages of span s (in use, of kind SMALL or LARGE): the object. */
static void span_where(const struct spanheap *sh, struct mspan *s,
                       uint8_t state, uintptr_t off, struct spanheap_where *w)
{
	w->span_base = s->base;
	w->span_pages = s->npages;
	w->elemsize = spanheap_object_bytes(s);
	if (state == MSPAN_LARGE) {
		w->kind = SPANHEAP_WHERE_LARGE;
		w->start = s->base;
		w->offset = off;
		return;
	}
	w->kind = SPANHEAP_WHERE_SMALL;
	w->sizeclass = __atomic_load_n(&s->sizeclass, __ATOMIC_RELAXED);
	uint32_t nelems = __atomic_load_n(&s->nelems, __ATOMIC_RELAXED);
	unsigned owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
	w->cpu = owner ? (int)owner - 1 : -1;
	uint32_t idx = obj_index(s, off);
	if (idx >= nelems) {
		w->state = SPANHEAP_OBJ_TAIL;
		w->index = nelems;
		w->start = s->base + (uintptr_t)nelems * s->elemsize;
		w->offset = s->base + off - w->start;
		return;
	}
	w->index = idx;
	w->start = s->base + (uintptr_t)idx * s->elemsize;
	w->offset = off - (uintptr_t)idx * s->elemsize;
	/* Fields read from a struct being made anew for another class may
	 * disagree: the marker is read only inside the span's pages. */
	if (w->offset >= s->elemsize ||
	    w->start + 2 * sizeof(uintptr_t) >
	            s->base + (uintptr_t)s->npages * MM_PAGE_SIZE) {
		*w = (struct spanheap_where){.kind = SPANHEAP_WHERE_FREE_PAGES,
		                             .asked = UINT32_MAX,
		                             .owner = UINT32_MAX,
		                             .cpu = -1};
		return;
	}
	small_state(sh, s, idx, w);
}

bool spanheap_where(struct spanheap *sh, const void *p,
                    struct spanheap_where *w)
{
	uintptr_t a = (uintptr_t)p;
	*w = (struct spanheap_where){.kind = SPANHEAP_WHERE_OUTSIDE,
	                             .asked = UINT32_MAX,
	                             .owner = UINT32_MAX,
	                             .cpu = -1};
	if (spanheap_guard_owns(&sh->guard, p)) {
		spanheap_guard_where(sh, a, w);
		return true;
	}
	if (spanheap_meta_holds(sh, a)) {
		w->kind = SPANHEAP_WHERE_META;
		return true;
	}
	/* A heap never set up has arena_bytes 0, and no page heap to ask. */
	if (a - sh->arena_base >= sh->arena_bytes)
		return false;
	void *e = mheap_span_lookup(sh->heap, a);
	if (!mheap_span_is_span(e)) {
		w->kind = mark_kind(e);
		if (w->kind == SPANHEAP_WHERE_FREED_LARGE)
			spanheap_freed_large_find(sh, a, w);
		return true;
	}
	struct mspan *s = e;
	uint8_t state = atomic_load_explicit(&s->state, memory_order_acquire);
	uintptr_t off = a - s->base;
	if (state == MSPAN_DEAD || a < s->base ||
	    off >= (uintptr_t)s->npages * MM_PAGE_SIZE) {
		w->kind = SPANHEAP_WHERE_FREE_PAGES; /* being freed */
		return true;
	}
	span_where(sh, s, state, off, w);
	return true;
}

size_t spanheap_text_put(char *buf, size_t size, size_t len, const char *t,
                         uint64_t v)
{
	while (*t && len + 1 < size)
		buf[len++] = *t++;
	if (v != UINT64_MAX) {
		char d[20];
		int n = 0;
		do
			d[n++] = (char)('0' + v % 10);
		while ((v /= 10) != 0);
		while (n && len + 1 < size)
			buf[len++] = d[--n];
	}
	buf[len] = '\0';
	return len;
}

/* The line for a small span's address (kind SMALL): the object, its
 * state, the red zone if the offset is in it, the CPU caching the span. */
static void log_small(struct spanheap *sh, uintptr_t a,
                      const struct spanheap_where *w)
{
	char note[160];
	size_t len = spanheap_text_put(note, sizeof(note), 0, "", UINT64_MAX);
	if (w->owner != 0 && w->owner != UINT32_MAX) {
		char name[OBJCACHE_NAME_MAX + 1];
		objcache_owner_name(sh, w->owner, name);
		len = spanheap_text_put(note, sizeof(note), len, ", cache '",
		                        UINT64_MAX);
		len = spanheap_text_put(note, sizeof(note), len, name,
		                        UINT64_MAX);
		len = spanheap_text_put(note, sizeof(note), len, "''s",
		                        UINT64_MAX);
	}
	if (w->asked != UINT32_MAX) {
		len = spanheap_text_put(note, sizeof(note), len, ", ",
		                        w->asked);
		len = spanheap_text_put(note, sizeof(note), len, " bytes asked",
		                        UINT64_MAX);
		if (w->offset >= w->asked) {
			len = spanheap_text_put(note, sizeof(note), len, ": ",
			                        w->offset - w->asked);
			len = spanheap_text_put(
			        note, sizeof(note), len,
			        " bytes past their end, in the red zone",
			        UINT64_MAX);
		}
	}
	if (w->cpu >= 0)
		spanheap_text_put(note, sizeof(note), len,
		                  ", the span cached by CPU ",
		                  (uint64_t)w->cpu);
	if (w->state == SPANHEAP_OBJ_TAIL) {
		mm_log("spanheap: %#lx: %zu bytes past the last of the %u "
		       "objects of span [%#lx, +%u pages), size class %u "
		       "(%zu-byte objects), in its tail%s",
		       (unsigned long)a, w->offset, w->index,
		       (unsigned long)w->span_base, w->span_pages, w->sizeclass,
		       w->elemsize, note);
		return;
	}
	mm_log("spanheap: %#lx: %zu bytes into object %u (%s) of span "
	       "[%#lx, +%u pages), size class %u (%zu-byte objects)%s",
	       (unsigned long)a, w->offset, w->index,
	       spanheap_obj_state_name(w->state), (unsigned long)w->span_base,
	       w->span_pages, w->sizeclass, w->elemsize, note);
}

/* The line for a large span's address: the object, or a slab of a cache
 * with slabs of its own, which says the object in it (objcache_track.c). */
static void log_large(struct spanheap *sh, uintptr_t a,
                      const struct spanheap_where *w)
{
	struct mspan *s = mheap_span_lookup(sh->heap, a);
	if (mheap_span_is_span(s) &&
	    atomic_load_explicit(&s->objslab, memory_order_acquire)) {
		objcache_track_where_log(sh, s, a);
		return;
	}
	mm_log("spanheap: %#lx: %zu bytes into a large object (allocated) "
	       "[%#lx, +%u pages)",
	       (unsigned long)a, w->offset, (unsigned long)w->span_base,
	       w->span_pages);
}

bool spanheap_where_log(struct spanheap *sh, const void *p)
{
	struct spanheap_where w;
	bool in = spanheap_where(sh, p, &w);
	uintptr_t a = (uintptr_t)p;
	switch (w.kind) {
	case SPANHEAP_WHERE_OUTSIDE:
		mm_log("spanheap: %#lx: outside the heap arena [%#lx, +%zu "
		       "MiB)",
		       (unsigned long)a, (unsigned long)sh->arena_base,
		       (size_t)(sh->arena_bytes >> 20));
		break;
	case SPANHEAP_WHERE_FREE_PAGES:
		/* Past what the heap has grown into, no object ever was:
		 * a wild pointer, not a use after free. */
		if (a - sh->arena_base >=
		    __atomic_load_n(&sh->heap->grown_chunks, __ATOMIC_ACQUIRE) *
		            PALLOC_CHUNK_BYTES)
			mm_log("spanheap: %#lx: in the heap arena past what it "
			       "has grown into (never an object's: a wild "
			       "pointer?)",
			       (unsigned long)a);
		else
			mm_log("spanheap: %#lx: on a free page of the heap "
			       "arena (no span's or run's; a use after free?)",
			       (unsigned long)a);
		break;
	case SPANHEAP_WHERE_PAGES:
		mm_log("spanheap: %#lx: on a run of the page heap's pages "
		       "(mheap_alloc_pages, in use or freed since), no span's",
		       (unsigned long)a);
		break;
	case SPANHEAP_WHERE_FREED_LARGE:
		spanheap_freed_large_log(a, &w);
		break;
	case SPANHEAP_WHERE_LARGE:
		log_large(sh, a, &w);
		break;
	case SPANHEAP_WHERE_GUARD:
		spanheap_guard_where_log(sh, a, &w);
		break;
	case SPANHEAP_WHERE_META:
		mm_log("spanheap: %#lx: in the heap's own metadata "
		       "(" SPANHEAP_META_WHAT "), never an object",
		       (unsigned long)a);
		break;
	case SPANHEAP_WHERE_SMALL:
		log_small(sh, a, &w);
		if (w.state != SPANHEAP_OBJ_TAIL) {
			struct mspan *s = mheap_span_lookup(sh->heap, a);
			if (mheap_span_is_span(s))
				spanheap_track_report(s, a);
		}
		break;
	}
	return in;
}
