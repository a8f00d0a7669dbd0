/*
 * tests/host/spanheap_harness.c: runs operations on a real span heap and
 * checks each against the model of live objects; see spanheap_harness.h
 * for the model and the list of checks. The model itself (what a new
 * object must be, its fill, what is live) is spanheap_harness_model.c's;
 * the misuse operations and the checks of the whole heap are
 * spanheap_harness_check.c's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_harness_pool.h"
#include "spanheap_test_util.h"

#define PG MM_PAGE_SIZE

static const char *const op_names[SHH_NOPS] = {
        [SHH_ALLOC] = "alloc",
        [SHH_ALIGNED] = "aligned",
        [SHH_CALLOC] = "calloc",
        [SHH_REALLOC] = "realloc",
        [SHH_FREE] = "free",
        [SHH_SWEEP] = "sweep",
        [SHH_FLUSH] = "flush",
        [SHH_CPU] = "cpu",
        [SHH_RELEASE] = "release",
        [SHH_BAD_FREE] = "bad free",
        [SHH_CHECK] = "check",
        [SHH_DOUBLE_FREE] = "double free",
        [SHH_FAIL] = "fail",
        [SHH_CACHE] = "cache",
        [SHH_CACHE_MAKE] = "cache make",
        [SHH_POOL] = "pool",
        [SHH_POOL_ALLOC] = "pool alloc",
        [SHH_SCAVENGE] = "scavenge",
        [SHH_BULK] = "bulk",
};

/* ---- Decoding ------------------------------------------------------------ */

/* A request size: mostly small, some at and next to class sizes, some
 * medium, a few large. */
static size_t decode_size(const struct spanheap_harness *h, uint64_t a)
{
	unsigned kind = a % 16;
	a >>= 4;
	if (kind < 8)
		return a % (SC_SMALL_MAX + 1);
	if (kind < 11) {
		unsigned cls = 1 + (unsigned)(a % (SC_NCLASSES - 1));
		size_t s = sizeclass_info[cls].size;
		return s - 1 + (a >> 6) % 3;
	}
	if (kind < 14)
		return SC_SMALL_MAX + 1 + a % (SC_MAX_SIZE - SC_SMALL_MAX);
	size_t span = kind == 14 ? 4 * SC_MAX_SIZE : h->cfg.max_large;
	if (span > h->cfg.max_large)
		span = h->cfg.max_large;
	return SC_MAX_SIZE + 1 + a % (span - SC_MAX_SIZE);
}

/* Flags: MM_ZERO half the time, MM_ATOMIC 1/16, MM_NO_GROW 1/32. */
static unsigned decode_flags(uint64_t b)
{
	b = shh_mix(b);
	return ((b & 1) ? MM_ZERO : 0) | ((b >> 1) % 16 == 0 ? MM_ATOMIC : 0) |
	       ((b >> 5) % 32 == 0 ? MM_NO_GROW : 0);
}

/* No room for another object of size bytes under the limits. */
static bool full(const struct spanheap_harness *h, size_t size)
{
	return h->nlive >= h->cfg.max_live ||
	       h->live_bytes + size > h->cfg.max_live_bytes;
}

/* ---- Operations ---------------------------------------------------------- */

static bool do_free(struct spanheap_harness *h, uint64_t b)
{
	if (!h->nlive)
		return true;
	return shh_free_at(h, (size_t)(shh_mix(b) % h->nlive));
}

/* The page heap's pages grown so far. */
static size_t grown_pages(struct spanheap_harness *h)
{
	struct mheap_stats st;
	mheap_stats(&h->heap, &st);
	return st.grown_pages;
}

/* Failure injection's counters (spanheap_fail.h): eligible calls and
 * failures injected since the arming. */
static uint64_t fail_calls(const struct spanheap_harness *h)
{
	return atomic_load(&h->sh.fail.calls);
}

static uint64_t fail_injected(const struct spanheap_harness *h)
{
	return atomic_load(&h->sh.fail.injected);
}

/* Runs a call with flags (MM_ATOMIC: the port's atomic context) between
 * the two halves; the second checks the result p: it fails if a call
 * with MM_NO_GROW grew the page heap, or if failure injection's count
 * disagrees with p (a failure injected but p returned, more than one, one
 * unarmed), and notes an injected NULL for shh_refusal_ok. */
size_t shh_call_begin(struct spanheap_harness *h, unsigned flags)
{
	h->fail_calls0 = fail_calls(h);
	h->inj0 = fail_injected(h);
	h->injected = false;
	mm_port_set_atomic(flags & MM_ATOMIC);
	return flags & MM_NO_GROW ? grown_pages(h) : 0;
}

