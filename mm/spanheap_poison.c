/*
 * mm/spanheap_poison.c: poison mode (spanheap_config.h), the span heap's
 * check for writes after a free, and the free markers' checks it shares
 * with spanheap_check (its red zones are spanheap_redzone.c's).
 *
 * Purpose: a kernel developer chasing a corrupted object wants to know
 * who wrote to it after it was freed, and when. The always-on checks
 * catch a double free or a foreign pointer at the call that makes it; a
 * write through a stale pointer is a store, which no allocator call sees.
 * Poison mode makes it visible at the next look the heap takes at the
 * object: its next allocation, its span's return to the page heap, or
 * spanheap_check.
 *
 * Representation: a freed small object holds SPANHEAP_POISON_BYTE in
 * every byte but those of its second word, which holds the free marker
 * (cookie ^ address) as it does in every mode. The heap's CPUs keep no
 * magazines (spanheap_mag_slab_make refuses), so a free goes straight to
 * its span through spanheap_mag_full's way for a CPU with no slab, which
 * poisons the object before it writes the marker and sets the object's
 * bit (after its red zone's check: spanheap_redzone.c); and every
 * allocation takes an object from a span through span_take, which checks
 * it. A poison span is made with every object poisoned and marked, and
 * its marked count at nelems (spanheap_redzone_span_make), so every
 * object span_take hands out is below marked and checked, one never
 * handed out too (a stray write into it is caught as well).
 *
 * Ordering: the poison is written before the object's pending or local
 * bit is set (the free's atomic OR, or its owner's store, both after the
 * fill in program order), and read only by a CPU that took the object
 * through that bit (a fold under the class's lock, or the owner): the
 * same path that publishes the marker.
 *
 * Cost: the fill and the check are a pass over the object each, and with
 * no magazines every call takes a slow path (a lock-free one for a free
 * on a span's own CPU, the pending bit's atomic OR otherwise). It is a
 * debugging mode; the fast paths' code is the same in both modes (the
 * magazines are simply always empty and full), and the only test normal
 * mode pays is span_take's read of the span's poison byte, in the line it
 * has just read, when an object is handed out again.
 *
 * Limits: large objects are not poisoned (their pages go back to the page
 * heap at the free); a write past an object's end is the red zones'
 * (spanheap_redzone.c); a write after a free that puts back the bytes it
 * changed, or that writes the poison, goes unseen; objects are checked
 * when the heap looks at them, not at the write, so the report names the
 * victim, not the culprit (as every poisoning allocator's does).
 */
#include <stdint.h>

#include "spanheap_internal.h"

#define POISON_WORD ((uint64_t)0x0101010101010101u * SPANHEAP_POISON_BYTE)

void spanheap_poison_fill(uintptr_t a, uint32_t size)
{
	/* Objects are 16-byte multiples, 16-byte aligned (sizeclasses.h):
	 * word 0, then from word 2 on. */
	uint64_t *w = (uint64_t *)a;
	w[0] = POISON_WORD;
	for (uint32_t i = 2; i < size / 8; i++)
		w[i] = POISON_WORD;
}

long spanheap_free_damage(const struct spanheap *sh, const struct mspan *s,
                          uintptr_t a)
{
	const uint64_t *w = (const uint64_t *)a;
	if (w[1] != (sh->mag_cookie ^ a))
		return SPANHEAP_DAMAGE_MARKER;
	if (!s->poison)
		return -1;
	for (uint32_t i = 0; i < s->elemsize / 8; i++) {
		if (i == 1 || w[i] == POISON_WORD)
			continue;
		const uint8_t *b = (const uint8_t *)&w[i];
		unsigned k = 0;
		while (b[k] == SPANHEAP_POISON_BYTE)
			k++;
		return (long)(i * 8 + k);
	}
	return -1;
}

/* Object a of s was written after its free: at byte off (or its free
 * marker's word: SPANHEAP_DAMAGE_MARKER). Says what is there and what should
 * be. */
__attribute__((noreturn, noinline, cold)) static void
poison_report(const struct spanheap *sh, const struct mspan *s, uintptr_t a,
              long off, const char *when)
{
	const uint8_t *b = (const uint8_t *)a;
	spanheap_track_report(s, a);
	if (off == SPANHEAP_DAMAGE_MARKER)
		mm_panic("spanheap: write after free, found %s: pointer %#lx, "
		         "span [%#lx, +%u pages), size class %u (%zu-byte "
		         "objects): its free marker (bytes 8-15) is %#lx, not "
		         "%#lx",
		         when, (unsigned long)a, (unsigned long)s->base,
		         s->npages, (unsigned)s->sizeclass,
		         spanheap_object_bytes(s),
		         (unsigned long)((const uint64_t *)a)[1],
		         (unsigned long)(sh->mag_cookie ^ a));
	mm_panic("spanheap: write after free, found %s: pointer %#lx, span "
	         "[%#lx, +%u pages), size class %u (%zu-byte objects): byte "
	         "%lu is %#x, not the poison %#x",
	         when, (unsigned long)a, (unsigned long)s->base, s->npages,
	         (unsigned)s->sizeclass, spanheap_object_bytes(s),
	         (unsigned long)off, (unsigned)b[off], SPANHEAP_POISON_BYTE);
}

void spanheap_poison_check_taken(struct spanheap *sh, const struct mspan *s,
                                 uintptr_t a)
{
	long off = spanheap_free_damage(sh, s, a);
	if (off >= 0)
		poison_report(sh, s, a, off, "as it was handed out again");
}

void spanheap_poison_check_span(struct spanheap *sh, const struct mspan *s)
{
	uint32_t marked =
	        atomic_load_explicit(&s->marked, memory_order_acquire);
	for (uint32_t i = 0; i < marked && i < s->nelems; i++) {
		uintptr_t a = s->base + (uintptr_t)i * s->elemsize;
		long off = spanheap_free_damage(sh, s, a);
		if (off >= 0)
			poison_report(sh, s, a, off,
			              "as its span went back to the page heap");
	}
}
