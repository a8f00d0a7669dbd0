/*
 * tests/host/spanheap_harness_check.c: the span heap harness's checks
 * that are not one allocation call (spanheap_harness.h lists them all):
 * the misuse operations (interior, foreign and double frees, each of
 * which must mm_panic naming the pointer), every live object's usable
 * size and contents, the heap's checker and statistics against the
 * model, and the drain at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../mm/mheap_internal.h"
#include "../../mm/spanheap_leak.h"
#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_harness_pool.h"
#include "spanheap_test_util.h"

/* An interior pointer of a live object, or a foreign one: both must
 * mm_panic naming the pointer, and change nothing. */
bool shh_bad_free(struct spanheap_harness *h, uint64_t b)
{
	int on_stack;
	bool interior = h->nlive && (b & 1);
	const struct shh_obj *o = interior ? &h->live[(b >> 1) % h->nlive] : 0;
	void *p = interior ? (void *)(o->p + 8) : (void *)&on_stack;
	/* An own cache's object, to the heap's free: named with its cache */
	const char *const what = !interior ? "foreign pointer"
	                         : o->own  ? h->caches[o->cache - 1]->name
	                                   : "interior pointer";
	bool fired = MM_PORT_PANICS(spanheap_free(&h->sh, p));
	sh_unpin_after_panic();
	char name[32];
	snprintf(name, sizeof(name), "%p", p);
	if (!fired)
		return shh_fail(h, "free of %s %p: no panic", what, p);
	const char *msg = mm_port_last_panic();
	if (!strstr(msg, what) || !strstr(msg, name))
		return shh_fail(h, "free of %s %p: panic \"%s\"", what, p, msg);
	h->n.panics++;
	return true;
}

/* Whether the last panic names p and says that it is no live object:
 * freed, or never allocated, or in no span (the heap's double free, or
 * a pool's). */
bool shh_names_a_dead_object(const void *p)
{
	char name[32];
	snprintf(name, sizeof(name), "%p", p);
	const char *msg = mm_port_last_panic();
	return strstr(msg, name) &&
	       (strstr(msg, "double free") || strstr(msg, "freed") ||
	        strstr(msg, "not allocated") || strstr(msg, "in no span"));
}

/* A live object freed, then its usable size asked and it freed again
 * on the same CPU: both must mm_panic, naming the pointer, and change
 * nothing. */
bool shh_double_free(struct spanheap_harness *h, uint64_t b)
{
	if (!h->nlive)
		return true;
	size_t i = (size_t)(shh_mix(b) % h->nlive);
	if (h->live[i].pool) /* a pool may keep it: its own checks */
		return shh_pool_double_free(h, i);
	struct shh_obj o = h->live[i];
	if (!shh_verify(h, &o))
		return false;
	void *p = (void *)o.p;
	if (MM_PORT_PANICS(shh_free_raw(h, &o))) {
		sh_unpin_after_panic();
		return shh_fail(h, "first free of %p: mm_panic: %s", p,
		                mm_port_last_panic());
	}
	if (o.cache)
		h->cache_live[o.cache - 1]--;
	shh_forget(h, i);
	bool fired = o.own || MM_PORT_PANICS(spanheap_usable_size(&h->sh, p));
	if (!fired || (!o.own && !shh_names_a_dead_object(p)))
		return shh_fail(h,
		                "usable size of freed %p (%zu usable): panic "
		                "\"%s\"",
		                p, o.usable, fired ? mm_port_last_panic() : "");
	fired = MM_PORT_PANICS(shh_free_raw(h, &o));
	sh_unpin_after_panic();
	if (!fired || !shh_names_a_dead_object(p))
		return shh_fail(h,
		                "second free of %p (%zu usable): panic \"%s\"",
		                p, o.usable, fired ? mm_port_last_panic() : "");
	h->n.panics += 2;
	return true;
}

/* The most bytes the model may hold for the leak scan to run. */
#define LEAK_CHECK_MAX_BYTES ((size_t)2 << 20)

/* Poison mode, where the heap keeps records: the leak scan from the
 * model's objects (their addresses, in h->live) finds none, neither among
 * them nor among the pools' reserves' elements, which the scan reaches
 * through the reserves' arrays (metadata blocks it reads whole:
 * spanheap_meta_blocks_each). */