bool shh_call_end(struct spanheap_harness *h, unsigned flags, size_t grown,
                  const char *what, size_t size, const void *p)
{
	mm_port_set_atomic(false);
	uint64_t inj = fail_injected(h) - h->inj0;
	if (inj > 1 || (inj && (p || !h->armed)))
		return shh_fail(h,
		                "%s of %zu bytes (flags %#x) = %p, with %lu "
		                "failures injected%s",
		                what, size, flags, p, (unsigned long)inj,
		                h->armed ? "" : " while disarmed");
	h->injected = inj == 1;
	h->n.injected += inj;
	if (!(flags & MM_NO_GROW) || grown_pages(h) == grown)
		return true;
	return shh_fail(h,
	                "%s of %zu bytes with MM_NO_GROW grew the page heap "
	                "from %zu to %zu pages",
	                what, size, grown, grown_pages(h));
}

/* A refused call (a bad alignment, an impossible size) is not eligible
 * for failure injection: it must not have been counted. */
static bool not_counted(struct spanheap_harness *h, const char *what)
{
	if (fail_calls(h) == h->fail_calls0)
		return true;
	return shh_fail(h, "%s, refused, was counted by failure injection",
	                what);
}

/* An allocation of size bytes got NULL: fine for MM_ATOMIC and
 * MM_NO_GROW, in an arena that may run out, and for an injected failure;
 * a failure otherwise. */
bool shh_refusal_ok(struct spanheap_harness *h, unsigned flags, size_t size)
{
	h->n.refused++;
	if (!(flags & (MM_ATOMIC | MM_NO_GROW)) && !h->cfg.may_run_out &&
	    !h->injected)
		return shh_fail(h, "%zu bytes (flags %#x): NULL", size, flags);
	return true;
}

static unsigned zero_of(unsigned flags)
{
	return flags & MM_ZERO ? SHH_A_ZERO : 0;
}

static bool do_alloc(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	size_t size = decode_size(h, a);
	unsigned flags = decode_flags(b);
	if (full(h, size))
		return do_free(h, b);
	/* Half the calls with flags a caller fixed at compile time could
	 * pass take spanheap_alloc_sized, as the kernel's kmalloc does. */
	bool sized = !(flags & MM_ZERO) && (shh_mix(b) >> 12 & 1);
	size_t grown = shh_call_begin(h, flags);
	void *p = sized ? spanheap_alloc_sized(&h->sh, size, flags)
	                : spanheap_alloc(&h->sh, size, flags);
	if (!shh_call_end(h, flags, grown, sized ? "sized alloc" : "alloc",
	                  size, p))
		return false;
	if (!p)
		return shh_refusal_ok(h, flags, size);
	return shh_admit(h, p, size, 16,
	                 zero_of(flags) | SHH_A_PLAIN | SHH_A_POW2);
}

static bool do_aligned(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	static const size_t bad[] = {0, 3, 48, 100, 6144, 12289};
	static const size_t big[] = {8192, 12288, 65536, (size_t)1 << 20};
	size_t size = decode_size(h, a), align;
	unsigned k = (unsigned)(b % 23), flags = decode_flags(b >> 5);
	if (k < 13)
		align = (size_t)1 << k;
	else if (k < 17)
		align = big[k - 13];
	else
		align = bad[k - 17];
	if (full(h, size + align))
		return do_free(h, b);
	size_t grown = shh_call_begin(h, flags);
	void *p = spanheap_alloc_aligned(&h->sh, size, align, flags);
	if (!shh_call_end(h, flags, grown, "aligned alloc", size, p))
		return false;
	if (k >= 17) {
		if (p)
			return shh_fail(h, "alignment %zu accepted: %p", align,
			                p);
		return not_counted(h, "a bad alignment");
	}
	if (!p)
		return shh_refusal_ok(h, flags, size);
	return shh_admit(h, p, size, align, zero_of(flags) | SHH_A_POW2);
}

static bool do_calloc(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	size_t size = decode_size(h, a), n = 1 + b % 8, m = size / n;
	uint64_t r = shh_mix(b);
	if (r % 64 < 2) {
		void *p = r % 64 ? spanheap_calloc(&h->sh, SIZE_MAX / 2, 3, 0)
		                 : spanheap_calloc(&h->sh, 3, SIZE_MAX / 2, 0);
		if (p)
			return shh_fail(h, "calloc overflow: %p", p);
		return true;
	}
	if (full(h, n * m))
		return do_free(h, b);
	unsigned flags = decode_flags(r >> 6) & ~MM_ZERO;
	size_t grown = shh_call_begin(h, flags);
	void *p = spanheap_calloc(&h->sh, n, m, flags);
	if (!shh_call_end(h, flags, grown, "calloc", n * m, p))
		return false;
	if (!p)
		return shh_refusal_ok(h, flags, n * m);
	return shh_admit(h, p, n * m, 16,
	                 SHH_A_ZERO | SHH_A_PLAIN | SHH_A_POW2);
}

