/*
 * tests/host/spanheap_harness_model.c: the span heap harness's model of
 * live objects (spanheap_harness.h): a bit per 16-byte granule of the arena
 * that a live object covers, each object's fill byte, and the checks a new
 * object passes before it joins them (inside the arena, aligned, sized as
 * its span says, overlapping nothing live, zeroed when asked).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

__attribute__((format(printf, 2, 3))) bool shh_fail(struct spanheap_harness *h,
                                                    const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(h->err, sizeof(h->err),
	                 "step %lu (CPU %u): ", h->steps, h->cpu);
	va_start(ap, fmt);
	vsnprintf(h->err + n, sizeof(h->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

static char log_lines[4096];

void shh_log_begin(void)
{
	log_lines[0] = 0;
	mm_port_log_capture(log_lines, sizeof(log_lines));
}

bool shh_log_end(const char *what)
{
	mm_port_log_capture(NULL, 0);
	return strstr(log_lines, what) != NULL;
}

/* splitmix64's finaliser: independent bits from one argument. */
uint64_t shh_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- The granule bitmap -------------------------------------------------- */

/* Sets (on) or clears the bits of granules [g, g + n), or (test) returns
 * false if one of them is set. */
static bool granules(struct spanheap_harness *h, size_t g, size_t n, bool test,
                     bool on)
{
	for (size_t end = g + n; g < end;) {
		size_t bit = g % 64,
		       len = end - g < 64 - bit ? end - g : 64 - bit;
		uint64_t mask =
		        (len == 64 ? ~(uint64_t)0 : (((uint64_t)1 << len) - 1))
		        << bit;
		uint64_t *w = &h->granules[g / 64];
		if (test && (*w & mask))
			return false;
		if (!test)
			*w = on ? *w | mask : *w & ~mask;
		g += len;
	}
	return true;
}

static size_t granule_of(const struct spanheap_harness *h, uintptr_t a)
{
	return (a - h->heap.arena_base) / SHH_GRAN;
}

/* ---- Contents ------------------------------------------------------------ */

/* The offset of the first byte of [p, p + n) that is not v, or n. */
size_t shh_first_not(const void *p, size_t n, uint8_t v)
{
	const uint8_t *c = p;
	size_t i = 0;
	uint64_t word = 0x0101010101010101ull * v;
	for (; i < n && ((uintptr_t)(c + i) % 8); i++)
		if (c[i] != v)
			return i;
	for (; i + 8 <= n; i += 8)
		if (*(const uint64_t *)(c + i) != word)
			break;
	for (; i < n; i++)
		if (c[i] != v)
			return i;
	return n;
}

bool shh_verify(struct spanheap_harness *h, const struct shh_obj *o)
{
	const uint8_t *c = (const uint8_t *)o->p;
	for (size_t i = 0; i < o->ctor; i++)
		if (c[i] != shh_ctor_byte(o->p, i))
			return shh_fail(h,
			                "object %#lx (%zu bytes asked): its "
			                "ctor's byte %zu is %#x, not %#x",
			                (unsigned long)o->p, o->size, i, c[i],
			                shh_ctor_byte(o->p, i));
	size_t off = o->ctor +
	             shh_first_not(c + o->ctor, o->usable - o->ctor, o->fill);
	if (off == o->usable)
		return true;
	return shh_fail(
	        h,
	        "object %#lx (%zu bytes asked, %zu usable) overwritten: "
	        "byte %zu is %#x, not %#x",
	        (unsigned long)o->p, o->size, o->usable, off,
	        ((uint8_t *)o->p)[off], o->fill);
}

/* ---- The model ----------------------------------------------------------- */

/* The span holding a, with its class (0: large). NULL if none. */
static struct mspan *span_at(struct spanheap_harness *h, uintptr_t a)
{
	void *e = mheap_span_lookup(&h->heap, a);
	return mheap_span_is_span(e) ? e : NULL;
}

/* The guarded pool's slot of its object at a. */
static size_t guard_slot(const struct spanheap_harness *h, uintptr_t a)
{
	return ((a - h->sh.guard.base) / PG) / 2;
}

/* Drops object i from the model (it was freed, or moved by realloc). */
void shh_forget(struct spanheap_harness *h, size_t i)
{
	struct shh_obj *o = &h->live[i];
	h->live_bytes -= o->size;
	if (o->guard) {
		h->guard_slot_live[guard_slot(h, o->p)] = false;
		h->guard_live--;
		h->live[i] = h->live[--h->nlive];
		h->n.frees++;
		return;
	}
	granules(h, granule_of(h, o->p), o->room / SHH_GRAN, false, false);
	if (o->own) { /* its slab's span: the cache's, shh_own_check */
		h->live[i] = h->live[--h->nlive];
		h->n.frees++;
		return;
	}
	h->class_live[o->sizeclass]--;
	if (o->sizeclass == 0)
		h->large_pages -= o->room / PG;
	h->live[i] = h->live[--h->nlive];
	h->n.frees++;
}

static bool is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

/* What a plain request of size bytes gets. */
static size_t plain_usable(size_t size)
{
	if (size <= SC_MAX_SIZE)
		return sizeclass_info[sizeclass_of(size)].size;
	return (size + PG - 1) / PG * PG;
}

/* Adds object o, filled (but its ctor's bytes), to the model. */
void shh_admit_filled(struct spanheap_harness *h, struct shh_obj o)
{
	memset((char *)o.p + o.ctor, o.fill, o.usable - o.ctor);
	h->live[h->nlive++] = o;
	h->live_bytes += o.size;
	h->n.allocs++;
}

uint8_t shh_fill_next(struct spanheap_harness *h)
{
	if (++h->next_fill == 0)
		h->next_fill = 1;
	return h->next_fill;
}

