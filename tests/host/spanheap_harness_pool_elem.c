/*
 * tests/host/spanheap_harness_pool_elem.c: the span heap harness's pools'
 * elements (spanheap_harness_pool.c has the pools' set-up and the model's
 * rules): an allocation from a pool, a free to it, a double free, and at
 * every check each reserve's elements against the model and the heap's
 * statistics; the pools' destruction at the drain.
 */
#include <stdio.h>
#include <string.h>

#include "../../mm/spanheap_where.h"
#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_harness_pool.h"
#include "spanheap_test_util.h"

/* The live pool a picks (a modulo their number), or NULL. */
static struct shh_pool *live_pool(struct spanheap_harness *h, uint64_t a)
{
	unsigned n = 0;
	for (unsigned j = 0; j < SHH_NPOOLS; j++)
		n += h->pools->p[j].live;
	unsigned want = n ? (unsigned)(a % n) : 0;
	for (unsigned j = 0; j < SHH_NPOOLS; j++)
		if (h->pools->p[j].live && want-- == 0)
			return &h->pools->p[j];
	return NULL;
}

/* An allocation's result e from p (was: p's counts before it) against
 * the model; then e joins the live objects. */
static bool took(struct spanheap_harness *h, struct shh_pool *p, void *e,
                 unsigned flags, const struct mempool_info *was)
{
	struct mempool_info now = shh_pool_info(p);
	bool reserve = now.from_reserve != was->from_reserve;
	if (!e) {
		if (!(flags & MM_ATOMIC) || was->curr != 0 ||
		    now.atomic_fails != was->atomic_fails + 1)
			return shh_fail(h, "pool %s (flags %#x, %u held): NULL",
			                p->mp.name, flags, was->curr);
		h->n.refused++;
		return true;
	}
	if (now.out != was->out + 1 ||
	    now.curr != was->curr - (reserve ? 1 : 0) ||
	    now.from_reserve > was->from_reserve + 1)
		return shh_fail(
		        h,
		        "pool %s's element %p: out %lld -> %lld, held "
		        "%u -> %u, %lu from the reserve",
		        p->mp.name, e, (long long)was->out, (long long)now.out,
		        was->curr, now.curr,
		        (unsigned long)(now.from_reserve - was->from_reserve));
	unsigned what = (flags & MM_ZERO ? SHH_A_ZERO_ASKED : 0) |
	                (p->align ? 0 : SHH_A_PLAIN) |
	                (p->kind == SHH_POOL_CACHE ? 0 : SHH_A_POW2);
	if (!shh_admit(h, e, p->size, p->align ? p->align : 16, what))
		return false;
	struct shh_obj *o = &h->live[h->nlive - 1];
	o->pool = (uint8_t)(p - h->pools->p + 1);
	if (p->kind == SHH_POOL_CACHE) {
		o->cache = (uint8_t)(p->cache + 1);
		h->cache_live[p->cache]++;
	}
	p->out++;
	return true;
}

/* A sleeping caller's allocation from source pool p with its reserve
 * empty and its source dry for its next k calls: the first ask and k - 1
 * rounds of alloc_waiting fail, each round asleep for the pool's period
 * (made 1 ms: no free comes, one thread), the next gets the element. */
static bool waited(struct spanheap_harness *h, struct shh_pool *p,
                   unsigned flags, unsigned k)
{
	struct mempool_info was = shh_pool_info(p);
	p->dry_calls = k;
	p->mp.wait_ns = 1000 * 1000;
	void *e = mempool_alloc(&p->mp, flags);
	struct mempool_info now = shh_pool_info(p);
	p->dry_calls = 0;
	if (!e || now.waits != was.waits + k - 1 ||
	    now.timeouts != was.timeouts + k - 1)
		return shh_fail(h,
		                "pool %s, source dry for %u calls: %p after "
		                "%lu sleeps (%lu ended by the period)",
		                p->mp.name, k, e,
		                (unsigned long)(now.waits - was.waits),
		                (unsigned long)(now.timeouts - was.timeouts));
	return took(h, p, e, flags, &was);
}

