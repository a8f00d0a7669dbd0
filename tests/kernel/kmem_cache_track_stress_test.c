/*
 * Poison mode's records of constructor caches' objects (slabs of their
 * own, mm/objcache_track.c) written on every CPU while this one reads
 * them with no lock, with the kernel's lock checker on: a thread on each
 * other CPU allocates from and frees to a 72-byte cache (stashes) and a
 * 20000-byte one (a slab an object, no stash: slabs given back and made
 * all the time), through call sites of its own, and leaves its latest
 * freed object for the reader. The reader, holding objects of each
 * cache, reads round after round its own objects' records (the same each
 * time, never changing), a churned object's records under the fault
 * hook (each changing, none, or plausible: an online CPU, a stack) and
 * its description (addrinfo, under the hook). At the end the caches are checked
 * (objcache_own_check), destroyed, and the heap checked. Outside poison
 * mode the records are off and only the descriptions and the checks
 * run. Bounded by rounds; the host's objcache_track_stress test runs
 * the same under ASan and TSan.
 */
#include <stdatomic.h>

#include "arch/x86_64/trap.h"
#include "kernel/addrinfo.h"
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "mm/objcache_own.h"
#include "tests/kernel/capture_util.h"

#if KTEST_HOOKS

enum { NOWN = 8, ROUNDS = 24, KEEP = 16 };

static struct objcache *caches[2];
static _Atomic bool stop;
static _Atomic uintptr_t last_freed;

static void ctor(void *p)
{
	*(uint64_t *)p = 0x57e55;
}

/* The churners' sites and the reader's: out of line, as a caller's
 * site would be. */
