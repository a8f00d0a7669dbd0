/*
 * tests/host/spanheap_harness_pool.c: the span heap harness's pools
 * (mm/mempool.h; spanheap_harness_pool.h): made over the heap, a named
 * cache or a source of the harness's, with reserves of 1 to 300 elements
 * (arrays in the metadata heap's shared pages and on pages of their own),
 * resized, destroyed, misused; their elements live objects of the model,
 * checked as a plain request's or a cache's. A pool over a cache with
 * slabs of its own is unmarked (mempool.h): its misuse is the cache's to
 * name, its reserve's elements are in the cache's slabs, and MM_ZERO on
 * a ctor cache's is refused.
 *
 * Being one thread, the model knows what each call must do: an
 * allocation takes from the reserve only when the source gave nothing
 * (its from_reserve count says which), and gets NULL only with MM_ATOMIC
 * and the reserve empty; a free refills the reserve exactly while it is
 * short; a resize's reserve, a destroy refused exactly while elements are
 * out. An allocation without MM_ATOMIC is made only while the reserve
 * holds an element (else, on one thread, it would wait for ever), or from
 * a source pool's source dry for its next few calls alone (it sleeps a
 * period, 1 ms, for each but the last: spanheap_harness_pool_elem.c's
 * waited). At every
 * check: mempool_check, each pool's counts, and the reserves' elements
 * overlapping no live object, counted into the heap's statistics and
 * their cache's count (spanheap_harness_pool_elem.c: the elements'
 * calls and the checks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_harness_pool.h"
#include "spanheap_test_util.h"

/* ---- The harness's source: the heap's objects, or none while dry -------- */

static void *src_alloc(void *data, unsigned flags)
{
	struct shh_pool *p = data;
	if (p->dry_calls) {
		p->dry_calls--;
		return NULL;
	}
	if (p->dry)
		return NULL;
	return spanheap_alloc(&p->h->sh, p->size, flags);
}

static void src_free(void *data, void *e)
{
	struct shh_pool *p = data;
	p->src_frees++;
	spanheap_free(&p->h->sh, e);
}

static const struct mempool_source src = {src_alloc, src_free};

bool shh_pools_new(struct spanheap_harness *h)
{
	h->pools = calloc(1, sizeof(*h->pools));
	if (!h->pools)
		return shh_fail(h, "no memory for the pools");
	for (unsigned j = 0; j < SHH_NPOOLS; j++)
		h->pools->p[j].h = h;
	return true;
}

void shh_pools_free(struct spanheap_harness *h)
{
	free(h->pools);
	h->pools = NULL;
}

/* The bytes an element of size takes of the heap, about. */
static size_t taken(size_t size)
{
	return size <= SC_MAX_SIZE ? sizeclass_info[sizeclass_of(size)].size
	                           : (size + MM_PAGE_SIZE - 1) / MM_PAGE_SIZE *
	                                     MM_PAGE_SIZE;
}

static size_t reserved_bytes(struct spanheap_harness *h)
{
	size_t n = 0;
	for (unsigned j = 0; j < SHH_NPOOLS; j++)
		if (h->pools->p[j].live)
			n += h->pools->p[j].min * taken(h->pools->p[j].size);
	return n;
}

/* A reserve's size from r: mostly 1 to 8, at times to 64, or to 300 (an
 * array past the shared pages' largest block), cut down so that all the
 * reserves stay within SHH_POOL_RESERVE_BYTES (0: no room). */
static uint32_t pick_min(struct spanheap_harness *h, uint64_t r, size_t size,
                         uint32_t now)
{
	uint32_t min = 1 + (uint32_t)(r >> 3) % 8;
	if (r % 8 >= 5)
		min = 1 + (uint32_t)(r >> 3) % (r % 8 == 7 ? 300 : 64);
	size_t room = SHH_POOL_RESERVE_BYTES - reserved_bytes(h) +
	              (size_t)now * taken(size);
	if ((size_t)min * taken(size) > room)
		min = (uint32_t)(room / taken(size));
	return min;
}

/* Whether the failure of a call that took memory is allowed: an injected
 * failure since inj, an arena that may run out, a dry source. */
static bool may_fail(struct spanheap_harness *h, const struct shh_pool *p,
                     uint64_t inj)
{
	return atomic_load(&h->sh.fail.injected) != inj || h->cfg.may_run_out ||
	       (p->kind == SHH_POOL_SRC && p->dry);
}

/* A pool's calls once it is not set up (a refused init, a destroy): an
 * allocation panics saying so, a destroy is nothing. */
static bool not_set_up(struct spanheap_harness *h, struct shh_pool *p)
{
	bool fired = MM_PORT_PANICS(mempool_alloc(&p->mp, MM_ATOMIC));
	sh_unpin_after_panic();
	if (!fired || !strstr(mm_port_last_panic(), "not set up"))
		return shh_fail(h, "allocation from pool %s, not set up: %s",
		                p->mp.name,
		                fired ? mm_port_last_panic() : "no panic");
	if (!mempool_destroy(&p->mp))
		return shh_fail(h, "destroy of pool %s, not set up: false",
		                p->mp.name);
	h->n.panics++;
	return true;
}

