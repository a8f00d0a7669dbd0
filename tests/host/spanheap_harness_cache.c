/*
 * tests/host/spanheap_harness_cache.c: the span heap harness's named
 * caches (mm/objcache.h): three made with the heap (a small class, an
 * aligned one, a large one) and more made and destroyed by SHH_CACHE_MAKE
 * (assorted sizes and alignments, bad arguments, destroys refused while
 * objects are out, a destroyed cache's destroy; half of those made with
 * slabs of their own, and shrinks and their misuse:
 * spanheap_harness_own.c), objects had from them
 * under the same checks as a plain request's (SHH_CACHE) and freed
 * through them, by whichever operation frees a live object, their counts
 * held to the model's at every check, and their destruction at the drain.
 */
#include <stdio.h>
#include <string.h>

#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_harness_pool.h"
#include "spanheap_test_util.h"

static const struct {
	const char *name;
	size_t size, align;
} caches[SHH_NCACHES_FIXED] = {
        {"shh-24", 24, 0},
        {"shh-200-a64", 200, 64},
        {"shh-40000", 40000, 0},
};

/* The objects of each class in use now (one thread: exact), and the
 * guarded pool's. */
static size_t in_use(struct spanheap_harness *h, size_t *n)
{
	static struct spanheap_stats st; /* large: not on the stack */
	spanheap_stats(&h->sh, &st);
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++)
		n[cls] = st.cls[cls].objects_in_use;
	return st.guard_live;
}

bool shh_caches_make(struct spanheap_harness *h)
{
	size_t before[SC_NCLASSES];
	size_t guarded = in_use(h, before);
	for (unsigned k = 0; k < SHH_NCACHES_FIXED; k++) {
		h->caches[k] = objcache_create(&h->sh, caches[k].name,
		                               caches[k].size, caches[k].align);
		if (!h->caches[k])
			return shh_fail(h, "cannot make cache %s: %s",
			                caches[k].name, mm_port_last_log());
		h->cache_size[k] = caches[k].size;
		h->cache_align[k] = caches[k].align;
	}
	h->guard_extra = in_use(h, h->class_extra) - guarded;
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++)
		h->class_extra[cls] -= before[cls];
	return true;
}

/* The slot of the live cache a picks (a modulo their number), or
 * SHH_NCACHES if there is none: with the fixed caches alone, a's. */
unsigned shh_live_cache(struct spanheap_harness *h, uint64_t a)
{
	unsigned n = 0;
	for (unsigned k = 0; k < SHH_NCACHES; k++)
		n += h->caches[k] != NULL;
	if (!n)
		return SHH_NCACHES;
	unsigned want = (unsigned)(a % n);
	for (unsigned k = 0; k < SHH_NCACHES; k++)
		if (h->caches[k] && want-- == 0)
			return k;
	return SHH_NCACHES;
}

bool shh_cache_alloc(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	unsigned k = shh_live_cache(h, a);
	uint64_t r = shh_mix(b);
	unsigned flags = ((r & 1) ? MM_ZERO : 0) |
	                 ((r >> 1) % 16 == 0 ? MM_ATOMIC : 0) |
	                 ((r >> 5) % 32 == 0 ? MM_NO_GROW : 0);
	size_t size = k < SHH_NCACHES ? h->cache_size[k] : 0;
	if (k == SHH_NCACHES || h->nlive >= h->cfg.max_live ||
	    h->live_bytes + size > h->cfg.max_live_bytes)
		return h->nlive ? shh_free_at(h, (size_t)(r >> 10) % h->nlive)
		                : true;
	if ((flags & MM_ZERO) && h->cache_ctor[k])
		return shh_own_alloc_zero(h, k, flags);
	size_t grown = shh_call_begin(h, flags);
	void *p = objcache_alloc(h->caches[k], flags);
	if (!shh_call_end(h, flags, grown, "cache alloc", size, p))
		return false;
	if (!p)
		return shh_refusal_ok(h, flags, size);
	size_t align = h->cache_align[k] > 16 ? h->cache_align[k] : 16;
	unsigned what = ((flags & MM_ZERO) ? SHH_A_ZERO : 0) |
	                (h->cache_align[k] > 16 ? 0 : SHH_A_PLAIN);
	if (!shh_admit(h, p, size, align, what))
		return false;
	h->live[h->nlive - 1].cache = (uint8_t)(k + 1);
	h->cache_live[k]++;
	return true;
}