/* What a realloc of a live object must do. */
enum realloc_kind {
	R_RESIZE, /* a new object (NULL only with MM_NO_GROW) */
	R_FREE,   /* size 0: frees, returns NULL */
	R_REFUSE, /* an impossible size: NULL, the object untouched */
};

/* Reallocates object i to size (flags) and checks the result. */
static bool realloc_live(struct spanheap_harness *h, size_t i, size_t size,
                         unsigned flags, enum realloc_kind kind)
{
	struct shh_obj o = h->live[i];
	if (!shh_verify(h, &o))
		return false;
	size_t grown = shh_call_begin(h, flags);
	void *q = spanheap_realloc(&h->sh, (void *)o.p, size, flags);
	if (!shh_call_end(h, flags, grown, "realloc", size, q))
		return false;
	if (kind != R_RESIZE || !q) {
		if (q)
			return shh_fail(h, "realloc(%#lx, %zu) = %p, not NULL",
			                (unsigned long)o.p, size, q);
		if (kind == R_FREE) {
			shh_forget(h, i);
			return true;
		}
		if (kind == R_RESIZE && size <= o.usable)
			return shh_fail(
			        h,
			        "realloc(%#lx, %zu) of %zu usable bytes "
			        "(flags %#x) = NULL: it needs no memory",
			        (unsigned long)o.p, size, o.usable, flags);
		if (kind == R_RESIZE && !shh_refusal_ok(h, flags, size))
			return false;
		if (kind == R_REFUSE &&
		    !not_counted(h, "an impossible realloc"))
			return false;
		return shh_verify(h, &o); /* untouched */
	}
	shh_forget(h, i);
	size_t kept = o.usable < size ? o.usable : size;
	size_t off = shh_first_not(q, kept, o.fill);
	if (off != kept)
		return shh_fail(
		        h,
		        "realloc %#lx -> %p (%zu -> %zu bytes) lost byte "
		        "%zu",
		        (unsigned long)o.p, q, o.size, size, off);
	/* MM_ZERO: every byte past the kept ones up to the usable size is
	 * zero, the growth and what the caller gave up (spanheap.h). */
	size_t usable = spanheap_usable_size(&h->sh, q);
	if ((flags & MM_ZERO) && usable > kept &&
	    shh_first_not((char *)q + kept, usable - kept, 0) != usable - kept)
		return shh_fail(h,
		                "realloc %#lx -> %p (%zu -> %zu bytes, %zu "
		                "usable) with MM_ZERO: byte %zu not zero",
		                (unsigned long)o.p, q, o.size, size, usable,
		                kept + shh_first_not((char *)q + kept,
		                                     usable - kept, 0));
	return shh_admit(h, q, size, 16, q == (void *)o.p ? SHH_A_KEPT : 0);
}

static bool do_realloc(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	uint64_t r = shh_mix(b);
	size_t size = decode_size(h, a);
	unsigned flags = (r & 1 ? MM_ZERO : 0) |
	                 ((r >> 1) % 32 == 0 ? MM_NO_GROW : 0) |
	                 ((r >> 40) % 16 == 0 ? MM_ATOMIC : 0);
	if (!h->nlive || (r >> 6) % 16 == 0) {
		if (full(h, size))
			return do_free(h, b);
		size_t grown = shh_call_begin(h, flags);
		void *p = spanheap_realloc(&h->sh, NULL, size, flags);
		if (!shh_call_end(h, flags, grown, "realloc", size, p))
			return false;
		if (!p)
			return shh_refusal_ok(h, flags, size);
		return shh_admit(h, p, size, 16,
		                 zero_of(flags) | SHH_A_PLAIN | SHH_A_POW2);
	}
	size_t i = (size_t)((r >> 10) % h->nlive);
	/* A cache's or a pool's object: only its cache or pool frees it */
	if (h->live[i].cache || h->live[i].pool)
		return shh_free_at(h, i);
	switch ((r >> 30) % 32) {
	case 0:
		return realloc_live(h, i, 0, flags, R_FREE);
	case 1:
		return realloc_live(
		        h, i, (r >> 35) % 2 ? SIZE_MAX : h->cfg.arena_bytes + 1,
		        flags, R_REFUSE);
	default:
		if (h->live_bytes - h->live[i].size + size >
		    h->cfg.max_live_bytes)
			return do_free(h, b);
		return realloc_live(h, i, size, flags,
		                    size ? R_RESIZE : R_FREE);
	}
}

