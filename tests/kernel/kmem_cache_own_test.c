/*
 * Named caches with slabs of their own in the kernel
 * (kmem_cache_create_flags over mm/objcache_own.c), with the lock checker
 * on: a thread on every CPU and every CPU's timer interrupt take objects
 * of a ctor cache (each handed out must hold its constructed pattern,
 * which its user restores before the free) and replace objects of a
 * SLAB_TYPESAFE_BY_RCU cache in a table, freeing the old one at once,
 * while they and a reader thread look the table's objects up under
 * rcu_read_lock (the reader lingering inside its sections): every object
 * a reader finds, freed or not, is memory of the cache (the ctor's magic),
 * and counts as found only after its identity is rechecked. The frees go
 * through each CPU's stash, many to another CPU's than the allocation's.
 * At the end every ctor object is free in its slab or a stash, both
 * caches check clean (stashes included) and are destroyed (emptying
 * every CPU's stash; the typesafe one's destroy waits for its slabs'
 * grace periods), and after a release the frame pool holds what it held
 * after a warm-up run. kfree of such an object, a free
 * to the wrong cache and a ctor cache's double free are demos
 * (KTEST_FAIL_DEMO), checked by the harness.
 */
#include <stdatomic.h>

#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/kasan.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/rcu.h"
#include "kernel/thread.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/storm_util.h"

#define C_MAGIC 0xc7012c7012ull
#define T_MAGIC 0x7e5afe0b1ec7ull

struct cobj {
	uint64_t magic, pat[6], use;
	char pad[136];
};

struct tobj {
	_Atomic uint64_t magic; /* the ctor's, never changed */
	_Atomic uint64_t key;   /* slot and owner; 0: none */
	char body[2000];
};

enum { SLOTS = 64, KEEP = 8, OPS = 1500, IRQ_MIN = 100 };

static struct objcache *ctor_cache, *rcu_cache;
/* Plain pointers, read through rcu_dereference as RCU's users do (its
 * __atomic builtins take no _Atomic object under clang). */
static struct tobj *table[SLOTS];
static void *_Atomic irq_keep[MAX_CPUS];
static uint64_t irq_rnd[MAX_CPUS];
static _Atomic uint64_t n_bad, n_found, n_reader_passes, n_irq_allocs, n_nulls;
static _Atomic bool irq_on;
static _Atomic unsigned irq_inside, running;

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t pat_of(const void *p, int i)
{
	return (uintptr_t)p * 0x9e3779b97f4a7c15ull + (uint64_t)i;
}

/* A ctor for objects of any size from 8 bytes: one word. */
static void cobj_ctor_any(void *p)
{
	*(uint64_t *)p = C_MAGIC;
}

static void cobj_ctor(void *p)
{
	struct cobj *o = p;
	o->magic = C_MAGIC;
	for (int i = 0; i < 6; i++)
		o->pat[i] = pat_of(p, i);
	o->use = 0;
}

static void tobj_ctor(void *p)
{
	struct tobj *o = p;
	atomic_store_explicit(&o->magic, T_MAGIC, memory_order_relaxed);
	atomic_store_explicit(&o->key, 0, memory_order_relaxed);
}

/* The ctor cache: *slot's object back (its use undone), another taken
 * and checked as constructed. */
static void ctor_op(void **slot, uint64_t use, unsigned flags)
{
	struct cobj *o = *slot;
	if (o) {
		if (o->use != use)
			atomic_fetch_add(&n_bad, 1);
		o->use = 0;
		kmem_cache_free(ctor_cache, o);
	}
	*slot = o = kmem_cache_alloc(ctor_cache, flags);
	if (!o) {
		atomic_fetch_add(&n_nulls, !(flags & KM_ATOMIC));
		return;
	}
	bool built = o->magic == C_MAGIC && o->use == 0;
	for (int i = 0; i < 6; i++)
		built = built && o->pat[i] == pat_of(o, i);
	if (!built)
		atomic_fetch_add(&n_bad, 1);
	o->use = use;
}

/* The typesafe cache: slot r's object unpublished and freed at once;
 * every other time a new one published there. */