void shh_free_raw(struct spanheap_harness *h, const struct shh_obj *o)
{
	if (o->pool)
		mempool_free(&h->pools->p[o->pool - 1].mp, (void *)o->p);
	else if (o->cache)
		objcache_free(h->caches[o->cache - 1], (void *)o->p);
	else
		spanheap_free(&h->sh, (void *)o->p);
}

bool shh_free_at(struct spanheap_harness *h, size_t i)
{
	if (h->live[i].pool)
		return shh_pool_free_at(h, i);
	struct shh_obj o = h->live[i];
	if (!shh_verify(h, &o))
		return false;
	shh_free_raw(h, &o);
	if (o.cache)
		h->cache_live[o.cache - 1]--;
	shh_forget(h, i);
	return true;
}

/* The listing: the live caches, in creation order (not the slots'),
 * with their names and counts. */
static bool list_check(struct spanheap_harness *h)
{
	struct objcache_info in[SHH_NCACHES + 1];
	size_t n = objcache_list(&h->sh, in, SHH_NCACHES + 1), live = 0;
	for (unsigned k = 0; k < SHH_NCACHES; k++) {
		if (!h->caches[k])
			continue;
		live++;
		size_t i = 0;
		while (i < n && i <= SHH_NCACHES &&
		       strcmp(in[i].name, h->caches[k]->name))
			i++;
		if (i == n || i > SHH_NCACHES ||
		    in[i].live != (int64_t)shh_cache_expected(h, k))
			return shh_fail(h,
			                "cache %s listed wrong or not at all "
			                "(%lld out, the model %zu)",
			                h->caches[k]->name,
			                i < n ? (long long)in[i].live : -1LL,
			                shh_cache_expected(h, k));
	}
	if (n != live)
		return shh_fail(h, "%zu caches listed, the model %zu", n, live);
	return true;
}

bool shh_caches_check(struct spanheap_harness *h)
{
	if (!list_check(h))
		return false;
	for (unsigned k = 0; k < SHH_NCACHES; k++) {
		if (!h->caches[k])
			continue;
		struct objcache_info in;
		objcache_info(h->caches[k], &in);
		if (in.live != (int64_t)shh_cache_expected(h, k))
			return shh_fail(h,
			                "cache %s counts %lld objects, the "
			                "model %zu",
			                in.name, (long long)in.live,
			                shh_cache_expected(h, k));
	}
	return true;
}

bool shh_caches_destroy(struct spanheap_harness *h)
{
	for (unsigned k = 0; k < SHH_NCACHES; k++) {
		if (h->caches[k] && !objcache_destroy(h->caches[k]))
			return shh_fail(h, "cache %u not destroyed: %s", k,
			                mm_port_last_log());
		h->caches[k] = NULL;
	}
	memset(h->class_extra, 0, sizeof(h->class_extra));
	h->guard_extra = 0;
	return true;
}

size_t shh_cache_expected(struct spanheap_harness *h, unsigned k)
{
	return h->cache_live[k] + shh_pools_reserved_of(h, k);
}

bool shh_panic_says(const char *what)
{
	return strstr(mm_port_last_panic(), what) != NULL;
}

/* Bad arguments (no name, a name too long or taken, size 0, a bad
 * alignment): refused, logged; but for the taken name (found under the
 * lock, after the struct is had), with no metadata asked for (failure
 * injection counts nothing). */
static bool make_bad(struct spanheap_harness *h, uint64_t r)
{
	static const char long_name[] = "shh-a-name-longer-than-31-characters";
	unsigned k = shh_live_cache(h, r >> 8);
	const char *name = "shh-bad";
	size_t size = 64, align = 0;
	switch (r % 4) {
	case 0:
		name = (r >> 4) % 2 ? "" : long_name;
		break;
	case 1:
		size = 0;
		break;
	case 2:
		align = (r >> 4) % 2 ? 48 : 3 * MM_PAGE_SIZE / 2;
		break;
	default:
		if (k == SHH_NCACHES)
			return true;
		name = h->caches[k]->name; /* taken */
	}
	uint64_t calls = atomic_load(&h->sh.fail.calls);
	struct objcache *c = objcache_create(&h->sh, name, size, align);
	if (c)
		return shh_fail(h,
		                "cache '%s' of %zu bytes aligned to %zu: made",
		                name, size, align);
	if (r % 4 != 3 && atomic_load(&h->sh.fail.calls) != calls)
		return shh_fail(h, "a refused cache was counted by failure "
		                   "injection");
	return true;
}

