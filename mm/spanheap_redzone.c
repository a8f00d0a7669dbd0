/*
 * mm/spanheap_redzone.c: poison mode's red zones (Linux's slub_debug=Z):
 * a write past the end of a small object, into the bytes of its class it
 * was not asked for, is caught at the object's free.
 *
 * Purpose: poison mode (spanheap_poison.c) catches a write after a free;
 * the commonest other heap bug, a buffer overrun by a few bytes, lands in
 * the slack of the object's class or in its neighbour and goes unseen
 * until something else breaks. A red zone makes the slack a tripwire.
 *
 * Representation: each small span of a poison heap has a side table, one
 * struct spanheap_redzone per object, from the metadata heap
 * (spanheap_meta.c: apart from the objects an overrun reaches) with the span's
 * flags (spanheap_redzone_span_make, at the span's making; a table that
 * cannot be had fails the span as memory that ran out, nothing kept),
 * given back with the span (spanheap_poison_span_gone). An object's entry
 * holds the bytes asked for while it is allocated (SPANHEAP_REDZONE_FREE
 * while it is free) and its owner (0, or the named cache's that
 * objcache.c set: the heap's own free and realloc panic for a cache's
 * object, spanheap_redzone_not_owned), and its red zone is the slack [asked,
 * elemsize), every byte SPANHEAP_REDZONE_BYTE (0xbb, not the poison 0xdb). So
 * that every object has one, a poison heap gives a request the class of a byte
 * more (spanheap.c's poison_class: every allocation of the mode reaches
 * alloc_call, as the magazines are empty, and the refill sends its calls
 * there), and a power of two up to a page a class of its multiples, to
 * keep its natural alignment; a realloc keeps an object in place only
 * with a byte of red zone left. The one exception is a request of 32 KiB,
 * the largest class's size, which stays small and has none.
 *
 * Algorithm: a poison span is made with every object poisoned and marked
 * as freed, and marked at nelems, so span_take's poison branch (the one
 * test normal mode pays, as before) sees every object handed out, fresh
 * or not: it checks the poison, records the size the allocation asked
 * for (span_take has it from each path that takes an object:
 * spanheap_alloc_refill's, alloc_small's, the refill's) and fills the
 * red zone. The free (spanheap_mag_full's way to the span, every free in
 * this mode) checks the red zone, marks the entry free, then poisons the
 * object; a realloc that keeps the object checks the red zone and fills
 * the new one (the bytes it gains were the red zone, and an MM_ZERO
 * realloc zeroes them). spanheap_usable_size gives the bytes asked, so a
 * caller that writes what it was promised never reaches the red zone;
 * MM_ZERO allocations zero that much.
 *
 * Invariants: an allocated object's red zone holds only the red-zone
 * byte; a free object's entry is SPANHEAP_REDZONE_FREE.
 *
 * Locking: an entry is its object's: written by the CPU that hands the
 * object out (pinned, the span's owner) and by its allocated object's
 * caller's calls (free, realloc, usable size), never at once.
 *
 * Limits: checked at the free and at an in-place realloc, not by
 * spanheap_check: an allocated object's red zone may be rewritten by its
 * free or realloc on another CPU while the checker reads it. Large
 * objects have none (the kernel's mm.debug_pagealloc unmaps their pages
 * at the free; an overrun past the last page faults only with it). An
 * overrun that writes the red-zone byte, or one read rather than written,
 * goes unseen; the report names the victim at its free, not the write.
 */
#include "objcache.h"
#include "spanheap_internal.h"

static inline struct spanheap_redzone *entry_of(const struct mspan *s,
                                                uint32_t idx)
{
	return (struct spanheap_redzone *)s->redzone + idx;
}

/* The pages of a side table of class cls's span: the sizes, and the
 * callers' records if the heap keeps them (spanheap_track.c). */
size_t spanheap_redzone_table_pages(const struct spanheap *sh, unsigned cls)
{
	return spanheap_redzone_pages_of(cls, sh->track);
}