/* shh_admit's checks for an object of the guarded pool: alone on its
 * slot's page (no other live object of the model there), aligned,
 * zeroed if asked, its usable size the bytes asked. */
static bool admit_guard(struct spanheap_harness *h, void *p, size_t size,
                        size_t align, unsigned what)
{
	uintptr_t a = (uintptr_t)p, at = a - h->sh.guard.base;
	size_t slot = guard_slot(h, a);
	if (!(at / PG % 2) || slot >= h->sh.guard.nslots ||
	    size > PG - a % PG || h->guard_slot_live[slot])
		return shh_fail(h,
		                "guarded object %p of %zu bytes: not alone on "
		                "a slot's page",
		                p, size);
	if (a % SHH_GRAN || a % align ||
	    ((what & SHH_A_POW2) && is_pow2(size) && size <= PG && a % size))
		return shh_fail(h,
		                "guarded object %p of %zu bytes misaligned "
		                "(align %zu)",
		                p, size, align);
	/* Its bytes asked; or, kept by a realloc for want of memory, the
	 * bytes it had (spanheap_realloc.c, guard_realloc). */
	size_t usable = spanheap_usable_size(&h->sh, p);
	if ((usable != size && !((what & SHH_A_KEPT) && usable > size)) ||
	    ((what & (SHH_A_ZERO | SHH_A_ZERO_ASKED)) &&
	     shh_first_not(p, size, 0) != size))
		return shh_fail(h,
		                "guarded object %p of %zu bytes: usable size "
		                "%zu, or not zeroed",
		                p, size, usable);
	h->guard_slot_live[slot] = true;
	h->guard_live++;
	h->n.guarded++;
	h->n.zeroed += (what & (SHH_A_ZERO | SHH_A_ZERO_ASKED)) != 0;
	shh_admit_filled(h, (struct shh_obj){.p = a,
	                                     .size = size,
	                                     .usable = usable,
	                                     .fill = shh_fill_next(h),
	                                     .guard = true});
	return true;
}

/*
 * Checks a new object p of size bytes, asked aligned to align, against the
 * model (what: enum shh_admit_flags), then adds it, filled.
 */
bool shh_admit(struct spanheap_harness *h, void *p, size_t size, size_t align,
               unsigned what)
{
	bool zero = what & (SHH_A_ZERO | SHH_A_ZERO_ASKED),
	     plain = what & SHH_A_PLAIN;
	uintptr_t a = (uintptr_t)p, base = h->heap.arena_base;
	if (spanheap_guard_owns(&h->sh.guard, p))
		return admit_guard(h, p, size, align, what);
	if (a < base || a - base >= h->cfg.arena_bytes ||
	    size > h->cfg.arena_bytes - (a - base))
		return shh_fail(h, "object %p of %zu bytes outside the arena",
		                p, size);
	if (a % SHH_GRAN || a % align ||
	    ((what & SHH_A_POW2) && is_pow2(size) && size <= PG && a % size))
		return shh_fail(h,
		                "object %p of %zu bytes misaligned (align %zu)",
		                p, size, align);
	struct mspan *s = span_at(h, a);
	if (s && !s->sizeclass && atomic_load(&s->objslab))
		return shh_admit_own(h, p, size, align, what, s);
	size_t usable = spanheap_usable_size(&h->sh, p);
	size_t room = !s             ? 0
	              : s->sizeclass ? sizeclass_info[s->sizeclass].size
	                             : (size_t)s->npages * PG;
	/* Poison mode: a small object's usable size is what was asked; the
	 * rest of its class is its red zone (spanheap_redzone.c). */
	bool exact = h->cfg.poison && s && s->sizeclass;
	if (!s || usable < size ||
	    (plain && !exact && usable != plain_usable(size)) ||
	    usable != (exact ? size : room))
		return shh_fail(h,
		                "object %p of %zu bytes: usable size %zu, span "
		                "class %d",
		                p, size, usable, s ? s->sizeclass : -1);
	if (a - base + room > h->cfg.arena_bytes ||
	    !granules(h, granule_of(h, a), room / SHH_GRAN, true, false))
		return shh_fail(h,
		                "object %p (%zu bytes) overlaps a live object",
		                p, room);
	/* MM_ZERO zeroes the whole usable size (spanheap.h); until a
	 * review only the bytes asked were checked. */
	size_t zn = (what & SHH_A_ZERO) ? usable : size;
	if (zero && shh_first_not(p, zn, 0) != zn)
		return shh_fail(
		        h,
		        "object %p of %zu bytes (%zu usable) not zeroed "
		        "at %zu",
		        p, size, usable, shh_first_not(p, zn, 0));
	granules(h, granule_of(h, a), room / SHH_GRAN, false, true);
	shh_admit_filled(h, (struct shh_obj){.p = a,
	                                     .size = size,
	                                     .usable = usable,
	                                     .room = room,
	                                     .fill = shh_fill_next(h),
	                                     .sizeclass = s->sizeclass});
	h->class_live[s->sizeclass]++;
	h->n.classes |= (uint64_t)1 << s->sizeclass;
	if (s->sizeclass == 0) {
		h->large_pages += s->npages;
		h->n.large++;
	}
	h->n.zeroed += zero;
	return true;
}

bool shh_overlaps_live(struct spanheap_harness *h, uintptr_t a, size_t n)
{
	uintptr_t base = h->heap.arena_base;
	if (a < base || a - base >= h->cfg.arena_bytes)
		return false;
	if (n > h->cfg.arena_bytes - (a - base))
		n = h->cfg.arena_bytes - (a - base);
	size_t g = granule_of(h, a), end = granule_of(h, a + n + SHH_GRAN - 1);
	return !granules(h, g, end - g, true, false);
}
