/*
 * tests/host/spanheap_harness_bulk.c: the span heap harness's batches
 * (SHH_BULK): spanheap_alloc_bulk and _free_bulk of plain sizes,
 * objcache_alloc_bulk and _free_bulk of a named cache's objects (merged
 * or with slabs of its own), each object of a batch admitted to the model
 * or dropped from it as a single call's would be.
 *
 * What a batch must do (spanheap_bulk.h, objcache_bulk.h):
 *   - an allocation returns n or 0: n objects, each passing shh_admit as
 *     the single call's; 0 only where a single call may get NULL (flags,
 *     a tight arena, a failure injected: at most one a batch, and none
 *     with n returned), and then nothing is kept: the objects the batch
 *     had are freed again, which the next check's statistics and the
 *     caches' counts against the model would show otherwise;
 *   - n 0, a flag no call takes, a batch whose objects could not fit the
 *     arena: 0, nothing written to out, the last two saying why;
 *   - MM_ZERO on a ctor cache: 0, logged;
 *   - a free batch frees its objects (NULL entries among them: nothing);
 *     one with a bad entry (an interior pointer of an object later in
 *     the batch) mm_panics naming the pointer after a line naming its
 *     index; the entries before it are freed, those after it are not.
 */
#include <stdio.h>
#include <string.h>

#include "../../mm/objcache_bulk.h"
#include "../../mm/spanheap_bulk.h"
#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_test_util.h"

#define BULK_MAX 32

/* A plain batch's size: mostly small, at times medium or large. */
static size_t bulk_size(const struct spanheap_harness *h, uint64_t a)
{
	if (a % 16 < 12)
		return 1 + (size_t)(a >> 4) % SC_SMALL_MAX;
	if (a % 16 < 15)
		return 1 + (size_t)(a >> 4) % SC_MAX_SIZE;
	size_t max =
	        h->cfg.max_large < (256 << 10) ? h->cfg.max_large : (256 << 10);
	return SC_MAX_SIZE + 1 + (size_t)(a >> 4) % (max - SC_MAX_SIZE);
}

/* Calls that must get 0 and leave out as it was: n 0, a flag no call
 * takes, n objects over the arena (those two logged). */
static bool bulk_refused(struct spanheap_harness *h, unsigned k, size_t size,
                         uint64_t r)
{
	void *out[BULK_MAX];
	memset(out, 0xa5, sizeof(out));
	size_t n = r % 3 == 0 ? 0 : BULK_MAX;
	unsigned flags = r % 3 == 1 ? 1u << 30 : 0;
	if (r % 3 == 2) /* n * size over the arena: refused before out */
		n = h->cfg.arena_bytes / size + 1;
	struct objcache *c = k < SHH_NCACHES ? h->caches[k] : NULL;
	shh_log_begin();
	size_t got = c ? objcache_alloc_bulk(c, flags, n, out)
	               : spanheap_alloc_bulk(&h->sh, size, flags, n, out);
	bool logged = shh_log_end("alloc");
	for (size_t i = 0; i < BULK_MAX; i++)
		if (out[i] != (void *)(uintptr_t)0xa5a5a5a5a5a5a5a5ull)
			got = SIZE_MAX;
	if (got || (n && !logged))
		return shh_fail(
		        h,
		        "alloc_bulk of %zu objects of %zu bytes (flags "
		        "%#x%s%s): %s",
		        n, size, flags, c ? ", cache " : "", c ? c->name : "",
		        got == SIZE_MAX ? "out written" : "not refused");
	return true;
}

