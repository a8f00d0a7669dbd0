/*
 * tests/host/spanheap_harness_own.c: the span heap harness's caches with
 * slabs of their own (mm/objcache_own.h), made by SHH_CACHE_MAKE beside
 * the merged ones in the same slots: with a constructor (shh_ctor), with
 * OBJCACHE_TYPESAFE_BY_RCU where the port has grace periods (the POSIX
 * port's fake ones: nothing runs until shh_own_op advances them), or
 * both; and the refusals (an alignment above a page, an unknown flag,
 * the flag without MM_PORT_RCU). Each is made OBJCACHE_SKIP_GUARD: the
 * guarded pool's samples of such caches are objcache_guard_test.c's.
 *
 * Their objects are admitted by shh_admit_own, not as a class's or a
 * large span's: an object of a listed slab of the cache at an object's
 * start, aligned, overlapping nothing live, its ctor's bytes as shh_ctor
 * wrote them (the cache constructs once, at the slab's making, and a
 * freed object comes back as it was left: the model never writes them),
 * zeroed where MM_ZERO was asked (a typesafe cache without ctor; with
 * one, MM_ZERO is refused: shh_own_alloc_zero). Their slabs are large
 * spans the model does not hold: shh_own_check counts them from each
 * cache's listing (its slabs and those waiting for a grace period) into
 * the statistics' large objects and pages, after objcache_own_check.
 * shh_own_op: objcache_shrink or _shrink_all (a grace period after, at
 * times), a double free of an own object to its cache and an interior
 * pointer of one, each of which must panic naming the pointer.
 */
#include <stdio.h>
#include <string.h>

#include "../../mm/objcache_internal.h"
#include "../../mm/spanheap_internal.h"
#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

void shh_ctor(void *obj)
{
	for (size_t i = 0; i < 16; i++)
		((uint8_t *)obj)[i] = shh_ctor_byte((uintptr_t)obj, i);
}

/* The slot of the live cache whose owner number is owner, or
 * SHH_NCACHES. */
static unsigned slot_of_owner(struct spanheap_harness *h, uint32_t owner)
{
	for (unsigned k = 0; k < SHH_NCACHES; k++)
		if (h->caches[k] && h->caches[k]->own &&
		    h->caches[k]->owner == owner)
			return k;
	return SHH_NCACHES;
}

bool shh_admit_own(struct spanheap_harness *h, void *p, size_t size,
                   size_t align, unsigned what, const struct mspan *s)
{
	uint32_t owner = atomic_load(&s->objslab);
	unsigned k = slot_of_owner(h, owner);
	uintptr_t a = (uintptr_t)p;
	if (k == SHH_NCACHES)
		return shh_fail(h,
		                "object %p in a slab of owner %u: no own "
		                "cache of the model's",
		                p, (unsigned)owner);
	struct objcache *c = h->caches[k];
	const struct objcache_own *o = c->own;
	size_t off = a - s->base - o->first;
	if (a < s->base + o->first || off % c->objsize ||
	    off / c->objsize >= o->nobjs || s->npages != o->npages ||
	    size != c->size || a % SHH_GRAN || a % align ||
	    (c->align && a % c->align))
		return shh_fail(h,
		                "object %p of %zu bytes: not an object's start "
		                "in cache %s's slab %#lx (%zu-byte objects "
		                "from +%u, aligned to %zu)",
		                p, size, c->name, (unsigned long)s->base,
		                c->objsize, o->first, c->align);
	if (shh_overlaps_live(h, a, c->objsize))
		return shh_fail(h,
		                "object %p (%zu bytes) of cache %s overlaps a "
		                "live object",
		                p, c->objsize, c->name);
	bool zero = what & (SHH_A_ZERO | SHH_A_ZERO_ASKED);
	size_t nctor = h->cache_ctor[k] ? (size < 16 ? size : 16) : 0;
	if (zero && shh_first_not(p, size, 0) != size)
		return shh_fail(h, "object %p of cache %s not zeroed at %zu", p,
		                c->name, shh_first_not(p, size, 0));
	for (size_t i = 0; i < nctor; i++)
		if (((uint8_t *)p)[i] != shh_ctor_byte(a, i))
			return shh_fail(h,
			                "object %p of cache %s: byte %zu is "
			                "%#x, not its ctor's %#x",
			                p, c->name, i, ((uint8_t *)p)[i],
			                shh_ctor_byte(a, i));
	h->n.zeroed += zero;
	h->n.own++;
	shh_admit_filled(h, (struct shh_obj){.p = a,
	                                     .size = size,
	                                     .usable = size,
	                                     .room = c->objsize,
	                                     .fill = shh_fill_next(h),
	                                     .own = true,
	                                     .ctor = (uint8_t)nctor});
	return true;
}

