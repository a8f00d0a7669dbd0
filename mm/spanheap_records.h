/*
 * mm/spanheap_records.h: poison mode's records of callers as the span
 * heap's files use them (the records' shape for the heap's users is
 * spanheap_track.h's): the records in a poison span's side table
 * (spanheap_track.c), the stack depot they point into (spanheap_depot.c),
 * the large frees the heap remembers (spanheap_freed.c) and the reports'
 * text (spanheap_where.c). Included by spanheap_internal.h; not for the
 * heap's users.
 */
#ifndef MM_SPANHEAP_RECORDS_H
#define MM_SPANHEAP_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spanheap_types.h"

/* Poison mode's records of callers (spanheap_track.c): s->poison's bit. */
#define SPAN_TRACKED 2u
/* A record in a side table: when (0: never; SPANHEAP_TRACK_CHANGING:
 * being written), on which CPU, the stack's handle in the heap's depot
 * (spanheap_depot.c). The records' part of a table, after the sizes,
 * starts with its heap's depot, for the reports with the span alone. */
struct spanheap_rec {
	uint64_t ns;
	uint32_t cpu;
	uint32_t stack;
};
struct spanheap_rec_head {
	struct spanheap_depot *depot;
	uint64_t unused;
};
/* Where the records' part starts in a side table of nelems objects. */
size_t spanheap_track_offset(uint32_t nelems);
/* The depot (spanheap_depot.c): its bucket array, made by spanheap_init
 * if sh keeps records (false if there is no memory for it); a stack's
 * handle, the stack kept if it is new (0 for no stack, or
 * SPANHEAP_DEPOT_LOST if it could not be kept: no_grow, an MM_NO_GROW
 * allocation's, makes no chunk by growing the heap); and handle h's stack
 * into pc (SPANHEAP_TRACK_PCS of room), its length returned (0: none);
 * the figures into st. Save and get: any context but NMI, no lock. */
bool spanheap_depot_init(struct spanheap *sh);
uint32_t spanheap_depot_save(struct spanheap_depot *d, struct mheap *h,
                             const uintptr_t *pc, uint32_t npcs, bool no_grow);
uint32_t spanheap_depot_get(const struct spanheap_depot *d, uint32_t h,
                            uintptr_t *pc);
void spanheap_depot_stats(const struct spanheap_depot *d,
                          struct spanheap_stats *st);
/* True if the port records callers (mm_port_callers gives one): whether
 * a poison heap keeps records (spanheap_init). Marks the record (freed:
 * the free's) of object idx of tracked span s changing, before its size
 * entry changes, until spanheap_track_record writes it. Any context. */
bool spanheap_track_probe(void);
void spanheap_track_begin(const struct mspan *s, uint32_t idx, bool freed);
/* Records the call that allocates (freed false) or frees object idx of
 * tracked span s: the time, the CPU, the stack. The stack starts after
 * return address after if the walk finds it among its first four, else
 * after the two innermost (the record's own, its caller's); no_grow as
 * spanheap_depot_save's. Any context but NMI. */
void spanheap_track_record(struct spanheap *sh, const struct mspan *s,
                           uint32_t idx, bool freed, uintptr_t after,
                           bool no_grow);
/* Records the allocation of small object p (any object: a large one, or
 * one of a span without records, is left alone), for alloc_call: every
 * small allocation of poison mode passes there, at a depth that depends
 * on the call alone, not on the path to a span inside, so that one
 * caller's objects carry one stack (spanheap_alloc_traces groups them). */
void spanheap_track_alloc(struct spanheap *sh, const void *p, unsigned flags);
/*
 * Fills record t with the call it is made from: the CPU; if walk, the
 * stack, leaving out its first skip return addresses, or, if one of the
 * first four is after, those up to it; the time last (a reader takes ns 0
 * for "never"). Inline, so that which frames are left out depends on its
 * caller alone (spanheap_track_record, spanheap_freed_large_note). Any
 * context but NMI.
 */
static inline __attribute__((always_inline)) void
spanheap_track_fill(struct spanheap_track *t, bool walk, unsigned skip,
                    uintptr_t after)
{
	uintptr_t pc[SPANHEAP_TRACK_PCS + 4];
	unsigned n = walk ? mm_port_callers(pc, SPANHEAP_TRACK_PCS + 4) : 0;
	if (n > SPANHEAP_TRACK_PCS + 4)
		n = SPANHEAP_TRACK_PCS + 4; /* a port's slip */
	for (unsigned i = 0; after && i < n && i < 4; i++)
		if (pc[i] == after) {
			skip = i + 1;
			break;
		}
	struct mm_pin pin = mm_port_pin();
	t->cpu = pin.cpu;
	mm_port_unpin(pin);
	t->npcs = n > skip ? n - skip : 0;
	if (t->npcs > SPANHEAP_TRACK_PCS)
		t->npcs = SPANHEAP_TRACK_PCS;
	for (unsigned i = 0; i < t->npcs; i++)
		t->pc[i] = pc[skip + i];
	t->ns = mm_port_now_ns() | 1; /* never 0: "never" */
}

/* mm_logs record t of the object at a: what happened ("allocated",
 * "freed"), how long before now, on which CPU, the stack. */
void spanheap_track_log(uintptr_t a, const struct spanheap_track *t,
                        const char *what, uint64_t now);
/* The large frees the heap remembers (spanheap_freed.c): one noted (the
 * object at obj of objpages pages gave back npages from from: all of it,
 * or a realloc's tail) before its pages are marked freed, no lock held,
 * any context but NMI; the newest that gave back address a, into w's
 * FREED_LARGE fields (false if none is remembered), any context; and the
 * report's lines for it. */
void spanheap_freed_large_note(struct spanheap *sh, uintptr_t obj,
                               uint32_t objpages, uintptr_t from,
                               uint32_t npages);
bool spanheap_freed_large_find(const struct spanheap *sh, uintptr_t a,
                               struct spanheap_where *w);
void spanheap_freed_large_log(uintptr_t a, const struct spanheap_where *w);
/* Appends text t, then number v in decimal unless it is UINT64_MAX, to
 * buf (of size bytes, holding len, NUL-ended), for the reports' lines:
 * mm_log's formats are fixed, and mm/ has no formatter of its own.
 * Returns the new length; cut short if full (spanheap_where.c). */
size_t spanheap_text_put(char *buf, size_t size, size_t len, const char *t,
                         uint64_t v);
/* spanheap_alloc_traces' table being filled (spanheap_track.c): the
 * caller's entries, how many, their room, the objects of stacks that
 * found no room, and the owner asked for (or SPANHEAP_OWNER_ANY); and
 * one live object counted in it (asked bytes, allocated as record r),
 * for the slabs of caches with slabs of their own (objcache_track.c). */
struct spanheap_trace_table {
	struct spanheap_trace *t;
	size_t n, max, rest;
	uint32_t owner;
};
void spanheap_trace_add(struct spanheap_trace_table *tt,
                        const struct spanheap_track *r, uint32_t asked);
/* mm_logs s's object at a's records, or that they changed. Any context. */
void spanheap_track_report(const struct mspan *s, uintptr_t a);

#endif