static void replace(uint64_t r, unsigned owner, unsigned flags)
{
	unsigned i = (unsigned)(r % SLOTS);
	struct tobj *old =
	        __atomic_exchange_n(&table[i], NULL, __ATOMIC_ACQ_REL);
	if (old) {
		atomic_store_explicit(&old->key, 0, memory_order_relaxed);
		kmem_cache_free(rcu_cache, old);
	}
	if ((r >> 8) % 2)
		return;
	struct tobj *o = kmem_cache_alloc(rcu_cache, flags);
	if (!o) {
		atomic_fetch_add(&n_nulls, !(flags & KM_ATOMIC));
		return;
	}
	if (atomic_load_explicit(&o->magic, memory_order_relaxed) != T_MAGIC)
		atomic_fetch_add(&n_bad, 1);
	atomic_store_explicit(&o->key, (uint64_t)owner << 32 | i | 1u << 16,
	                      memory_order_relaxed);
	struct tobj *none = NULL;
	if (!__atomic_compare_exchange_n(&table[i], &none, o, false,
	                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		atomic_store_explicit(&o->key, 0, memory_order_relaxed);
		kmem_cache_free(rcu_cache, o);
	}
}

/* One look at every slot inside a read-side section, lingering linger
 * rounds on each object found (a reader slow in its section). */
static void read_pass(unsigned linger)
{
	uint64_t found = 0, bad = 0;
	rcu_read_lock();
	for (unsigned i = 0; i < SLOTS; i++) {
		struct tobj *o = rcu_dereference(table[i]);
		if (!o)
			continue;
		uint64_t key = atomic_load(&o->key);
		for (unsigned k = 0; k <= linger; k++)
			bad += atomic_load_explicit(&o->magic,
			                            memory_order_relaxed) !=
			       T_MAGIC;
		if (rcu_dereference(table[i]) == o &&
		    atomic_load(&o->key) == key && key) {
			found++;
			bad += (key & 0xffff) != i;
		}
	}
	rcu_read_unlock();
	atomic_fetch_add(&n_found, found);
	atomic_fetch_add(&n_bad, bad);
}

static void irq_tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	if (atomic_load(&irq_on)) {
		unsigned cpu = this_cpu()->id;
		if (!irq_rnd[cpu])
			irq_rnd[cpu] = 0x2545f4914f6cdd1dull * (cpu + 1);
		uint64_t r = next_rand(&irq_rnd[cpu]);
		void *slot = atomic_load(&irq_keep[cpu]);
		ctor_op(&slot, 0x100 | cpu, KM_ATOMIC);
		atomic_store(&irq_keep[cpu], slot);
		replace(r, 0x100 | cpu, KM_ATOMIC);
		read_pass(0);
		atomic_fetch_add(&n_irq_allocs, 1);
	}
	atomic_fetch_sub(&irq_inside, 1);
}

static void worker(void *arg)
{
	unsigned owner = (unsigned)(uintptr_t)arg;
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (owner + 3);
	void *keep[KEEP] = {0};
	for (unsigned op = 0; op < OPS; op++) {
		uint64_t r = next_rand(&rnd);
		unsigned k = (unsigned)(r >> 20) % KEEP;
		ctor_op(&keep[k], owner << 8 | k, 0);
		replace(r, owner, 0);
		if (op % 8 == 0)
			read_pass(0);
		if (op % 64 == 0)
			thread_yield();
	}
	for (unsigned k = 0; k < KEEP; k++)
		if (keep[k]) {
			struct cobj *o = keep[k];
			if (o->use != (owner << 8 | k))
				atomic_fetch_add(&n_bad, 1);
			o->use = 0;
			kmem_cache_free(ctor_cache, o);
		}
	atomic_fetch_sub(&running, 1);
}

/* The lingering reader, beside the workers, until they are done. */
static void reader(void *arg)
{
	(void)arg;
	while (atomic_load(&running) > 0) {
		read_pass(50);
		atomic_fetch_add(&n_reader_passes, 1);
		if (atomic_load(&n_reader_passes) % 16 == 0)
			thread_yield();
	}
}

static void give_back_tobj(void *p)
{
	kmem_cache_free(rcu_cache, p);
}

static void give_back_cobj(void *p)
{
	((struct cobj *)p)->use = 0;
	kmem_cache_free(ctor_cache, p);
}

/* One run over a pair of caches made for it; false if they could not
 * be made. The caches are destroyed at its end. */
static bool storm(void)
{
	ctor_cache = kmem_cache_create_flags("ktest-ctor", sizeof(struct cobj),
	                                     0, 0, cobj_ctor);
	rcu_cache =
	        kmem_cache_create_flags("ktest-typesafe", sizeof(struct tobj),
	                                0, SLAB_TYPESAFE_BY_RCU, tobj_ctor);
	if (!ctor_cache || !rcu_cache)
		return false;
	atomic_store(&n_irq_allocs, 0);
	cpu_storm_run(
	        CPU_STORM("kcache-own", worker, irq_tick, .extra = reader));
	cpu_storm_give_back((void *_Atomic *)table, SLOTS, give_back_tobj);
	cpu_storm_give_back(irq_keep, MAX_CPUS, give_back_cobj);
	/* Every object back: free in its slab or in a CPU's stash, the
	 * stashes the CPUs' frees left (the destroy empties them all). */
	struct objcache_slabs s;
	objcache_slabs_info(ctor_cache, &s);
	KEXPECT(s.stashed > 0);
	KEXPECT_EQ(s.free_objs + s.stashed, s.slabs * s.objs_per_slab);
	KEXPECT(objcache_own_check(ctor_cache));
	KEXPECT(objcache_own_check(rcu_cache));
	KEXPECT(kmem_cache_destroy(ctor_cache));
	KEXPECT(kmem_cache_destroy(rcu_cache)); /* waits for grace periods */
	return true;
}