static bool bulk_alloc(struct spanheap_harness *h, unsigned k, uint64_t a,
                       uint64_t r)
{
	struct objcache *c = k < SHH_NCACHES ? h->caches[k] : NULL;
	size_t size = c ? h->cache_size[k] : bulk_size(h, a);
	if (r % 32 == 0)
		return bulk_refused(h, k, size, r >> 5);
	size_t n = 1 + (size_t)(r >> 5) % BULK_MAX;
	if (h->nlive + n > h->cfg.max_live ||
	    h->live_bytes + n * size > h->cfg.max_live_bytes)
		return h->nlive ? shh_free_at(h, (size_t)(r >> 10) % h->nlive)
		                : true;
	uint64_t f = shh_mix(r);
	unsigned flags = ((f & 1) ? MM_ZERO : 0) |
	                 ((f >> 1) % 16 == 0 ? MM_ATOMIC : 0) |
	                 ((f >> 5) % 16 == 0 ? MM_NO_GROW : 0);
	bool zero_ctor = c && h->cache_ctor[k] && (flags & MM_ZERO);
	void *out[BULK_MAX];
	if (zero_ctor)
		shh_log_begin();
	size_t grown = shh_call_begin(h, flags);
	size_t got = c ? objcache_alloc_bulk(c, flags, n, out)
	               : spanheap_alloc_bulk(&h->sh, size, flags, n, out);
	bool zero_said = zero_ctor && shh_log_end("MM_ZERO");
	if (!shh_call_end(h, flags, grown, "alloc_bulk", size,
	                  got ? out[0] : NULL))
		return false;
	if ((got && got != n) || (zero_ctor && got))
		return shh_fail(h,
		                "alloc_bulk of %zu objects of %zu bytes (flags "
		                "%#x): %zu",
		                n, size, flags, got);
	if (zero_ctor)
		return zero_said ? true
		                 : shh_fail(h,
		                            "alloc_bulk with MM_ZERO from "
		                            "ctor cache %s: not logged",
		                            c->name);
	if (!got)
		return shh_refusal_ok(h, flags, size);
	size_t align = c && h->cache_align[k] > 16 ? h->cache_align[k] : 16;
	unsigned what = ((flags & MM_ZERO) ? SHH_A_ZERO : 0) |
	                (!c || h->cache_align[k] <= 16 ? SHH_A_PLAIN : 0) |
	                (c ? 0 : SHH_A_POW2);
	h->n.bulk += n;
	for (size_t i = 0; i < n; i++) {
		if (!shh_admit(h, out[i], size, align, what))
			return false;
		if (c) {
			h->live[h->nlive - 1].cache = (uint8_t)(k + 1);
			h->cache_live[k]++;
		}
	}
	return true;
}

/* Whether live object o may be in a free batch of slot k (SHH_NCACHES:
 * plain objects). */
static bool batch_kind(const struct shh_obj *o, unsigned k)
{
	return !o->pool && o->cache == (k < SHH_NCACHES ? k + 1 : 0);
}

/* The bad entry of a free batch to c (NULL: plain) whose last object is
 * last: an interior pointer of last; for a merged cache, a plain object
 * of another class, or NULL if there is none. Not the interior pointer
 * there: the span heap's batch (spanheap_free_bulk_class) panics at it
 * before the cache counts the entries it freed before it, and the
 * cache's count then says objects are out that are not (objcache_bulk.c,
 * reported). */
static void *bad_entry(struct spanheap_harness *h, struct objcache *c,
                       void *last, uint64_t r)
{
	if (!c || c->own)
		return (char *)last + 8;
	for (size_t m = 0, i = h->nlive ? r % h->nlive : 0; m < h->nlive;
	     m++, i = (i + 1) % h->nlive) {
		const struct shh_obj *o = &h->live[i];
		if (!o->cache && !o->pool && !o->guard &&
		    o->sizeclass != c->sizeclass)
			return (void *)o->p;
	}
	return NULL;
}

/* A free batch: its entries, each one's live object index (SIZE_MAX:
 * NULL, or the bad entry), and the bad entry's index (SIZE_MAX: none). */
struct batch {
	void *p[2 * BULK_MAX + 1]; /* a NULL before each at most, a bad one */
	size_t idx[2 * BULK_MAX + 1], n, bad;
};

/* Up to 1 + r % BULK_MAX live objects of slot k, verified, NULLs among
 * them, at times a bad entry (bad_entry's) before the last. */