/* A cache in empty slot k: a size as a request's, an alignment of 0 to
 * two pages. NULL only for an injected failure. */
static bool make_in(struct spanheap_harness *h, unsigned k, uint64_t a,
                    uint64_t r)
{
	static const size_t aligns[] = {0, 8, 16, 32, 64, 256, 4096, 8192};
	size_t size = 1 + (size_t)(a >> 8) % SC_MAX_SIZE;
	if (r % 8 == 0)
		size = SC_MAX_SIZE + 1 + (size_t)(a >> 8) % (256 << 10);
	else if (r % 8 < 3)
		size = 1 + (size_t)(a >> 8) % 512;
	size_t align = aligns[(r >> 3) % 8];
	char name[OBJCACHE_NAME_MAX + 1];
	snprintf(name, sizeof(name), "shh-d%u-%lu", k, ++h->cache_made);
	uint64_t inj = atomic_load(&h->sh.fail.injected);
	struct objcache *c = objcache_create(&h->sh, name, size, align);
	if (!c) {
		if (atomic_load(&h->sh.fail.injected) != inj ||
		    h->cfg.may_run_out)
			return true;
		return shh_fail(h, "cache %s of %zu bytes aligned to %zu: %s",
		                name, size, align, mm_port_last_log());
	}
	struct objcache_info in;
	objcache_info(c, &in);
	if (in.live != 0 || in.size != size || strcmp(in.name, name))
		return shh_fail(h,
		                "new cache %s: listed as %s, %zu bytes, %lld "
		                "out",
		                name, in.name, in.size, (long long)in.live);
	h->caches[k] = c;
	h->cache_size[k] = size;
	h->cache_align[k] = align;
	h->cache_ctor[k] = false;
	h->cache_live[k] = 0;
	return true;
}

/* The destroyed cache of slot k destroyed again, given the heap: panics,
 * saying it is none of the heap's (not if its struct is a live cache's
 * now: that destroy would be of the newer cache). */
static bool destroy_gone(struct spanheap_harness *h, unsigned k)
{
	struct objcache *c = h->cache_gone[k];
	for (unsigned j = 0; j < SHH_NCACHES; j++)
		if (!c || h->caches[j] == c)
			return true;
	bool fired = MM_PORT_PANICS(objcache_destroy_in(&h->sh, c));
	if (!fired || !shh_panic_says("no cache of the heap's"))
		return shh_fail(h, "destroy of destroyed cache %p: %s",
		                (void *)c,
		                fired ? mm_port_last_panic() : "no panic");
	h->n.panics++;
	return true;
}

/* Destroys the cache of slot k (with _in at times): refused exactly while
 * the model holds objects of it; at times its own objects are freed
 * first. */
static bool destroy_at(struct spanheap_harness *h, unsigned k, uint64_t r)
{
	if (r % 2)
		for (size_t i = h->nlive; i-- > 0;)
			if (h->live[i].cache == k + 1 && !h->live[i].pool &&
			    !shh_free_at(h, i))
				return false;
	size_t want = shh_cache_expected(h, k);
	struct objcache *c = h->caches[k];
	bool ok = (r >> 1) % 2 ? objcache_destroy_in(&h->sh, c)
	                       : objcache_destroy(c);
	if (ok != (want == 0))
		return shh_fail(h,
		                "destroy of cache %u with %zu objects out: %s",
		                k, want, ok ? "done" : mm_port_last_log());
	if (ok) {
		h->caches[k] = NULL;
		h->cache_gone[k] = c;
	}
	return true;
}

/* A live object that is not cache k's freed to it: panics, naming the
 * cache, where the cache can tell (another class; in poison mode, for a
 * small cache, another owner), and changes nothing. */