static bool run_op(struct spanheap_harness *h, enum shh_op op, uint64_t a,
                   uint64_t b)
{
	switch (op) {
	case SHH_ALLOC:
		return do_alloc(h, a, b);
	case SHH_ALIGNED:
		return do_aligned(h, a, b);
	case SHH_CALLOC:
		return do_calloc(h, a, b);
	case SHH_REALLOC:
		return do_realloc(h, a, b);
	case SHH_FREE:
		return do_free(h, b);
	case SHH_SWEEP:
		spanheap_sweep_cycle(&h->sh);
		return true;
	case SHH_FLUSH:
		spanheap_flush_cache(&h->sh);
		return true;
	case SHH_CPU:
		h->cpu = (unsigned)(b % h->cfg.ncpus);
		mm_port_set_cpu(h->cpu);
		return true;
	case SHH_RELEASE:
		spanheap_release_all(&h->sh);
		return true;
	case SHH_FAIL:
		return shh_fail_op(h, a, b);
	case SHH_CACHE:
		return shh_cache_alloc(h, a, b);
	case SHH_CACHE_MAKE:
		return shh_cache_make(h, a, b);
	case SHH_POOL:
		return shh_pool_op(h, a, b);
	case SHH_POOL_ALLOC:
		return shh_pool_alloc(h, a, b);
	case SHH_SCAVENGE:
		return shh_scavenge(h, b);
	case SHH_BULK:
		return shh_bulk(h, a, b);
	default:
		return shh_fail(h, "bad op %d", (int)op);
	}
}

/* ---- The API ------------------------------------------------------------- */

bool shh_init(struct spanheap_harness *h, const struct shh_config *cfg)
{
	memset(h, 0, sizeof(*h));
	h->cfg = *cfg;
	h->ngranule_words = cfg->arena_bytes / SHH_GRAN / 64;
	h->granules = calloc(h->ngranule_words, sizeof(uint64_t));
	h->live = calloc(cfg->max_live, sizeof(*h->live));
	struct mheap_config hc;
	mheap_config_default(&hc);
	hc.arena_bytes = cfg->arena_bytes;
	if (cfg->scav_on_free)
		hc.flags |= MHEAP_DEBUG_SCAV_ON_FREE;
	if (!h->granules || !h->live || cfg->ncpus == 0 ||
	    cfg->max_large <= SC_MAX_SIZE)
		return shh_fail(h, "bad config or no memory");
	struct spanheap_config sc;
	spanheap_config_default(&sc);
	sc.poison = cfg->poison;
	sc.guard_slots = cfg->guard ? SHH_GUARD_SLOTS : 0;
	sc.guard_interval = SHH_GUARD_INTERVAL;
	if (!sh_heap_new_with(&h->heap, &h->sh, &hc, &sc))
		return shh_fail(h, "cannot make the heap: %s",
		                mm_port_last_log());
	mm_port_set_cpu(0);
	if (cfg->scavenger &&
	    !(h->scav_running = mheap_scavenger_start(&h->heap)))
		return shh_fail(h, "cannot start the scavenger: %s",
		                mm_port_last_log());
	return shh_pools_new(h) && shh_caches_make(h);
}

bool shh_step(struct spanheap_harness *h, enum shh_op op, uint64_t a,
              uint64_t b)
{
	h->steps++;
	if ((unsigned)op >= SHH_NOPS)
		return shh_fail(h, "bad op %d", (int)op);
	h->n.ops[op]++;
	if (op == SHH_BAD_FREE)
		return shh_bad_free(h, b);
	if (op == SHH_DOUBLE_FREE)
		return shh_double_free(h, b);
	if (op == SHH_CHECK) /* outside the catch: the checker has its own */
		return shh_check_live(h) && shh_check(h);
	volatile bool ok = false;
	if (MM_PORT_PANICS(ok = run_op(h, op, a, b))) {
		mm_port_set_atomic(false);
		sh_unpin_after_panic();
		return shh_fail(h, "%s: mm_panic: %s", op_names[op],
		                mm_port_last_panic());
	}
	return ok;
}

void shh_destroy(struct spanheap_harness *h)
{
	if (h->scav_running)
		mheap_scavenger_stop(&h->heap);
	h->scav_running = false;
	if (h->sh.guard.base) /* empty: shh_drain freed its objects */
		mm_port_unreserve((void *)h->sh.guard.base, h->sh.guard.bytes);
#ifdef MM_PORT_RCU
	/* A typesafe cache's slabs still waiting for a grace period (after
	 * a failure: a drain destroys the caches, which waits them out) go
	 * with the heap: their callbacks must not run on a later heap's
	 * barrier. */
	(void)mm_port_posix_rcu_take();
#endif
	if (h->heap.arena_base)
		sh_heap_release(&h->heap, &h->sh);
	free(h->granules);
	free(h->live);
	shh_pools_free(h);
	h->granules = NULL;
	h->live = NULL;
}
