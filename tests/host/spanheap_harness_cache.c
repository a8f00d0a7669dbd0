/*
 * tests/host/spanheap_harness_cache.c: the span heap harness's named
 * caches (mm/objcache.h): three made with the heap (a small class, an
 * aligned one, a large one), objects had from them under the same checks
 * as a plain request's (SHH_CACHE) and freed through them, by whichever
 * operation frees a live object, their counts held to the model's at
 * every check, and their destruction at the drain.
 */
#include <string.h>

#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"

static const struct {
	const char *name;
	size_t size, align;
} caches[SHH_NCACHES] = {
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
	for (unsigned k = 0; k < SHH_NCACHES; k++) {
		h->caches[k] = objcache_create(&h->sh, caches[k].name,
		                               caches[k].size, caches[k].align);
		if (!h->caches[k])
			return shh_fail(h, "cannot make cache %s: %s",
			                caches[k].name, mm_port_last_log());
	}
	h->guard_extra = in_use(h, h->class_extra) - guarded;
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++)
		h->class_extra[cls] -= before[cls];
	return true;
}

bool shh_cache_alloc(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	unsigned k = (unsigned)(a % SHH_NCACHES);
	uint64_t r = shh_mix(b);
	unsigned flags = ((r & 1) ? MM_ZERO : 0) |
	                 ((r >> 1) % 16 == 0 ? MM_ATOMIC : 0) |
	                 ((r >> 5) % 32 == 0 ? MM_NO_GROW : 0);
	size_t size = caches[k].size;
	if (!h->caches[k] || h->nlive >= h->cfg.max_live ||
	    h->live_bytes + size > h->cfg.max_live_bytes)
		return h->nlive ? shh_free_at(h, (size_t)(r >> 10) % h->nlive)
		                : true;
	size_t grown = shh_call_begin(h, flags);
	void *p = objcache_alloc(h->caches[k], flags);
	if (!shh_call_end(h, flags, grown, "cache alloc", size, p))
		return false;
	if (!p)
		return shh_refusal_ok(h, flags, size);
	size_t align = caches[k].align ? caches[k].align : 16;
	unsigned what = ((flags & MM_ZERO) ? SHH_A_ZERO : 0) |
	                (caches[k].align ? 0 : SHH_A_PLAIN);
	if (!shh_admit(h, p, size, align, what))
		return false;
	h->live[h->nlive - 1].cache = (uint8_t)(k + 1);
	h->cache_live[k]++;
	return true;
}

void shh_free_raw(struct spanheap_harness *h, const struct shh_obj *o)
{
	if (o->cache)
		objcache_free(h->caches[o->cache - 1], (void *)o->p);
	else
		spanheap_free(&h->sh, (void *)o->p);
}

bool shh_free_at(struct spanheap_harness *h, size_t i)
{
	struct shh_obj o = h->live[i];
	if (!shh_verify(h, &o))
		return false;
	shh_free_raw(h, &o);
	if (o.cache)
		h->cache_live[o.cache - 1]--;
	shh_forget(h, i);
	return true;
}

bool shh_caches_check(struct spanheap_harness *h)
{
	for (unsigned k = 0; k < SHH_NCACHES; k++) {
		if (!h->caches[k])
			continue;
		struct objcache_info in;
		objcache_info(h->caches[k], &in);
		if (in.live != (int64_t)h->cache_live[k])
			return shh_fail(h,
			                "cache %s counts %lld objects, the "
			                "model %zu",
			                in.name, (long long)in.live,
			                h->cache_live[k]);
	}
	return true;
}

bool shh_caches_destroy(struct spanheap_harness *h)
{
	for (unsigned k = 0; k < SHH_NCACHES; k++) {
		if (h->caches[k] && !objcache_destroy(h->caches[k]))
			return shh_fail(h, "cache %s not destroyed: %s",
			                caches[k].name, mm_port_last_log());
		h->caches[k] = NULL;
	}
	memset(h->class_extra, 0, sizeof(h->class_extra));
	h->guard_extra = 0;
	return true;
}