/* Bad arguments: no name, a reserve of 0 or past MEMPOOL_MIN_MAX,
 * elements smaller than a pointer, more than the arena: refused,
 * uncounted by failure injection, the pool not set up. */
static bool init_bad(struct spanheap_harness *h, struct shh_pool *p, uint64_t r)
{
	const char *name = "shh-bad-pool";
	uint32_t min = 2;
	size_t size = 64;
	switch (r % 5) {
	case 0:
		name = "";
		break;
	case 1:
		min = (r >> 3) % 2 ? 0 : MEMPOOL_MIN_MAX + 1;
		break;
	case 2:
		size = 4;
		break;
	case 3:
		size = h->cfg.arena_bytes + 1;
		break;
	default:
		min = MEMPOOL_MIN_MAX;
		size = h->cfg.arena_bytes / MEMPOOL_MIN_MAX + 1;
	}
	uint64_t calls = atomic_load(&h->sh.fail.calls);
	if (mempool_init_heap(&p->mp, &h->sh, name, min, size))
		return shh_fail(h,
		                "pool '%s' of %u elements of %zu bytes: made",
		                name, min, size);
	if (atomic_load(&h->sh.fail.calls) != calls)
		return shh_fail(h, "a refused pool was counted by failure "
		                   "injection");
	return not_set_up(h, p);
}

/* A live cache's slot from r, or SHH_NCACHES. */
static unsigned some_cache(struct spanheap_harness *h, uint64_t r)
{
	for (unsigned i = 0; i < SHH_NCACHES; i++) {
		unsigned k = (unsigned)((r + i) % SHH_NCACHES);
		if (h->caches[k])
			return k;
	}
	return SHH_NCACHES;
}

/* Makes pool p: its kind, element size and reserve from a and r. */
static bool init_pool(struct spanheap_harness *h, struct shh_pool *p,
                      uint64_t a, uint64_t r)
{
	p->kind = (enum shh_pool_kind)(r % 3);
	p->cache = some_cache(h, r >> 2);
	if (p->cache == SHH_NCACHES)
		p->kind = SHH_POOL_HEAP;
	p->size = 8 + (size_t)(a >> 8) % (SC_SMALL_MAX - 7);
	if ((r >> 5) % 8 == 0)
		p->size = 8 + (size_t)(a >> 8) % (SC_MAX_SIZE - 7);
	else if ((r >> 5) % 8 == 1)
		p->size = SC_MAX_SIZE + 1 + (size_t)(a >> 8) % (300 << 10);
	p->align = 0;
	if (p->kind == SHH_POOL_CACHE) {
		p->size = h->cache_size[p->cache];
		p->align = h->cache_align[p->cache] > 16
		                   ? h->cache_align[p->cache]
		                   : 0;
	}
	p->dry = false;
	p->dry_calls = 0;
	p->src_frees = 0;
	p->min = pick_min(h, r >> 8, p->size, 0);
	if (!p->min || p->size < sizeof(void *))
		return true; /* no room, or a cache of tiny objects */
	char name[MEMPOOL_NAME_MAX + 1];
	snprintf(name, sizeof(name), "shh-pool%u-%lu",
	         (unsigned)(p - h->pools->p), ++h->pools->made);
	uint64_t inj = atomic_load(&h->sh.fail.injected);
	bool ok = p->kind == SHH_POOL_HEAP
	                  ? mempool_init_heap(&p->mp, &h->sh, name, p->min,
	                                      p->size)
	          : p->kind == SHH_POOL_CACHE
	                  ? mempool_init_cache(&p->mp, h->caches[p->cache],
	                                       name, p->min)
	                  : mempool_init(&p->mp, &h->sh, name, p->min, p->size,
	                                 &src, p);
	if (!ok)
		return may_fail(h, p, inj)
		               ? not_set_up(h, p)
		               : shh_fail(h, "pool %s (%u of %zu bytes): %s",
		                          name, p->min, p->size,
		                          mm_port_last_log());
	struct mempool_info in = shh_pool_info(p);
	if (in.min != p->min || in.curr != p->min || in.out != 0)
		return shh_fail(h, "new pool %s: min %u, curr %u, out %lld",
		                name, in.min, in.curr, (long long)in.out);
	p->live = true;
	p->out = 0;
	return true;
}

/* Resizes p: to a good size (the model's result), or a bad one
 * (refused, nothing changed). */