/* Why a cache of these arguments is refused (NULL: it is not): the
 * words its line must hold. */
static const char *refusal_of(size_t align, unsigned flags)
{
	if (flags & ~(unsigned)(OBJCACHE_TYPESAFE_BY_RCU | OBJCACHE_SKIP_GUARD))
		return "unknown flags";
	if ((flags & OBJCACHE_TYPESAFE_BY_RCU) && !MM_PORT_HAS_RCU)
		return "MM_PORT_RCU";
	if (align > PG)
		return "above a page";
	return NULL;
}

bool shh_own_make(struct spanheap_harness *h, unsigned k, uint64_t a,
                  uint64_t r)
{
	static const size_t aligns[] = {0, 0, 16, 64, 256, 4096, 8192, 32};
	size_t size = 1 + (size_t)(a >> 8) % 1024;
	if (r % 8 == 0)
		size = 1 + (size_t)(a >> 8) % SC_MAX_SIZE;
	else if (r % 32 == 1)
		size = SC_MAX_SIZE + 1 + (size_t)(a >> 8) % (128 << 10);
	size_t align = aligns[(r >> 5) % 8];
	/* A ctor, the flag, or both; now and then a flag no port knows. */
	unsigned kind = (unsigned)(r >> 8) % 3;
	unsigned flags = kind ? OBJCACHE_TYPESAFE_BY_RCU : 0;
	void (*ctor)(void *) = kind != 1 ? shh_ctor : NULL;
	if ((r >> 10) % 32 == 0)
		flags |= 1u << 7;
	/* Out of the guarded pool (rv123 samples these caches): the model
	 * admits a guarded object as a plain request's, whose usable size
	 * such an object refuses; modelling them is left open. */
	flags |= OBJCACHE_SKIP_GUARD;
	char name[OBJCACHE_NAME_MAX + 1];
	snprintf(name, sizeof(name), "shh-o%u-%lu", k, ++h->cache_made);
	uint64_t inj = atomic_load(&h->sh.fail.injected);
	const char *why = refusal_of(align, flags);
	shh_log_begin();
	struct objcache *c =
	        objcache_create_flags(&h->sh, name, size, align, flags, ctor);
	bool said = shh_log_end(why ? why : "objcache");
	/* Refused for why, unless a failure injected refused it first */
	bool injected = atomic_load(&h->sh.fail.injected) != inj;
	if (why && (c || (!injected && !said)))
		return shh_fail(h,
		                "cache %s (%zu bytes, align %zu, flags %#x): "
		                "%s, not refused for \"%s\"",
		                name, size, align, flags,
		                c ? "made" : mm_port_last_log(), why);
	if (!c)
		return why || injected || h->cfg.may_run_out
		               ? true
		               : shh_fail(h, "cache %s of %zu bytes: %s", name,
		                          size, mm_port_last_log());
	struct objcache_info in;
	struct objcache_slabs sl;
	objcache_info(c, &in);
	objcache_slabs_info(c, &sl);
	if (!c->own || in.live || in.size != size || in.sizeclass ||
	    strcmp(in.name, name) || sl.slabs || sl.flags != flags ||
	    sl.ctor != (ctor != NULL))
		return shh_fail(h,
		                "new cache %s (flags %#x, ctor %d): listed "
		                "wrong",
		                name, flags, ctor != NULL);
	h->caches[k] = c;
	h->cache_size[k] = size;
	h->cache_align[k] = align;
	h->cache_ctor[k] = ctor != NULL;
	h->cache_live[k] = 0;
	h->n.own_caches++;
	return true;
}