__attribute__((noinline)) static void *churn_alloc_here(struct objcache *c)
{
	void *p = kmem_cache_alloc(c, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

__attribute__((noinline)) static void churn_free_here(struct objcache *c,
                                                      void *p)
{
	kmem_cache_free(c, p);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void *reader_alloc_here(struct objcache *c)
{
	void *p = kmem_cache_alloc(c, 0);
	__asm__ volatile("" ::: "memory");
	return p;
}

static void churn(void *arg)
{
	uint64_t r = (uintptr_t)arg * 0x9e3779b97f4a7c15ull | 1;
	void *keep[KEEP] = {0};
	unsigned kind[KEEP] = {0};
	while (!atomic_load(&stop)) {
		r ^= r << 13, r ^= r >> 7, r ^= r << 17;
		unsigned k = (unsigned)(r % KEEP);
		if (keep[k]) {
			churn_free_here(caches[kind[k]], keep[k]);
			atomic_store(&last_freed, (uintptr_t)keep[k]);
		}
		kind[k] = (r >> 8) % 8 == 0;
		keep[k] = churn_alloc_here(caches[kind[k]]);
	}
	for (unsigned k = 0; k < KEEP; k++)
		if (keep[k])
			churn_free_here(caches[kind[k]], keep[k]);
}

/* Whether record t of a churned object is changing, none, or
 * plausible: an online CPU, a stack. The address may be another
 * owner's by then (its slab given back, its pages a span's of kmalloc),
 * so the stack's site is the host test's to check. */
static bool whole(const struct spanheap_track *t)
{
	if (t->ns == SPANHEAP_TRACK_CHANGING || t->ns == 0)
		return true;
	return t->cpu < MAX_CPUS && atomic_load(&cpus[t->cpu].online) &&
	       t->npcs > 0;
}

/* A churned object's records, read under the fault hook: -1 after a
 * fault (a slab given back meanwhile), else whether they are whole. Its
 * own function: nothing of the caller's live across the second return. */
static int churned_whole(uintptr_t p)
{
	struct spanheap_track a, f;
	struct fault_catch fc;
	if (fault_catch_arm(&fc) != 0)
		return -1;
	bool got = spanheap_object_tracks(&kspanheap, (void *)p, &a, &f);
	fault_catch_disarm(&fc);
	return !got || (whole(&a) && whole(&f));
}

static void *own[2][NOWN];
static struct spanheap_track own_a[2][NOWN];

/* How many of the reader's objects' records read otherwise than first. */
static unsigned own_misread(void)
{
	unsigned bad = 0;
	for (unsigned k = 0; k < 2; k++)
		for (unsigned i = 0; i < NOWN; i++) {
			struct spanheap_track a, f;
			bad += !spanheap_object_tracks(&kspanheap, own[k][i],
			                               &a, &f) ||
			       memcmp(&a, &own_a[k][i], sizeof(a)) != 0 ||
			       f.ns != 0;
		}
	return bad;
}

/* Starts a churner on each other online CPU; how many. */
static unsigned start_churners(struct thread_handle *th)
{
	unsigned n = 0;
	for (unsigned c = 0; c < MAX_CPUS; c++) {
		if (c == this_cpu()->id || !atomic_load(&cpus[c].online))
			continue;
		th[n] = thread_create("trk-churn", churn,
		                      (void *)(uintptr_t)(c + 1), c);
		n += thread_handle_ok(th[n]);
	}
	return n;
}

KTEST(kmem_cache_track_stress, records_read_whole_while_other_cpus_churn)
{
	static struct thread_handle th[MAX_CPUS];
	unsigned others = 0;
	for (unsigned c = 0; c < MAX_CPUS; c++)
		others += c != this_cpu()->id && atomic_load(&cpus[c].online);
	if (!others)
		KTEST_SKIP("no other CPU to churn on");
	KASSERT(caches[0] = kmem_cache_create_flags("trk-small", 72, 0,
	                                            SLAB_SKIP_KFENCE, ctor));
	KASSERT(caches[1] = kmem_cache_create_flags("trk-big", 20000, 0,
	                                            SLAB_SKIP_KFENCE, ctor));
	bool track = kspanheap.track;
	for (unsigned k = 0; k < 2; k++)
		for (unsigned i = 0; i < NOWN; i++) {
			struct spanheap_track f;
			KASSERT(own[k][i] = reader_alloc_here(caches[k]));
			KASSERT(!track ||
			        spanheap_object_tracks(&kspanheap, own[k][i],
			                               &own_a[k][i], &f));
		}
	atomic_store(&stop, false);
	atomic_store(&last_freed, 0);
	unsigned n = start_churners(th);
	unsigned bad = 0, torn = 0, faults = 0, caught = 0;
	for (unsigned round = 0; round < ROUNDS; round++) {
		uintptr_t p = atomic_load(&last_freed);
		if (track) {
			bad += own_misread();
			int w = p ? churned_whole(p) : 1;
			faults += w < 0;
			torn += w == 0;
		}
		if (round % 4) /* the console is slow under TCG */
			continue;
		capture_start();
		caught += p && !addrinfo_print_caught("", "at", p);
		capture_stop();
	}
	atomic_store(&stop, true);
	for (unsigned i = 0; i < n; i++)
		thread_join(th[i]);
	ktest_diag("%u churners; %u reads of churned records faulted, %u "
	           "descriptions, caught",
	           n, faults, caught);
	KEXPECT_EQ(n, others);
	KEXPECT_EQ(bad, 0);
	KEXPECT_EQ(torn, 0);
	for (unsigned k = 0; k < 2; k++) {
		for (unsigned i = 0; i < NOWN; i++)
			kmem_cache_free(caches[k], own[k][i]);
		KEXPECT(objcache_own_check(caches[k]));
		KEXPECT(kmem_cache_destroy(caches[k]));
	}
	/* Statics, read by the leak scan: nothing stale left there. */
	memset(own, 0, sizeof(own));
	memset(th, 0, sizeof(th));
	atomic_store(&last_freed, 0);
	spanheap_check(&kspanheap);
}

#endif