static bool free_wrong(struct spanheap_harness *h, unsigned k, uint64_t r)
{
	struct objcache *c = h->caches[k];
	if (!c || !h->nlive)
		return true;
	const struct shh_obj *o = &h->live[r % h->nlive];
	/* A cache with slabs of its own tells every object not its own;
	 * an own cache's object is in a large span (class 0). */
	bool owned = (h->cfg.poison && c->sizeclass) || c->own;
	if (o->guard || o->cache == k + 1 ||
	    (o->sizeclass == c->sizeclass && !owned))
		return true;
	bool fired = MM_PORT_PANICS(objcache_free(c, (void *)o->p));
	sh_unpin_after_panic();
	/* An own cache's object to a merged cache: the span heap's checks
	 * panic first, naming the object's cache alone (spanheap_span.c) */
	const char *own_name = o->own ? h->caches[o->cache - 1]->name : "";
	bool named = o->own && !c->own ? shh_panic_says(own_name)
	                               : shh_panic_says("objcache: free of") &&
	                                         shh_panic_says(c->name) &&
	                                         shh_panic_says(own_name);
	if (!fired || !named)
		return shh_fail(h,
		                "free of %#lx (class %u) to cache %s (class "
		                "%u): %s",
		                (unsigned long)o->p, o->sizeclass, c->name,
		                c->sizeclass,
		                fired ? mm_port_last_panic() : "no panic");
	h->n.panics++;
	return shh_verify(h, o);
}

/* The heap filled to OBJCACHE_MAX caches (the counters' last slot in
 * use): exactly as many made as there is room for, unless a failure was
 * injected, then one more refused saying why; an object of the last
 * counted and given back; all of them destroyed. */
static bool fill_all(struct spanheap_harness *h)
{
	static struct objcache *extra[OBJCACHE_MAX];
	size_t live = 0, n = 0;
	for (unsigned k = 0; k < SHH_NCACHES; k++)
		live += h->caches[k] != NULL;
	uint64_t inj = atomic_load(&h->sh.fail.injected);
	for (; n < OBJCACHE_MAX; n++) {
		char name[OBJCACHE_NAME_MAX + 1];
		snprintf(name, sizeof(name), "shh-fill-%zu", n);
		if (!(extra[n] = objcache_create(&h->sh, name, 32, 0)))
			break;
	}
	bool injected = atomic_load(&h->sh.fail.injected) != inj;
	bool ok = n == OBJCACHE_MAX - live ||
	          (injected && n < OBJCACHE_MAX - live);
	if (ok && n == OBJCACHE_MAX - live && !injected)
		ok = strstr(mm_port_last_log(), "OBJCACHE_MAX") != NULL;
	struct objcache_info in = {0};
	if (ok && n) {
		void *o = objcache_alloc(extra[n - 1], MM_ZERO);
		objcache_info(extra[n - 1], &in);
		ok = !o || in.live == 1;
		objcache_free(extra[n - 1], o);
		objcache_info(extra[n - 1], &in);
		ok = ok && in.live == 0;
	}
	for (size_t i = 0; i < n; i++)
		ok = objcache_destroy(extra[i]) && ok;
	if (!ok)
		return shh_fail(h,
		                "%zu caches made beside %zu (room for %zu), "
		                "the last counting %lld: %s",
		                n, live, OBJCACHE_MAX - live,
		                (long long)in.live, mm_port_last_log());
	return true;
}

bool shh_cache_make(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	uint64_t r = shh_mix(b);
	unsigned k = (unsigned)(a % SHH_NCACHES);
	if (r % 16 == 0)
		return make_bad(h, r >> 4);
	if (r % 16 == 1)
		return destroy_gone(h, k);
	if (r % 16 == 2)
		return free_wrong(h, k, r >> 4);
	if (r % 64 == 3)
		return fill_all(h);
	if (r % 16 == 4)
		return shh_own_op(h, k, r >> 4);
	if (!h->caches[k])
		return (r >> 4) % 2 ? make_in(h, k, a, r >> 5)
		                    : shh_own_make(h, k, a, r >> 5);
	return destroy_at(h, k, r >> 4);
}