bool shh_own_alloc_zero(struct spanheap_harness *h, unsigned k, unsigned flags)
{
	shh_log_begin();
	mm_port_set_atomic(flags & MM_ATOMIC);
	void *p = objcache_alloc(h->caches[k], flags);
	mm_port_set_atomic(false);
	if (!shh_log_end("MM_ZERO") || p)
		return shh_fail(h, "MM_ZERO from ctor cache %s: %p, \"%s\"",
		                h->caches[k]->name, p, mm_port_last_log());
	return true;
}

/* The grace periods queued run (the POSIX port's fake: a test's). */
static void grace_period(void)
{
#ifdef MM_PORT_RCU
	mm_port_posix_rcu_advance();
#endif
}

/* A live object of own cache k (not a pool's), or SIZE_MAX. */
static size_t own_object(struct spanheap_harness *h, unsigned k, uint64_t r)
{
	for (size_t n = 0, i = h->nlive ? r % h->nlive : 0; n < h->nlive;
	     n++, i = (i + 1) % h->nlive)
		if (h->live[i].cache == k + 1 && !h->live[i].pool)
			return i;
	return SIZE_MAX;
}

/* Object i of own cache k freed to it twice (the second must panic
 * naming it, a double free), or an interior pointer of it freed (must
 * panic naming the pointer, and change nothing). */
static bool misuse(struct spanheap_harness *h, unsigned k, size_t i, bool twice)
{
	struct objcache *c = h->caches[k];
	struct shh_obj o = h->live[i];
	if (!shh_verify(h, &o))
		return false;
	void *p = (void *)o.p, *q = (char *)p + (twice ? 0 : 8);
	if (twice) {
		objcache_free(c, p);
		h->cache_live[k]--;
		shh_forget(h, i);
	}
	bool fired = MM_PORT_PANICS(objcache_free(c, q));
	sh_unpin_after_panic();
	char name[32];
	snprintf(name, sizeof(name), "%p", q);
	/* A double free whose first emptied the slab, released since,
	 * is the heap's stale pointer, "freed since" */
	if (!fired || !strstr(mm_port_last_panic(), name) ||
	    !(twice ? shh_names_a_dead_object(q)
	            : strstr(mm_port_last_panic(), "interior") != NULL))
		return shh_fail(h, "%s of %p to own cache %s: %s",
		                twice ? "double free" : "interior pointer", q,
		                c->name,
		                fired ? mm_port_last_panic() : "no panic");
	h->n.panics++;
	return twice || shh_verify(h, &o);
}

bool shh_own_op(struct spanheap_harness *h, unsigned k, uint64_t r)
{
	struct objcache *c = h->caches[k];
	switch (r % 4) {
	case 0:
		objcache_shrink_all(&h->sh);
		break;
	case 1:
		if (c)
			objcache_shrink(c);
		break;
	default:
		if (!c || !c->own)
			break;
		size_t i = own_object(h, k, r >> 3);
		if (i != SIZE_MAX)
			return misuse(h, k, i, r % 4 == 2);
	}
	if ((r >> 2) % 2)
		grace_period();
	return true;
}

bool shh_own_check(struct spanheap_harness *h, size_t *objs, size_t *pages)
{
	for (unsigned k = 0; k < SHH_NCACHES; k++) {
		struct objcache *c = h->caches[k];
		if (!c || !c->own)
			continue;
		if (!objcache_own_check(c))
			return shh_fail(h, "objcache_own_check of %s: %s",
			                c->name, mm_port_last_log());
		struct objcache_slabs sl;
		objcache_slabs_info(c, &sl);
		*objs += sl.slabs + sl.pending;
		*pages += (sl.slabs + sl.pending) * sl.slab_pages;
	}
	return true;
}
