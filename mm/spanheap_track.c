/*
 * mm/spanheap_track.c: poison mode's record of who allocated and who freed
 * each small object (Linux's slub_debug=U), and the reports that print it.
 *
 * Purpose: poison mode names the victim of a bug (the object whose poison
 * or red zone changed, or that was freed twice) at the heap's next look
 * at it, not the code that did it. What a developer asks next is who
 * had the object: who allocated it (the likely writer past its end), who
 * freed it (the holder of the stale pointer, or the first of two frees).
 * The records answer that in the report itself, and through
 * spanheap_object_tracks for a debugger or a shell.
 *
 * Representation: a poison span's side table (spanheap_redzone.c) holds,
 * after the nelems sizes asked, two struct spanheap_track per object, the
 * last allocation's and the last free's: when (mm_port_now_ns), on which
 * CPU, and SPANHEAP_TRACK_PCS return addresses of the call's stack
 * (mm_port_callers, innermost first). 2 x 80 bytes an object, on top of
 * the 4 of its size: poison mode is a debugging mode, and a 16-byte
 * object's span then takes 21 pages of table beside its 2. A heap whose
 * port records no callers (mm_port_callers gives none when spanheap_init
 * asks: the hosted malloc, whose programs have no frame pointers to walk)
 * keeps only the sizes; its spans are made without SPAN_TRACKED.
 *
 * Algorithm: span_take's poison branch (spanheap_poison_taken) records the
 * allocation, spanheap_poison_freed the free, each after the checks that
 * may report the object, so that a report shows the previous owner's
 * calls, not the call that found the damage (the panic's own backtrace
 * names that one). A realloc that keeps the object in place is neither.
 *
 * Locking: an object's records are its own, written by whoever holds it
 * (the CPU that hands it out, pinned, and the caller that frees it),
 * never at once; spanheap_object_tracks reads them without a lock.
 *
 * Limits: small objects only (a large object's pages go back at its free,
 * and mm.debug_pagealloc unmaps them); the records live as long as the
 * span, so an object in a span made since its free has none; the stack is
 * what the port's walk finds (frame pointers, in this kernel).
 */
#include "spanheap_internal.h"

/* The return addresses of the recording itself: into
 * spanheap_track_record's caller and from it into the path. */
#define TRACK_SKIP 2

/* The first byte of s's records: after the sizes, 8-byte aligned. */
static struct spanheap_track *tracks_of(const struct mspan *s)
{
	size_t off = spanheap_track_offset(s->nelems);
	return (struct spanheap_track *)((char *)s->redzone + off);
}

size_t spanheap_track_offset(uint32_t nelems)
{
	return ((size_t)nelems * sizeof(struct spanheap_redzone) + 7) & ~7ul;
}

bool spanheap_track_probe(void)
{
	uintptr_t pc[1];
	return mm_port_callers(pc, 1) > 0;
}

void spanheap_track_record(const struct mspan *s, uint32_t idx, bool freed)
{
	struct spanheap_track *t = &tracks_of(s)[2 * (size_t)idx + freed];
	/* Not this function's return into spanheap_poison_taken or _freed,
	 * nor theirs into the heap's path: the first kept is in the path. */
	uintptr_t pc[SPANHEAP_TRACK_PCS + TRACK_SKIP];
	unsigned n = mm_port_callers(pc, SPANHEAP_TRACK_PCS + TRACK_SKIP);
	if (n > SPANHEAP_TRACK_PCS + TRACK_SKIP)
		n = SPANHEAP_TRACK_PCS + TRACK_SKIP; /* a port's slip */
	struct mm_pin pin = mm_port_pin();
	t->cpu = pin.cpu;
	mm_port_unpin(pin);
	t->npcs = n > TRACK_SKIP ? n - TRACK_SKIP : 0;
	for (unsigned i = 0; i < t->npcs; i++)
		t->pc[i] = pc[TRACK_SKIP + i];
	t->ns = mm_port_now_ns() | 1; /* never 0: "never" */
}

/* Appends s to buf (of size bytes, holding len), cut short if full. */
static size_t append(char *buf, size_t size, size_t len, const char *s)
{
	while (*s && len + 1 < size)
		buf[len++] = *s++;
	buf[len] = '\0';
	return len;
}

/* mm_logs record t of the object at a: what happened (allocated, freed),
 * when (before now), where and its stack. */
static void track_log(uintptr_t a, const struct spanheap_track *t,
                      const char *what, uint64_t now)
{
	if (t->ns == 0) {
		mm_log("spanheap: object %#lx: never %s since its span was "
		       "made",
		       (unsigned long)a, what);
		return;
	}
	char stack[SPANHEAP_TRACK_PCS * 100], name[96];
	size_t len = append(stack, sizeof(stack), 0, "");
	for (unsigned i = 0; i < t->npcs && i < SPANHEAP_TRACK_PCS; i++) {
		mm_port_pc_name(t->pc[i], name, sizeof(name));
		if (i)
			len = append(stack, sizeof(stack), len, " <- ");
		len = append(stack, sizeof(stack), len, name);
	}
	uint64_t ago = now > t->ns ? now - t->ns : 0;
	mm_log("spanheap: object %#lx: last %s on CPU %u, %lu us before: %s",
	       (unsigned long)a, what, t->cpu, (unsigned long)(ago / 1000),
	       t->npcs ? stack : "(no stack)");
}

void spanheap_track_report(const struct mspan *s, uintptr_t a)
{
	if (!(s->poison & SPAN_TRACKED) || !s->redzone)
		return;
	uint32_t idx = obj_index(s, a - s->base);
	if (idx >= s->nelems)
		return;
	uintptr_t start = s->base + (uintptr_t)idx * s->elemsize;
	const struct spanheap_track *t = &tracks_of(s)[2 * (size_t)idx];
	uint64_t now = mm_port_now_ns();
	track_log(start, &t[0], "allocated", now);
	track_log(start, &t[1], "freed", now);
}

bool spanheap_object_tracks(struct spanheap *sh, const void *p,
                            struct spanheap_track *alloc,
                            struct spanheap_track *freed)
{
	uintptr_t a = (uintptr_t)p;
	if (!sh->track || a - sh->arena_base >= sh->arena_bytes)
		return false;
	struct mspan *s = mheap_span_lookup(sh->heap, a);
	if (!mheap_span_is_span(s) ||
	    atomic_load_explicit(&s->state, memory_order_acquire) !=
	            MSPAN_SMALL ||
	    !(s->poison & SPAN_TRACKED) || !s->redzone)
		return false;
	uint32_t idx = obj_index(s, a - s->base);
	if (idx >= s->nelems)
		return false;
	const struct spanheap_track *t = &tracks_of(s)[2 * (size_t)idx];
	*alloc = t[0];
	*freed = t[1];
	return true;
}