size_t spanheap_redzone_pages_of(unsigned cls, bool track)
{
	uint32_t n = sizeclass_info[cls].nelems;
	if (!track)
		return spanheap_pages_for(n * sizeof(struct spanheap_redzone));
	return spanheap_pages_for(spanheap_track_offset(n) +
	                          sizeof(struct spanheap_rec_head) +
	                          2 * (size_t)n * sizeof(struct spanheap_rec));
}

bool spanheap_redzone_span_make(struct spanheap *sh, unsigned cls,
                                uintptr_t base, unsigned flags, void **rz)
{
	const struct sizeclass_info *ci = &sizeclass_info[cls];
	size_t n = spanheap_redzone_table_pages(sh, cls);
	/* Zeroed if it has records: "never allocated, never freed". */
	unsigned hf = mheap_flags_of(flags) | (sh->track ? MHEAP_ZERO : 0);
	struct spanheap_redzone *t = mheap_alloc_pages(&sh->meta, n, hf);
	if (!t && !(flags & MM_ATOMIC) && spanheap_reclaim(sh))
		t = mheap_alloc_pages(&sh->meta, n, hf);
	if (!t) {
		spanheap_pages_put(sh->heap, (void *)base, ci->npages);
		return false;
	}
	for (uint32_t i = 0; i < ci->nelems; i++) {
		uintptr_t a = base + (uintptr_t)i * ci->size;
		t[i] = (struct spanheap_redzone){.asked =
		                                         SPANHEAP_REDZONE_FREE};
		spanheap_poison_fill(a, ci->size);
		obj_words(a)[1] = sh->mag_cookie ^ a;
	}
	/* Its objects never handed out and its tail, to a shadow. */
	mm_port_shadow((void *)base, ci->npages * MM_PAGE_SIZE,
	               MM_SHADOW_UNUSED);
	if (sh->track) /* the reports that have the span alone find it */
		((struct spanheap_rec_head *)((char *)t + spanheap_track_offset(
		                                                  ci->nelems)))
		        ->depot = &sh->depot;
	*rz = t;
	return true;
}

void spanheap_redzone_put(struct spanheap *sh, void *rz, unsigned cls)
{
	/* As the span heap's own pages go back: a stray pointer into them
	 * is one into free pages, not into page-heap memory. */
	if (rz)
		spanheap_pages_put(&sh->meta, rz,
		                   spanheap_redzone_table_pages(sh, cls));
}

void spanheap_poison_span_gone(struct spanheap *sh, struct mspan *s)
{
	spanheap_redzone_put(sh, s->redzone, s->sizeclass);
	/* The lock-free readers load it (spanheap_track.c, _where.c). */
	__atomic_store_n(&s->redzone, NULL, __ATOMIC_RELAXED);
}

/* Fills object a's red zone: bytes [asked, size) of it; a shadow says
 * the bytes asked are the caller's and the rest a red zone. */
static void redzone_fill(uintptr_t a, size_t asked, uint32_t size)
{
	mm_memset((char *)a + asked, SPANHEAP_REDZONE_BYTE, size - asked);
	mm_port_shadow((void *)a, asked, MM_SHADOW_OK);
	mm_port_shadow((void *)(a + asked), size - asked, MM_SHADOW_REDZONE);
}

/* The first byte of object a's red zone [asked, size) that is not the
 * red-zone byte, or -1. */
static long redzone_damage(uintptr_t a, size_t asked, uint32_t size)
{
	const uint8_t *b = (const uint8_t *)a;
	for (size_t i = asked; i < size; i++)
		if (b[i] != SPANHEAP_REDZONE_BYTE)
			return (long)i;
	return -1;
}

__attribute__((noreturn, noinline, cold)) static void
redzone_report(const struct mspan *s, uintptr_t a, size_t asked, long off,
               const char *when)
{
	spanheap_track_report(s, a);
	mm_panic("spanheap: write past the end of an object, found %s: "
	         "pointer %#lx, span [%#lx, +%u pages), size class %u "
	         "(%zu-byte objects), %zu bytes asked: byte %lu is %#x, not "
	         "the red zone %#x",
	         when, (unsigned long)a, (unsigned long)s->base, s->npages,
	         (unsigned)s->sizeclass, spanheap_object_bytes(s), asked,
	         (unsigned long)off, (unsigned)((const uint8_t *)a)[off],
	         SPANHEAP_REDZONE_BYTE);
}