bool shh_pool_alloc(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	struct shh_pool *p = live_pool(h, a);
	uint64_t r = shh_mix(b);
	if (!p || h->nlive >= h->cfg.max_live ||
	    h->live_bytes + p->size > h->cfg.max_live_bytes)
		return h->nlive ? shh_free_at(h, (size_t)(r >> 20) % h->nlive)
		                : true;
	struct mempool_info was = shh_pool_info(p);
	unsigned flags = (r & 1 ? MM_ZERO : 0) |
	                 ((r >> 1) % 16 == 0 ? MM_NO_GROW : 0) |
	                 ((r >> 5) % 4 == 0 || !was.curr ? MM_ATOMIC : 0);
	/* A flag no allocation takes, or MM_ZERO from a ctor cache's
	 * (mempool.h): NULL, nothing counted. */
	bool zero_ctor = (flags & MM_ZERO) && p->kind == SHH_POOL_CACHE &&
	                 h->cache_ctor[p->cache];
	if ((r >> 7) % 64 == 0 || zero_ctor) {
		void *e = mempool_alloc(&p->mp,
		                        flags | (zero_ctor ? 0 : 1u << 30));
		struct mempool_info now = shh_pool_info(p);
		if (e || now.out != was.out || now.curr != was.curr ||
		    now.atomic_fails != was.atomic_fails)
			return shh_fail(h,
			                "pool %s: a bad flag's allocation "
			                "got %p or changed it",
			                p->mp.name, e);
		return true;
	}
	/* Not while the heap may fail the source's calls for ever (failure
	 * injection armed, an arena that runs out): one thread would wait
	 * for ever. */
	if (p->kind == SHH_POOL_SRC && !was.curr && !p->dry && !h->armed &&
	    !h->cfg.may_run_out && (r >> 13) % 4 == 0)
		return waited(h, p, flags & ~(unsigned)MM_ATOMIC,
		              1 + (unsigned)(r >> 15) % 3);
	mm_port_set_atomic(flags & MM_ATOMIC);
	void *e = mempool_alloc(&p->mp, flags);
	mm_port_set_atomic(false);
	return took(h, p, e, flags, &was);
}

bool shh_pool_free_at(struct spanheap_harness *h, size_t i)
{
	struct shh_obj o = h->live[i];
	struct shh_pool *p = &h->pools->p[o.pool - 1];
	if (!shh_verify(h, &o))
		return false;
	struct mempool_info was = shh_pool_info(p);
	unsigned long gone = p->src_frees;
	mempool_free(&p->mp, (void *)o.p);
	struct mempool_info now = shh_pool_info(p);
	bool kept = was.curr < was.min;
	if (now.out != was.out - 1 || now.curr != was.curr + kept ||
	    now.refills != was.refills + kept ||
	    (p->kind == SHH_POOL_SRC && p->src_frees != gone + !kept))
		return shh_fail(h,
		                "free of %#lx to pool %s (%u of %u held): out "
		                "%lld -> %lld, held %u, %lu refills more",
		                (unsigned long)o.p, p->mp.name, was.curr,
		                was.min, (long long)was.out, (long long)now.out,
		                now.curr,
		                (unsigned long)(now.refills - was.refills));
	if (o.cache)
		h->cache_live[o.cache - 1]--;
	p->out--;
	shh_forget(h, i);
	return true;
}

