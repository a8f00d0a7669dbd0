/*
 * mm/spanheap_where.h: what an address is to the span heap, for a report
 * (a fault handler's, a shell's, a debugger's): the object it points into
 * and that object's state, or what else of the heap's arena holds it.
 * Linux's kmem_dump_obj, and KASAN's "the buggy address belongs to the
 * object at". Included by spanheap.h.
 */
#ifndef MM_SPANHEAP_WHERE_H
#define MM_SPANHEAP_WHERE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap_track.h"

struct spanheap;

/* What holds the address. */
enum spanheap_where_kind {
	SPANHEAP_WHERE_OUTSIDE, /* not the heap's arena */
	/* A page of the arena that no span or run holds: free in the page
	 * heap, never handed out or a small span's until it was freed. */
	SPANHEAP_WHERE_FREE_PAGES,
	SPANHEAP_WHERE_PAGES, /* a run of mheap_alloc_pages, now or once */
	/* Pages a large object gave back: freed since, or the tail of a
	 * realloc's shrink (the object may live on). */
	SPANHEAP_WHERE_FREED_LARGE,
	SPANHEAP_WHERE_LARGE, /* a large object (allocated) */
	SPANHEAP_WHERE_SMALL, /* a span of small objects */
	/* The guarded pool (spanheap_guard.c), outside the arena: the
	 * object whose page (or whose guard page, the nearer one's) holds
	 * the address; UNUSED if none ever did. */
	SPANHEAP_WHERE_GUARD,
	/* The span heap's own metadata (spanheap_meta.c): span structs,
	 * all-spans arrays, magazine slabs, side tables, the stack depot, in
	 * an arena of their own; never an object. */
	SPANHEAP_WHERE_META,
};

/* The state of the small object it points into. */
enum spanheap_obj_state {
	SPANHEAP_OBJ_NONE,      /* no small object: kind is not SMALL */
	SPANHEAP_OBJ_ALLOCATED, /* handed out, not freed */
	SPANHEAP_OBJ_FREE,      /* freed, not handed out again */
	SPANHEAP_OBJ_UNUSED,    /* never handed out since its span was made */
	SPANHEAP_OBJ_TAIL,      /* past the span's last object: no object */
};

struct spanheap_where {
	enum spanheap_where_kind kind;
	enum spanheap_obj_state state;
	/* SMALL and LARGE: the span, its class (0 for a large one) and the
	 * size of its objects (a large object's pages). */
	uintptr_t span_base;
	uint32_t span_pages;
	unsigned sizeclass;
	size_t elemsize;
	/* SMALL and LARGE: the object's index (TAIL: the span's object
	 * count), its first byte (TAIL: the tail's), and the address's
	 * offset from that byte. */
	uint32_t index;
	uintptr_t start;
	size_t offset;
	/* SMALL, poison mode, an allocated object: the bytes asked for it
	 * (an offset at or past them is in its red zone); else UINT32_MAX. */
	uint32_t asked;
	/* The same: its owner, 0 for the heap's own callers, n for named
	 * cache slot n - 1's (objcache_owner_name); else UINT32_MAX. */
	uint32_t owner;
	/* SMALL: the CPU whose cache holds the span, or -1; FREED_LARGE, a
	 * free remembered: the CPU that freed it. */
	int cpu;
	/* FREED_LARGE, if the free is one of the last
	 * SPANHEAP_FREED_LARGE_RING the heap remembers (else freed.ns is 0):
	 * the object's first byte (start), the offset, its pages then
	 * (span_pages), the pages given back (freed_pages from span_base:
	 * all of them, or the tail a realloc gave back), and the free's time,
	 * CPU and, in poison mode, stack (freed). */
	uint32_t freed_pages;
	struct spanheap_track freed;
	/* GUARD: the slot (index), its page (span_base, 1 page), the
	 * object's first byte (start) and bytes asked (asked and elemsize),
	 * its class, owner, allocating CPU (cpu), and, freed, its free
	 * (freed); the address's offset from start, or the bytes it is
	 * before start (before), and whether it is on a guard page. */
	size_t before;
	bool on_guard;
};

/*
 * What p is to sh, into *w: true if p is in sh's arena, false (kind
 * OUTSIDE) if not, or if sh was never set up (a zeroed struct). Reads the
 * span table, the span and the object's free marker with no lock: any
 * context, the exception handlers' too. A snapshot for a report: what
 * another CPU allocates or frees meanwhile may show either way. Reads no
 * memory that a live span does not map.
 */
bool spanheap_where(struct spanheap *sh, const void *p,
                    struct spanheap_where *w);

/*
 * mm_logs what p is to sh, one line ("spanheap: 0x...: 24 bytes into
 * object 5 (allocated) of span [...], size class 3 (48-byte objects)"),
 * then, for a small object of a heap that records its callers (poison
 * mode), who last allocated and freed it, and for a large object freed
 * since, who freed it. Returns spanheap_where's
 * answer. Any context; mm_log's own limits.
 */
bool spanheap_where_log(struct spanheap *sh, const void *p);

/* "allocated", "free", ...: the name of state s. */
const char *spanheap_obj_state_name(enum spanheap_obj_state s);

#endif
