/*
 * The constructor caches' stash sequences (mm/objcache_stash_rseq.h): a
 * kmem_cache_alloc or kmem_cache_free of a cache with slabs of its own,
 * interrupted at any instruction by a handler that uses the same stash,
 * still hands out and takes back each object exactly once.
 *
 * As rseq_test.c's trials for the magazines: the call runs single-stepped
 * (RFLAGS.TF), interrupts off, and at the k-th trap the #DB hook frees two
 * objects of the cache and allocates one (the stash's count moves), then
 * restarts as irq_dispatch does (BY_HOOK); or it lets in an IPI that lands
 * at that boundary, through irq_dispatch's own restart, whose handler
 * interferes (BY_IPI). Trial k = 0, 1, 2, ... until the call finishes
 * before its k-th step. The calls' counts (objcache_count) are sequences
 * too, stepped the same way; the destroy at the end, refused with objects
 * counted out, checks them.
 */
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "arch/x86_64/trap.h"
#include "kernel/heap.h"
#include "kernel/irq.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "mm/objcache_internal.h"
#include "mm/rseq.h"
#include "tests/kernel/rseq_trial_util.h"

static struct objcache *cache;

/* Objects taken out of the stash to empty it, freed after the trials. */
#define HELD_MAX 1024
static struct {
	unsigned n;
	void *v[HELD_MAX];
} held;

static void ctor(void *p)
{
	*(uint64_t *)p = 0x57a5;
}

static void *obj(void)
{
	void *p = kmem_cache_alloc(cache, KM_ATOMIC);
	KEXPECT(p != NULL);
	return p;
}

/* What an interrupt handler on this CPU may do: move the stash's count. */
static void interfere(void)
{
	kmem_cache_free(cache, trial.g1);
	kmem_cache_free(cache, trial.g2);
	trial.s = kmem_cache_alloc(cache, KM_ATOMIC);
	trial.fired = true;
}

/* The IPI of a BY_IPI trial (trial_ipi_landed). */
static void test_ipi(struct trap_frame *f)
{
	if (!trial_ipi_landed(f))
		return;
	interfere();
	f->rflags &= ~RFLAGS_IF; /* the rest of the call as before */
}

/* Empties this CPU's stash into held (interrupts off: the CPU stays). */
static void stash_empty(void)
{
	const struct objstash *st = &cache->own->stash[this_cpu()->id];
	while (__atomic_load_n(&st->n, __ATOMIC_RELAXED) && held.n < HELD_MAX)
		held.v[held.n++] = obj();
}

/* The stash holds exactly the n objects of want[] (any order), each
 * marked stashed: n pops give each once, and the pop after them (a
 * refill) none of them. */
static bool stash_holds(void *const *want, unsigned n, unsigned k)
{
	const struct objstash *st = &cache->own->stash[this_cpu()->id];
	void *got[4];
	bool ok = true;
	for (uint32_t i = 0; i < st->n; i++) {
		uintptr_t e = st->ent[i];
		const struct objslab *sl =
		        (const struct objslab *)(e & ~(uintptr_t)(MM_PAGE_SIZE -
		                                                  1));
		if (!sl->stashed[e & (MM_PAGE_SIZE - 1)]) {
			ktest_fail_at(__FILE__, __LINE__,
			              "step %u: entry %#lx not marked stashed",
			              k, (unsigned long)e);
			ok = false;
		}
	}
	for (unsigned i = 0; i <= n; i++)
		got[i] = obj();
	for (unsigned i = 0; i < n; i++) {
		unsigned seen = 0;
		for (unsigned j = 0; j < n; j++)
			seen += got[j] == want[i];
		if (seen != 1 || got[n] == want[i]) {
			ktest_fail_at(__FILE__, __LINE__,
			              "step %u: object %p popped %u times, "
			              "then %p",
			              k, want[i], seen, got[n]);
			ok = false;
		}
	}
	for (unsigned i = 0; i <= n; i++)
		kmem_cache_free(cache, got[i]);
	return ok;
}

/* kmem_cache_free(p) interrupted at step k, the stash empty before:
 * afterwards it holds {p, g1, g2} but the handler's s. */
static bool free_trial(unsigned k)
{
	void *p = obj(), *g1 = obj(), *g2 = obj();
	stash_empty();
	trial = (typeof(trial)){
	        .by = trial.by, .target = k, .g1 = g1, .g2 = g2};
	single_step_on();
	kmem_cache_free(cache, p);
	trace_off();
	if (!trial.fired) {
		kmem_cache_free(cache, g1);
		kmem_cache_free(cache, g2);
		return stash_holds((void *[]){g2, g1, p}, 3, k);
	}
	void *all[3] = {p, g1, g2}, *left[2];
	unsigned n = 0;
	for (unsigned i = 0; i < 3; i++)
		if (all[i] != trial.s && n < 2)
			left[n++] = all[i];
	bool ok = n == 2 && stash_holds(left, 2, k);
	kmem_cache_free(cache, trial.s);
	return ok;
}