static bool leak_check(struct spanheap_harness *h)
{
	/* The scan reads every reachable object whole, large ones too: with
	 * megabytes live a fuzz input of checks took 15 s (its slow units). */
	if (!h->cfg.poison || h->live_bytes > LEAK_CHECK_MAX_BYTES)
		return true;
	size_t bytes = spanheap_leak_work_bytes(&h->sh, 4);
	void *work = calloc(1, bytes);
	if (!work)
		return shh_fail(h, "no memory for the leak scan");
	struct spanheap_leak_range root = {(uintptr_t)h->live,
	                                   (uintptr_t)(h->live + h->nlive)};
	struct spanheap_leak_result r;
	long n = spanheap_leak_scan(&h->sh, work, bytes, &root, 1, 0, 4, &r);
	uintptr_t first = n > 0 ? spanheap_leak_list(work)[0].addr : 0;
	free(work);
	if (n > 0)
		return shh_fail(h,
		                "leak scan: %ld leaks of %zu objects, the "
		                "first %#lx",
		                n, r.objects, (unsigned long)first);
	return true;
}

/* Every live object: its usable size as it was handed out, and its
 * contents; the leak scan (poison mode). */
bool shh_check_live(struct spanheap_harness *h)
{
	for (size_t i = 0; i < h->nlive; i++) {
		const struct shh_obj *o = &h->live[i];
		/* An own cache's object is an interior pointer of its slab's
		 * large span to the heap: its cache's checks are its own. */
		size_t u = o->own ? o->usable
		                  : spanheap_usable_size(&h->sh, (void *)o->p);
		if (u != o->usable)
			return shh_fail(
			        h,
			        "object %#lx: usable size %zu, %zu when "
			        "handed out",
			        (unsigned long)o->p, u, o->usable);
		if (!shh_verify(h, o))
			return false;
	}
	return leak_check(h);
}

bool shh_check(struct spanheap_harness *h)
{
	static struct spanheap_stats st; /* large: not on the stack */
	if (sh_check_panics(&h->sh))
		return shh_fail(h, "spanheap_check: %s", mm_port_last_panic());
	/* The pools' reserves' objects: the heap's, outside the model */
	size_t extra[SC_NCLASSES] = {0}, guard_extra = 0, large_pages = 0;
	if (!shh_pools_check(h, extra, &guard_extra, &large_pages) ||
	    !shh_own_check(h, &extra[0], &large_pages))
		return false;
	spanheap_stats(&h->sh, &st);
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++)
		if (st.cls[cls].objects_in_use !=
		    h->class_live[cls] + h->class_extra[cls] + extra[cls])
			return shh_fail(h,
			                "class %u: statistics count %zu "
			                "objects, the model %zu (and the "
			                "caches' own %zu, the reserves' %zu)",
			                cls, st.cls[cls].objects_in_use,
			                h->class_live[cls], h->class_extra[cls],
			                extra[cls]);
	if (st.guard_live != h->guard_live + h->guard_extra + guard_extra)
		return shh_fail(h,
		                "statistics count %u guarded objects, the "
		                "model %zu (and the caches' own %zu)",
		                st.guard_live, h->guard_live, h->guard_extra);
	if (st.large_pages != h->large_pages + large_pages)
		return shh_fail(h,
		                "statistics count %zu large pages, the model "
		                "%zu (and the pools' reserves' %zu)",
		                st.large_pages, h->large_pages, large_pages);
	return shh_caches_check(h);
}

bool shh_drain(struct spanheap_harness *h)
{
	while (h->nlive)
		if (!shh_step(h, SHH_FREE, 0, h->nlive - 1))
			return false;
	if (!shh_pools_destroy(h) || !shh_caches_destroy(h))
		return false;
	volatile size_t in_use = 0, kept = 0;
	bool panicked = MM_PORT_PANICS({
		sh_flush_cpus(&h->sh, h->cfg.ncpus);
		spanheap_release_all(&h->sh);
		/* Both heaps': the span heap's own pages are its
		 * metadata heap's, and none of the object heap's stays. */
		in_use = sh_in_use_pages(&h->heap) +
		         sh_in_use_pages(&h->sh.meta);
		kept = sh_kept_pages(&h->sh);
	});
	h->cpu = 0;
	if (panicked) {
		sh_unpin_after_panic();
		return shh_fail(h, "drain: mm_panic: %s", mm_port_last_panic());
	}
	if (!shh_check(h))
		return false;
	if (in_use != kept)
		return shh_fail(
		        h,
		        "drained: %zu pages in use, the span heap keeps "
		        "%zu",
		        (size_t)in_use, (size_t)kept);
	return true;
}