KTEST(kmem_cache, own_slabs_storm_with_rcu_readers_returns_every_frame)
{
	KASSERT(storm()); /* warm-up: growth and stacks in place */
	heap_settle();
	/* mm.kasan maps shadow pages for good as new arena pages are used
	 * (a storm whose slabs land elsewhere than the warm-up's maps some):
	 * span_meta_pages counts them. */
	size_t frames0 = frames_free_count(), meta0 = span_meta_pages();
	atomic_store(&n_bad, 0);
	atomic_store(&n_found, 0);
	KASSERT(storm());
	rcu_barrier();
	heap_settle();
	size_t meta = span_meta_pages();
	ktest_diag("readers found %lu objects (%lu lingering passes), %lu "
	           "interrupt rounds",
	           (unsigned long)atomic_load(&n_found),
	           (unsigned long)atomic_load(&n_reader_passes),
	           (unsigned long)atomic_load(&n_irq_allocs));
	KEXPECT_EQ(atomic_load(&n_bad), 0);
	KEXPECT_EQ(atomic_load(&n_nulls), 0);
	KEXPECT(atomic_load(&n_found) > 0);
	KEXPECT_EQ(frames_free_count() + (meta - meta0), frames0);
	spanheap_check(&kspanheap);
}

/* The shadow under mm.kasan: a ctor cache's object accessible while it
 * is out and freed once given back;
 * a typesafe cache's accessible after its free, for its readers. */
KTEST(kmem_cache, own_objects_shadow_follows_alloc_and_free)
{
	if (!kasan_enabled())
		KTEST_SKIP("needs mm.kasan");
	struct objcache *c = kmem_cache_create_flags(
	        "ktest-shadow", 40, 0, SLAB_SKIP_KFENCE, cobj_ctor_any);
	struct objcache *t = kmem_cache_create_flags(
	        "ktest-shadow-rcu", 40, 0,
	        SLAB_TYPESAFE_BY_RCU | SLAB_SKIP_KFENCE, NULL);
	KASSERT(c && t);
	bool mapped;
	char *p = kmem_cache_alloc(c, 0), *q = kmem_cache_alloc(t, 0);
	KASSERT(p && q);
	KEXPECT_EQ(kasan_shadow_of(p, &mapped), 0);
	KEXPECT(mapped);
	kmem_cache_free(c, p);
	KEXPECT_STREQ(kasan_kind(kasan_shadow_of(p, &mapped)),
	              "use-after-free");
	kmem_cache_free(t, q);
	KEXPECT_EQ(kasan_shadow_of(q, &mapped), 0);
	KEXPECT(kmem_cache_destroy(c));
	KEXPECT(kmem_cache_destroy(t));
}

#ifdef KTEST_FAIL_DEMO
/* A SLAB_TYPESAFE_BY_RCU cache's object given to kfree: the span heap
 * names the cache (the object lies inside its slab, a large span of its
 * own). The pointer printed first: the harness checks the panic names it. */
KTEST(demo, kfree_of_a_typesafe_cache_object)
{
	struct objcache *c = kmem_cache_create_flags(
	        "demo-sighand", 96, 0, SLAB_TYPESAFE_BY_RCU, NULL);
	void *p = kmem_cache_alloc(c, 0);
	ktest_diag("kfree of %p", p);
	kfree(p);
}

/* A ctor cache's object freed to another cache with slabs of its own. */
KTEST(demo, kmem_cache_free_to_the_wrong_own_cache)
{
	struct objcache *a =
	        kmem_cache_create_flags("demo-inode", 96, 0, 0, tobj_ctor);
	struct objcache *b = kmem_cache_create_flags(
	        "demo-sock", 96, 0, SLAB_TYPESAFE_BY_RCU, NULL);
	void *p = kmem_cache_alloc(a, 0);
	ktest_diag("kfree of %p", p);
	kmem_cache_free(b, p);
}

/* A ctor cache's object freed twice: the first free put it in this
 * CPU's stash, and its slab's stashed bit tells the second. */
KTEST(demo, kmem_cache_ctor_object_double_free)
{
	struct objcache *c =
	        kmem_cache_create_flags("demo-ctor", 96, 0, 0, tobj_ctor);
	void *p = kmem_cache_alloc(c, 0);
	ktest_diag("kfree of %p", p);
	kmem_cache_free(c, p);
	kmem_cache_free(c, p);
}
#endif