static bool gather(struct spanheap_harness *h, unsigned k, uint64_t r,
                   struct batch *b)
{
	size_t nobj = 0, want = 1 + r % BULK_MAX;
	uint64_t f = shh_mix(r);
	b->n = 0;
	b->bad = SIZE_MAX;
	for (size_t m = 0, i = h->nlive ? (r >> 5) % h->nlive : 0;
	     m < h->nlive && nobj < want; m++, i = (i + 1) % h->nlive) {
		if (!batch_kind(&h->live[i], k))
			continue;
		if (!shh_verify(h, &h->live[i]))
			return false;
		if ((f >> (nobj % 48)) % 8 == 0)
			b->idx[b->n] = SIZE_MAX, b->p[b->n++] = NULL;
		b->idx[b->n] = i, b->p[b->n++] = (void *)h->live[i].p;
		nobj++;
	}
	struct objcache *c = k < SHH_NCACHES ? h->caches[k] : NULL;
	void *wrong = NULL;
	if (nobj < 2 || (f >> 50) % 8 ||
	    !(wrong = bad_entry(h, c, b->p[b->n - 1], f >> 56)))
		return true;
	size_t at = (size_t)(f >> 53) % (b->n - 1), tail = b->n - at;
	memmove(&b->p[at + 1], &b->p[at], tail * sizeof(b->p[0]));
	memmove(&b->idx[at + 1], &b->idx[at], tail * sizeof(b->idx[0]));
	b->p[at] = wrong;
	b->idx[at] = SIZE_MAX;
	b->bad = at;
	b->n++;
	return true;
}

/* Drops the objects of b's first freed entries from the model, in
 * descending index order: each swap brings down a later object, which no
 * entry names any more. Then the entries past the bad one, not freed,
 * must be as they were. */
static bool forget_freed(struct spanheap_harness *h, unsigned k,
                         struct batch *b, size_t freed)
{
	for (size_t m = 0; m < freed; m++) {
		size_t top = SIZE_MAX, at = 0;
		for (size_t j = 0; j < freed; j++)
			if (b->idx[j] != SIZE_MAX &&
			    (top == SIZE_MAX || b->idx[j] > top))
				top = b->idx[j], at = j;
		if (top == SIZE_MAX)
			break;
		if (k < SHH_NCACHES)
			h->cache_live[k]--;
		h->n.bulk++;
		shh_forget(h, top);
		b->idx[at] = SIZE_MAX;
	}
	for (size_t j = freed + 1; j < b->n; j++)
		for (size_t i = 0; b->p[j] && i < h->nlive; i++)
			if (h->live[i].p == (uintptr_t)b->p[j] &&
			    !shh_verify(h, &h->live[i]))
				return false;
	return true;
}

/* A free batch of slot k's objects (gather's), checked: all freed; or,
 * with a bad entry, a panic naming it after the line naming its index,
 * the entries before it freed. */
static bool bulk_free(struct spanheap_harness *h, unsigned k, uint64_t r)
{
	static struct batch b;
	static char log[8192];
	if (!gather(h, k, r, &b))
		return false;
	struct objcache *c = k < SHH_NCACHES ? h->caches[k] : NULL;
	log[0] = 0;
	mm_port_log_capture(log, sizeof(log));
	bool fired = MM_PORT_PANICS(c ? objcache_free_bulk(c, b.n, b.p)
	                              : spanheap_free_bulk(&h->sh, b.n, b.p));
	sh_unpin_after_panic();
	mm_port_log_capture(NULL, 0);
	char entry[64], name[32];
	snprintf(entry, sizeof(entry), "entry %zu of %zu", b.bad, b.n);
	snprintf(name, sizeof(name), "%p",
	         b.bad == SIZE_MAX ? NULL : b.p[b.bad]);
	if (b.bad == SIZE_MAX ? fired
	                      : !fired || !strstr(mm_port_last_panic(), name) ||
	                                !strstr(log, entry))
		return shh_fail(h,
		                "free_bulk%s%s of %zu (%s bad): panic \"%s\", "
		                "log \"%.200s\"",
		                c ? " to " : "", c ? c->name : "", b.n,
		                b.bad == SIZE_MAX ? "none" : entry,
		                fired ? mm_port_last_panic() : "", log);
	h->n.panics += fired;
	return forget_freed(h, k, &b, b.bad == SIZE_MAX ? b.n : b.bad);
}

bool shh_bulk(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	uint64_t r = shh_mix(b);
	unsigned k = r % 3 ? shh_live_cache(h, a) : SHH_NCACHES;
	if ((r >> 2) % 2)
		return bulk_free(h, k, r >> 3);
	return bulk_alloc(h, k, a, r >> 3);
}