/* ---- Failure injection and scavenges ------------------------------------ */

/* A good attribute from a and b: every n-th call (1 to 8), all or a
 * part of them, a cap of 0 to 6 failures or none, any filter. */
static struct spanheap_fail_attr fail_attr_of(uint64_t a, uint64_t r)
{
	static const unsigned whats[] = {
	        SPANHEAP_FAIL_SMALL,
	        SPANHEAP_FAIL_LARGE,
	        SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE,
	        SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_ATOMIC_ONLY,
	        SPANHEAP_FAIL_WHAT_ALL,
	};
	return (struct spanheap_fail_attr){
	        .interval = (unsigned)(a % 8) + 1,
	        .probability = (a >> 3) % 2 ? SPANHEAP_FAIL_PROB_ALL
	                                    : (unsigned)((a >> 4) % 10001),
	        .times = (a >> 18) % 4 ? (int64_t)((a >> 20) % 7) : -1,
	        .what = whats[(r >> 8) % 5],
	        .seed = r >> 16,
	};
}

static bool attr_eq(const struct spanheap_fail_attr *x,
                    const struct spanheap_fail_attr *y)
{
	return x->interval == y->interval && x->probability == y->probability &&
	       x->times == y->times && x->what == y->what && x->seed == y->seed;
}

/* Disarms failure injection, or arms it: mostly with a good attribute,
 * which must arm on every CPU and read back; at times a bad one
 * (probability over 10000, times below -1, no class in what), which must
 * be refused and change nothing. */
bool shh_fail_op(struct spanheap_harness *h, uint64_t a, uint64_t b)
{
	uint64_t r = shh_mix(b);
	if (h->armed && r % 4) {
		spanheap_fail_disarm(&h->sh);
		h->armed = false;
		return true;
	}
	struct spanheap_fail_attr want = fail_attr_of(a, r), got;
	bool bad = (r >> 2) % 8 == 0;
	if (bad) {
		struct spanheap_fail_attr was;
		spanheap_fail_get(&h->sh, &was);
		if ((r >> 5) % 3 == 0)
			want.probability = SPANHEAP_FAIL_PROB_ALL + 1 +
			                   want.probability % 1000;
		want.times = (r >> 5) % 3 == 1 ? -2 : want.times;
		want.what = (r >> 5) % 3 == 2 ? SPANHEAP_FAIL_ATOMIC_ONLY
		                              : want.what;
		if (spanheap_fail_arm(&h->sh, &want) ||
		    spanheap_fail_get(&h->sh, &got) != h->armed ||
		    !attr_eq(&got, &was))
			return shh_fail(h, "a bad failure attribute changed "
			                   "the heap's");
		return true;
	}
	if (!spanheap_fail_arm(&h->sh, &want))
		return shh_fail(h, "spanheap_fail_arm: %s", mm_port_last_log());
	h->armed = true;
	if (!spanheap_fail_get(&h->sh, &got) || !attr_eq(&got, &want))
		return shh_fail(h, "the armed attribute does not read back");
	return true;
}

/* A scavenge batch of the object heap or the metadata heap (which the
 * object heap's scavenger serves: mheap_scav_thread.c), of a few pages or the
 * default, dense chunks searched or not; at times the metadata heap's
 * release-all alone. */
bool shh_scavenge(struct spanheap_harness *h, uint64_t b)
{
	uint64_t r = shh_mix(b);
	struct mheap *x = r % 2 ? &h->sh.meta : &h->heap;
	if ((r >> 1) % 8 == 0) {
		mheap_release_all(x);
		return true;
	}
	size_t max = (r >> 4) % 2 ? 0 : 1 + (size_t)(r >> 5) % 64;
	mheap_scavenge_batch(x, max, (r >> 12) % 2 ? PALLOC_SCAV_FORCE : 0,
	                     MHEAP_SCAV_BG);
	return true;
}