/* Panics if allocated object idx of s at a has a damaged red zone. */
static void redzone_check(const struct mspan *s, uint32_t idx, uintptr_t a,
                          const char *when)
{
	size_t asked = entry_of(s, idx)->asked;
	long off = redzone_damage(a, asked, s->elemsize);
	if (off >= 0)
		redzone_report(s, a, asked, off, when);
}

void *spanheap_poison_taken(struct spanheap *sh, struct mspan *s, uintptr_t a,
                            size_t size)
{
	spanheap_poison_check_taken(sh, s, a);
	obj_words(a)[1] = 0; /* the free marker, as span_take clears it */
	if (size > s->elemsize)
		size = s->elemsize; /* none asks for more than its class */
	uint32_t idx = obj_index(s, a - s->base);
	/* alloc_call records the call (spanheap_track.c); until then the
	 * record reads as changing, not as the previous allocation's. */
	if (s->poison & SPAN_TRACKED)
		spanheap_track_begin(s, idx, false);
	__atomic_store_n(&entry_of(s, idx)->asked, (uint32_t)size,
	                 __ATOMIC_RELEASE);
	redzone_fill(a, size, s->elemsize);
	return (void *)a;
}

void spanheap_redzone_not_owned(struct spanheap *sh, const struct mspan *s,
                                uint32_t idx, uintptr_t a, const char *op)
{
	uint32_t owner = entry_of(s, idx)->owner;
	if (__builtin_expect(owner == 0, 1))
		return;
	char name[OBJCACHE_NAME_MAX + 1];
	objcache_owner_name(sh, owner, name);
	spanheap_track_report(s, a); /* as the red zone's reports */
	mm_panic("spanheap: %s of %#lx (span %#lx, size class %u, %zu-byte "
	         "objects): the object is cache '%s''s: free it to its cache "
	         "(objcache_free)",
	         op, (unsigned long)a, (unsigned long)s->base,
	         (unsigned)s->sizeclass, spanheap_object_bytes(s), name);
}

void spanheap_poison_freed(struct spanheap *sh, uintptr_t a, unsigned cls)
{
	/* The free checked the span and the object; the span is in use. */
	struct mspan *s = mheap_span_lookup(sh->heap, a);
	uint32_t idx = obj_index(s, a - s->base);
	/* Free already by its entry: a double free whose marker a write
	 * after the first free changed (the bits, once folded, tell
	 * nothing). */
	if (entry_of(s, idx)->asked == SPANHEAP_REDZONE_FREE)
		spanheap_bad_object("double free (its free marker was "
		                    "overwritten after its first free)",
		                    (void *)a, s);
	spanheap_redzone_not_owned(sh, s, idx, a, "free");
	redzone_check(s, idx, a, "at its free");
	/* The free's record reads as changing from before the entry says
	 * free until it is written, after the poison. */
	if (s->poison & SPAN_TRACKED)
		spanheap_track_begin(s, idx, true);
	__atomic_store_n(&entry_of(s, idx)->asked, SPANHEAP_REDZONE_FREE,
	                 __ATOMIC_RELEASE);
	spanheap_poison_fill(a, sizeclass_info[cls].size);
	mm_port_shadow((void *)a, sizeclass_info[cls].size, MM_SHADOW_FREED);
	if (s->poison & SPAN_TRACKED)
		spanheap_track_record(sh, s, idx, true, 0, false);
}

uint32_t *spanheap_redzone_owner_at(const struct mspan *s, uint32_t idx)
{
	if (!s->sizeclass || !s->redzone ||
	    entry_of(s, idx)->asked == SPANHEAP_REDZONE_FREE)
		return NULL;
	return &entry_of(s, idx)->owner;
}

size_t spanheap_redzone_asked(const struct mspan *s, uint32_t idx)
{
	return entry_of(s, idx)->asked;
}

void spanheap_redzone_resize(struct spanheap *sh, struct mspan *s, uint32_t idx,
                             uintptr_t a, size_t size)
{
	(void)sh;
	redzone_check(s, idx, a, "at its realloc");
	entry_of(s, idx)->asked = (uint32_t)size;
	redzone_fill(a, size, s->elemsize);
}