/* kmem_cache_alloc interrupted at step k over a stash holding {x1, x2}:
 * afterwards the stash, the call's object and the handler's hold {x1,
 * x2, g1, g2}, each once. */
static bool alloc_trial(unsigned k)
{
	void *x1 = obj(), *x2 = obj(), *g1 = obj(), *g2 = obj();
	stash_empty();
	kmem_cache_free(cache, x1);
	kmem_cache_free(cache, x2);
	trial = (typeof(trial)){
	        .by = trial.by, .target = k, .g1 = g1, .g2 = g2};
	single_step_on();
	void *r = kmem_cache_alloc(cache, KM_ATOMIC);
	trace_off();
	if (!trial.fired) {
		kmem_cache_free(cache, g1);
		kmem_cache_free(cache, g2);
	}
	void *all[4] = {x1, x2, g1, g2}, *left[3];
	unsigned n = 0, r_seen = 0, s_seen = 0;
	for (unsigned i = 0; i < 4; i++) {
		if (all[i] == r)
			r_seen++;
		else if (trial.fired && all[i] == trial.s)
			s_seen++;
		else if (n < 3)
			left[n++] = all[i];
	}
	bool ok = r_seen == 1 && s_seen == trial.fired && n == 3u - trial.fired;
	if (!ok)
		ktest_fail_at(__FILE__, __LINE__,
		              "step %u: the alloc gave %p, the handler %p: not "
		              "one each of the stash's objects",
		              k, r, trial.fired ? trial.s : NULL);
	else
		ok = stash_holds(left, n, k);
	kmem_cache_free(cache, r);
	if (trial.fired)
		kmem_cache_free(cache, trial.s);
	return ok;
}

/* Runs trials of op, interrupted by by, on a fresh cache, until one
 * finishes untouched; returns the trials that restarted a sequence. */
static unsigned run_trials(bool (*op)(unsigned k), enum interrupter by)
{
	unsigned restarts = 0;
	/* Its stash's objects, never the guarded pool's (mm.guard=1). */
	cache = kmem_cache_create_flags("rseq-stash", 64, 0, SLAB_SKIP_KFENCE,
	                                ctor);
	if (!cache) {
		ktest_fail_at(__FILE__, __LINE__, "no cache");
		return 0;
	}
	held.n = 0;
	restarts = trial_run(op, by, test_ipi);
	while (held.n)
		kmem_cache_free(cache, held.v[--held.n]);
	KEXPECT(objcache_own_check(cache));
	KEXPECT(kmem_cache_destroy(cache)); /* every object counted back */
	return restarts;
}

/* Poison mode keeps the fast ways off (o->fast): no sequence runs. */
#define SKIP_WITHOUT_FAST_WAYS()                                             \
	do {                                                                 \
		if (kspanheap.cfg.poison)                                    \
			KTEST_SKIP("mm.debug_poison: the stash's fast ways " \
			           "are off, so no sequence runs");          \
	} while (0)

/* The free's sequences: the push (objcache_stash_rseq.h), nine
 * instructions to its commit, then the count's (objcache.h), four; each
 * interrupted once before it ran, each such trial a restart. */
KTEST(rseq, kmem_cache_free_interrupted_at_every_step)
{
	SKIP_WITHOUT_FAST_WAYS();
	KEXPECT_EQ(run_trials(free_trial, BY_HOOK), 9 + 4);
}

/* The allocation's: the pop, eight, and the count's, four. */
KTEST(rseq, kmem_cache_alloc_interrupted_at_every_step)
{
	SKIP_WITHOUT_FAST_WAYS();
	KEXPECT_EQ(run_trials(alloc_trial, BY_HOOK), 8 + 4);
}

/* Through irq_dispatch's restart: an IPI at a sequence's first
 * instruction moves nothing, so one fewer a sequence. */
KTEST(rseq, kmem_cache_free_irq_at_every_step)
{
	SKIP_WITHOUT_FAST_WAYS();
	KEXPECT_EQ(run_trials(free_trial, BY_IPI), 9 - 1 + 4 - 1);
}

KTEST(rseq, kmem_cache_alloc_irq_at_every_step)
{
	SKIP_WITHOUT_FAST_WAYS();
	KEXPECT_EQ(run_trials(alloc_trial, BY_IPI), 8 - 1 + 4 - 1);
}
