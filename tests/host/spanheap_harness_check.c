/*
 * tests/host/spanheap_harness_check.c: the span heap harness's checks
 * that are not one allocation call (spanheap_harness.h lists them all):
 * the misuse operations (interior, foreign and double frees, each of
 * which must mm_panic naming the pointer), every live object's usable
 * size and contents, the heap's checker and statistics against the
 * model, and the drain at the end.
 */
#include <stdio.h>
#include <string.h>

#include "mm_port_posix.h"
#include "spanheap_harness.h"
#include "spanheap_harness_internal.h"
#include "spanheap_test_util.h"

/* An interior pointer of a live object, or a foreign one: both must
 * mm_panic naming the pointer, and change nothing. */
bool shh_bad_free(struct spanheap_harness *h, uint64_t b)
{
	int on_stack;
	bool interior = h->nlive && (b & 1);
	void *p = interior ? (void *)(h->live[(b >> 1) % h->nlive].p + 8)
	                   : (void *)&on_stack;
	const char *what = interior ? "interior pointer" : "foreign pointer";
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
 * freed, or never allocated, or in no span. */
static bool names_a_dead_object(const void *p)
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
	bool fired = MM_PORT_PANICS(spanheap_usable_size(&h->sh, p));
	if (!fired || !names_a_dead_object(p))
		return shh_fail(h,
		                "usable size of freed %p (%zu usable): panic "
		                "\"%s\"",
		                p, o.usable, fired ? mm_port_last_panic() : "");
	fired = MM_PORT_PANICS(shh_free_raw(h, &o));
	sh_unpin_after_panic();
	if (!fired || !names_a_dead_object(p))
		return shh_fail(h,
		                "second free of %p (%zu usable): panic \"%s\"",
		                p, o.usable, fired ? mm_port_last_panic() : "");
	h->n.panics += 2;
	return true;
}

/* Every live object: its usable size as it was handed out, and its
 * contents. */
bool shh_check_live(struct spanheap_harness *h)
{
	for (size_t i = 0; i < h->nlive; i++) {
		const struct shh_obj *o = &h->live[i];
		size_t u = spanheap_usable_size(&h->sh, (void *)o->p);
		if (u != o->usable)
			return shh_fail(
			        h,
			        "object %#lx: usable size %zu, %zu when "
			        "handed out",
			        (unsigned long)o->p, u, o->usable);
		if (!shh_verify(h, o))
			return false;
	}
	return true;
}

bool shh_check(struct spanheap_harness *h)
{
	static struct spanheap_stats st; /* large: not on the stack */
	if (sh_check_panics(&h->sh))
		return shh_fail(h, "spanheap_check: %s", mm_port_last_panic());
	spanheap_stats(&h->sh, &st);
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++)
		if (st.cls[cls].objects_in_use !=
		    h->class_live[cls] + h->class_extra[cls])
			return shh_fail(h,
			                "class %u: statistics count %zu "
			                "objects, the model %zu (and the "
			                "caches' own %zu)",
			                cls, st.cls[cls].objects_in_use,
			                h->class_live[cls],
			                h->class_extra[cls]);
	if (st.guard_live != h->guard_live + h->guard_extra)
		return shh_fail(h,
		                "statistics count %u guarded objects, the "
		                "model %zu (and the caches' own %zu)",
		                st.guard_live, h->guard_live, h->guard_extra);
	if (st.large_pages != h->large_pages)
		return shh_fail(h,
		                "statistics count %zu large pages, the model "
		                "%zu",
		                st.large_pages, h->large_pages);
	return shh_caches_check(h);
}

bool shh_drain(struct spanheap_harness *h)
{
	while (h->nlive)
		if (!shh_step(h, SHH_FREE, 0, h->nlive - 1))
			return false;
	if (!shh_caches_destroy(h))
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