static bool resize_pool(struct spanheap_harness *h, struct shh_pool *p,
                        uint64_t r)
{
	uint32_t new_min = pick_min(h, r >> 4, p->size, p->min);
	bool bad = r % 16 == 0 || new_min == 0;
	if (bad)
		new_min = (r >> 4) % 2 ? 0 : MEMPOOL_MIN_MAX + 1;
	struct mempool_info was = shh_pool_info(p);
	uint64_t inj = atomic_load(&h->sh.fail.injected);
	bool ok = mempool_resize(&p->mp, new_min);
	struct mempool_info now = shh_pool_info(p);
	if (!ok && (bad || (new_min > p->min && may_fail(h, p, inj)))) {
		if (now.min != was.min || now.curr != was.curr)
			return shh_fail(h,
			                "pool %s's refused resize to %u "
			                "changed it",
			                p->mp.name, new_min);
		return true;
	}
	if (!ok || bad)
		return shh_fail(h, "resize of pool %s from %u to %u: %s",
		                p->mp.name, p->min, new_min,
		                ok ? "done" : mm_port_last_log());
	uint32_t want = new_min > p->min     ? was.curr + (new_min - p->min)
	                : was.curr < new_min ? was.curr
	                                     : new_min;
	if (now.min != new_min || now.curr != want || now.out != was.out)
		return shh_fail(h,
		                "pool %s resized from %u (%u held) to %u: min "
		                "%u, %u held, not %u",
		                p->mp.name, p->min, was.curr, new_min, now.min,
		                now.curr, want);
	p->min = new_min;
	return true;
}

/* Destroys p: refused exactly while the model holds elements of it; at
 * times its elements are freed first, and a second destroy is nothing. */
static bool destroy_pool(struct spanheap_harness *h, struct shh_pool *p,
                         uint64_t r)
{
	unsigned j = (unsigned)(p - h->pools->p);
	if (r % 2)
		for (size_t i = h->nlive; i-- > 0;)
			if (h->live[i].pool == j + 1 && !shh_free_at(h, i))
				return false;
	bool ok = mempool_destroy(&p->mp);
	if (ok != (p->out == 0))
		return shh_fail(h, "destroy of pool %s with %zu out: %s",
		                p->mp.name, p->out,
		                ok ? "done" : mm_port_last_log());
	if (!ok)
		return true;
	p->live = false;
	return (r >> 1) % 2 ? not_set_up(h, p) : true;
}

bool shh_pool_check_one(struct spanheap_harness *h, struct shh_pool *p)
{
	if (MM_PORT_PANICS(mempool_check(&p->mp))) {
		sh_unpin_after_panic();
		return shh_fail(h, "mempool_check: %s", mm_port_last_panic());
	}
	return true;
}

/* Live object o freed to pool p, whose elements it cannot be (smaller
 * than them; of a cache pool, not the cache's size): panics, naming the
 * pool, and changes nothing. Not tried where it would pass. */
static bool free_foreign(struct spanheap_harness *h, struct shh_pool *p,
                         uint64_t r)
{
	if (!h->nlive || p->kind == SHH_POOL_SRC)
		return true;
	const struct shh_obj *o = &h->live[r % h->nlive];
	struct objcache *c =
	        p->kind == SHH_POOL_CACHE ? h->caches[p->cache] : NULL;
	size_t objsize = c ? c->objsize : 0;
	/* An own cache's pool: the cache's checks, naming it */
	const volatile bool own = c && c->own;
	bool wrong = own ? o->cache != p->cache + 1 && !o->guard
	                 : o->usable < p->size || (c && o->usable != objsize &&
	                                           o->usable != p->size);
	if (!wrong || o->pool == (size_t)(p - h->pools->p) + 1)
		return true;
	struct mempool_info was = shh_pool_info(p);
	bool fired = MM_PORT_PANICS(mempool_free(&p->mp, (void *)o->p));
	sh_unpin_after_panic();
	/* An own cache's object to another pool: the heap's usable size
	 * panics, naming its cache */
	const char *says = own      ? c->name
	                   : o->own ? h->caches[o->cache - 1]->name
	                            : "not an element";
	if (!fired || !strstr(mm_port_last_panic(), says))
		return shh_fail(h, "free of %#lx (%zu usable) to pool %s: %s",
		                (unsigned long)o->p, o->usable, p->mp.name,
		                fired ? mm_port_last_panic() : "no panic");
	struct mempool_info now = shh_pool_info(p);
	if (now.out != was.out || now.curr != was.curr)
		return shh_fail(h, "a refused free changed pool %s",
		                p->mp.name);
	h->n.panics++;
	return shh_verify(h, o);
}

bool shh_pool_op(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	uint64_t r = shh_mix(b);
	struct shh_pool *p = &h->pools->p[a % SHH_NPOOLS];
	if (!p->live)
		return r % 16 == 0 ? init_bad(h, p, r >> 4)
		                   : init_pool(h, p, a, r >> 4);
	switch (r % 16) {
	case 0:
	case 1:
	case 2:
	case 3:
	case 4:
		return resize_pool(h, p, r >> 4);
	case 5:
	case 6:
	case 7:
		return destroy_pool(h, p, r >> 4);
	case 8:
		p->dry = p->kind == SHH_POOL_SRC && !p->dry;
		return shh_pool_check_one(h, p);
	case 9:
		return free_foreign(h, p, r >> 4);
	default:
		return shh_pool_check_one(h, p);
	}
}