bool shh_pool_double_free(struct spanheap_harness *h, size_t i)
{
	struct shh_obj o = h->live[i];
	struct shh_pool *p = &h->pools->p[o.pool - 1];
	struct mempool_info was = shh_pool_info(p);
	/* A caller's source gets no heap checks: an element it was given
	 * back is not told (mempool.h). */
	bool kept = was.curr < was.min;
	if (!shh_pool_free_at(h, i))
		return false;
	if (p->kind == SHH_POOL_SRC && !kept)
		return true;
	was = shh_pool_info(p);
	bool fired = MM_PORT_PANICS(mempool_free(&p->mp, (void *)o.p));
	sh_unpin_after_panic();
	if (!fired || !shh_names_a_dead_object((void *)o.p))
		return shh_fail(h, "second free of %#lx to pool %s: %s",
		                (unsigned long)o.p, p->mp.name,
		                fired ? mm_port_last_panic() : "no panic");
	struct mempool_info now = shh_pool_info(p);
	if (now.out != was.out || now.curr != was.curr)
		return shh_fail(h,
		                "pool %s: a double free changed it (out %lld "
		                "-> %lld, held %u -> %u)",
		                p->mp.name, (long long)was.out,
		                (long long)now.out, was.curr, now.curr);
	h->n.panics++;
	return true;
}

size_t shh_pools_reserved_of(struct spanheap_harness *h, unsigned k)
{
	size_t n = 0;
	for (unsigned j = 0; h->pools && j < SHH_NPOOLS; j++) {
		struct shh_pool *p = &h->pools->p[j];
		if (p->live && p->kind == SHH_POOL_CACHE && p->cache == k)
			n += shh_pool_info(p).curr;
	}
	return n;
}

/* The reserve's element e of p, as the heap sees it, counted into the
 * statistics' extras. */
static bool reserve_elem(struct spanheap_harness *h, struct shh_pool *p,
                         void *e, size_t *extra, size_t *guard_extra,
                         size_t *large_pages)
{
	struct spanheap_where w;
	struct objcache *c =
	        p->kind == SHH_POOL_CACHE ? h->caches[p->cache] : NULL;
	if (c && c->own) /* its slab's span: the cache's, shh_own_check */
		return !shh_overlaps_live(h, (uintptr_t)e, c->objsize)
		               ? true
		               : shh_fail(h,
		                          "pool %s: reserve element %p "
		                          "overlaps a live object",
		                          p->mp.name, e);
	if (!spanheap_where(&h->sh, e, &w))
		return shh_fail(h, "pool %s: reserve element %p not the heap's",
		                p->mp.name, e);
	size_t usable = spanheap_usable_size(&h->sh, e);
	if (shh_overlaps_live(h, (uintptr_t)e, usable))
		return shh_fail(h,
		                "pool %s: reserve element %p (%zu bytes) "
		                "overlaps a live object",
		                p->mp.name, e, usable);
	if (w.kind == SPANHEAP_WHERE_GUARD)
		(*guard_extra)++;
	else
		extra[w.sizeclass]++;
	if (w.kind == SPANHEAP_WHERE_LARGE)
		*large_pages += w.span_pages;
	return true;
}

bool shh_pools_check(struct spanheap_harness *h, size_t *extra,
                     size_t *guard_extra, size_t *large_pages)
{
	for (unsigned j = 0; h->pools && j < SHH_NPOOLS; j++) {
		struct shh_pool *p = &h->pools->p[j];
		if (!p->live)
			continue;
		if (!shh_pool_check_one(h, p))
			return false;
		struct mempool_info in = shh_pool_info(p);
		if (in.min != p->min || in.curr > in.min ||
		    in.out != (int64_t)p->out)
			return shh_fail(
			        h,
			        "pool %s: min %u, %u held, %lld out; the "
			        "model: min %u, %zu out",
			        p->mp.name, in.min, in.curr, (long long)in.out,
			        p->min, p->out);
		for (uint32_t i = 0; i < in.curr; i++)
			if (!reserve_elem(h, p, p->mp.reserve[i], extra,
			                  guard_extra, large_pages))
				return false;
	}
	return true;
}

bool shh_pools_destroy(struct spanheap_harness *h)
{
	for (unsigned j = 0; h->pools && j < SHH_NPOOLS; j++) {
		struct shh_pool *p = &h->pools->p[j];
		if (p->live && !mempool_destroy(&p->mp))
			return shh_fail(h, "pool %s not destroyed: %s",
			                p->mp.name, mm_port_last_log());
		p->live = false;
	}
	return true;
}
