/*
 * Caches with slabs of their own under threads (mm/objcache_own.c through
 * the POSIX port), built for ThreadSanitizer too (make test-tsan). Two
 * workers allocate from and free to a ctor cache, checking that every
 * object handed out holds its constructed pattern (the ctor's, which
 * each user restores before its free, as Linux's contract asks) and
 * nothing of another user's; two writers replace objects of a
 * TYPESAFE_BY_RCU cache in a table readers look them up in, freeing the
 * old one at once; two readers walk the table inside read-side sections
 * (a writer-preferring reader-writer lock stands for rcu_read_lock) and
 * read each object found, freed or not (in the page heap's debug mode,
 * where a page given back is unmapped at once): its memory must always be an
 * object of the cache (the ctor's magic), and its identity is rechecked
 * (the slot still holds it, its key unchanged) before it counts as
 * found. Each thread is a CPU of its own, so frees go through that
 * CPU's stash (objcache_stash.c): the writers free each other's objects,
 * and the workers hand every eighth object over to each other, so many
 * frees land in another CPU's stash than the allocation's. The main thread
 * runs the grace periods: it takes the queue of emptied slabs, waits out
 * the readers (the write lock), then lets them go back to the heap; after
 * each period it checks both caches live, stashes included
 * (objcache_own_check, which holds each other CPU while it reads its
 * stash). Each side's objects come from slabs emptied and made again
 * meanwhile. At the end every object is freed: each slab's objects are
 * all free in it or in a stash; the last grace period is run, the caches
 * checked, shrunk (no stash or slab left), destroyed, and the heap
 * checked with every page back. Bounded by operation counts.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "../../mm/objcache_own.h"
#include "mm_port_posix.h"
#include "port_test_util.h"
#include "spanheap_test_util.h"
#include "stress_util.h"

enum { WORKERS = 2, WRITERS = 2, READERS = 2, KEEP = 48, SLOTS = 64 };
enum { THREADS = WORKERS + WRITERS + READERS, PAT = 5 };

#define MAGIC   0x7e5afe0b1ec7ull
#define C_MAGIC 0xc7012ull
/* The bytes of the typesafe cache's slab (7 pages), for the scribbles. */
#define SCRIBBLE (7 * 4096 - 64)

static struct mheap heap;
static struct spanheap sh;
static struct objcache *ctor_cache, *rcu_cache;

/* The ctor cache's object: its magic and pattern from the ctor, use 0.
 * Sizes that give slabs of 11 and 4 objects: slabs empty and are made
 * again often. */
struct cobj {
	uint64_t magic, pat[PAT], use;
	char pad[1000];
};

/* The typesafe cache's: read by readers after its free, so atomic. */
struct tobj {
	_Atomic uint64_t magic; /* the ctor's, never changed */
	_Atomic uint64_t key;   /* writer, slot and operation; 0: none */
	char body[7000 - 16];
};

static struct tobj *_Atomic table[SLOTS];
static pthread_rwlock_t readers;
static _Atomic int writing;             /* workers and writers still running */
static _Atomic int started;             /* threads at the start line */
static _Atomic unsigned long passes;    /* the readers' passes, all */
static _Atomic unsigned long found_all; /* and the objects they found */

struct role {
	int id;
	uint64_t rng;
	unsigned long found, reused;
	struct stress_failures failures;
};
static struct role roles[THREADS];
/* Objects one worker hands the other (constructed again): freed by it. */
static struct cobj *_Atomic handoff[WORKERS];

static uint64_t pat_of(const void *p, int i)
{
	return (uintptr_t)p * 0x9e3779b97f4a7c15ull + (uint64_t)i;
}

static void cobj_ctor(void *p)
{
	struct cobj *o = p;
	o->magic = C_MAGIC;
	for (int i = 0; i < PAT; i++)
		o->pat[i] = pat_of(p, i);
	o->use = 0;
}

static void tobj_ctor(void *p)
{
	struct tobj *o = p;
	atomic_store_explicit(&o->magic, MAGIC, memory_order_relaxed);
	atomic_store_explicit(&o->key, 0, memory_order_relaxed);
}

/* Whether o, handed out or freed, is still an object of the typesafe
 * cache: the ctor's magic, which nothing else writes. */
static bool has_magic(struct tobj *o)
{
	return atomic_load_explicit(&o->magic, memory_order_relaxed) == MAGIC;
}

static bool constructed(const struct cobj *o)
{
	if (o->magic != C_MAGIC || o->use != 0)
		return false;
	for (int i = 0; i < PAT; i++)
		if (o->pat[i] != pat_of(o, i))
			return false;
	return true;
}

/* A handed-over object (constructed again by its giver), checked and
 * freed on this CPU. */
static void free_handed(struct role *r, struct cobj *o, uint64_t tag)
{
	if (!constructed(o))
		stress_fail(&r->failures,
		            "object %p handed over not as constructed (tag "
		            "%llx)",
		            (void *)o, (unsigned long long)tag);
	objcache_free(ctor_cache, o);
}

/* o goes to the other worker, to be freed on its CPU (one it has not
 * taken yet is freed here); the one that worker left for this one is
 * freed here. */
static void handover(struct role *r, struct cobj *o, uint64_t tag)
{
	struct cobj *old = atomic_exchange(&handoff[(r->id + 1) % WORKERS], o);
	if (old)
		free_handed(r, old, tag);
	struct cobj *got = atomic_exchange(&handoff[r->id], NULL);
	if (got)
		free_handed(r, got, tag);
}

static void worker(struct role *r, int ops)
{
	struct cobj *keep[KEEP] = {0};
	for (int op = 0; op < ops; op++) {
		unsigned k = (unsigned)(stress_random(&r->rng) % KEEP);
		uint64_t tag = (uint64_t)r->id << 32 | (uint64_t)op;
		if (keep[k]) {
			if (keep[k]->use != keep[k]->magic + k)
				stress_fail(&r->failures,
				            "object %p: its use "
				            "changed while held",
				            (void *)keep[k]);
			keep[k]->use = 0; /* constructed again */
			if (op % 8 == 0)
				handover(r, keep[k], tag);
			else
				objcache_free(ctor_cache, keep[k]);
		}
		struct cobj *o = keep[k] = objcache_alloc(ctor_cache, 0);
		if (!o) {
			stress_fail(&r->failures, "allocation %d failed", op);
			continue;
		}
		if (!constructed(o))
			stress_fail(&r->failures,
			            "object %p handed out not as "
			            "constructed (tag %llx)",
			            (void *)o, (unsigned long long)tag);
		o->use = o->magic + k;
	}
	for (unsigned k = 0; k < KEEP; k++)
		if (keep[k]) {
			keep[k]->use = 0;
			objcache_free(ctor_cache, keep[k]);
		}
}

/* Pages a slab gave back too early would be rewritten here, under a
 * reader: large objects of a slab's size, a few at once, on the writer's
 * CPU (whose page cache holds the pages its frees gave back). */
static void scribble(void)
{
	char *big[4];
	for (int b = 0; b < 4; b++)
		if ((big[b] = spanheap_alloc(&sh, SCRIBBLE, 0)))
			memset(big[b], 0xa5, SCRIBBLE);
	for (int b = 0; b < 4; b++)
		spanheap_free(&sh, big[b]);
}

/* Alternate phases of 1024 operations: frees (the table drains and
 * whole slabs empty, to wait for a grace period), then allocations into
 * empty slots (slabs are made again, or taken back from the kept one). A
 * free goes to the slot first, so a reader may still hold the object. */
static void writer(struct role *r, int ops)
{
	/* Past ops until the readers have made their passes: a writer's
	 * operation costs nothing when its slot is taken already. */
	for (int op = 0; op < ops || atomic_load(&passes) < 4000 ||
	                 atomic_load(&found_all) < 1000;
	     op++) {
		unsigned i = (unsigned)(stress_random(&r->rng) % SLOTS);
		bool draining = op / 1024 % 2;
		if (draining) {
			struct tobj *old = atomic_exchange(&table[i], NULL);
			if (old) { /* unpublished: its identity, then it */
				atomic_store_explicit(&old->key, 0,
				                      memory_order_relaxed);
				objcache_free(rcu_cache, old);
				scribble();
			}
			continue;
		}
		if (atomic_load(&table[i]))
			continue;
		struct tobj *o = objcache_alloc(rcu_cache, 0);
		if (!o) {
			stress_fail(&r->failures, "allocation %d failed", op);
			continue;
		}
		if (!has_magic(o))
			stress_fail(&r->failures,
			            "object %p without its "
			            "magic",
			            (void *)o);
		uint64_t key = (uint64_t)r->id << 48 | (uint64_t)i << 32 |
		               (uint32_t)op | 1u;
		atomic_store_explicit(&o->key, key, memory_order_relaxed);
		struct tobj *none = NULL;
		if (!atomic_compare_exchange_strong(&table[i], &none, o)) {
			atomic_store_explicit(&o->key, 0, memory_order_relaxed);
			objcache_free(rcu_cache, o); /* the other writer's */
		}
	}
}

/* One pass over the table in a read-side section. */
static void read_pass(struct role *r)
{
	unsigned long before = r->found;
	pthread_rwlock_rdlock(&readers);
	for (unsigned i = 0; i < SLOTS; i++) {
		struct tobj *o =
		        atomic_load_explicit(&table[i], memory_order_acquire);
		if (!o)
			continue;
		/* Freed or not, still an object of the cache. */
		if (!has_magic(o))
			stress_fail(&r->failures,
			            "slot %u: %p is no object "
			            "of the cache",
			            i, (void *)o);
		uint64_t key =
		        atomic_load_explicit(&o->key, memory_order_acquire);
		/* A reader held up inside its section (preempted): the
		 * object may be freed and its slab emptied meanwhile; its
		 * memory must stay the cache's until the section ends. */
		if (i % 8 == 0) {
			sched_yield();
			if (!has_magic(o))
				stress_fail(&r->failures,
				            "slot %u: %p is no object of the "
				            "cache after a wait",
				            i, (void *)o);
		}
		/* The identity recheck: still in the slot, key unchanged. */
		if (atomic_load_explicit(&table[i], memory_order_acquire) ==
		            o &&
		    atomic_load_explicit(&o->key, memory_order_relaxed) ==
		            key &&
		    key) {
			r->found++;
			if ((key >> 32 & 0xffff) != i)
				stress_fail(&r->failures,
				            "slot %u holds a key "
				            "of slot %llu",
				            i,
				            (unsigned long long)(key >> 32 &
				                                 0xffff));
		} else {
			r->reused++;
		}
	}
	pthread_rwlock_unlock(&readers);
	atomic_fetch_add(&passes, 1);
	atomic_fetch_add(&found_all, r->found - before);
}

static void run_role(void *arg)
{
	struct role *r = arg;
	mm_port_set_cpu((unsigned)r->id);
	/* All at once: the readers overlap the writers whatever the
	 * order the threads were started in. */
	atomic_fetch_add(&started, 1);
	while (atomic_load(&started) < THREADS)
		sched_yield();
	if (r->id < WORKERS)
		worker(r, 20000);
	else if (r->id < WORKERS + WRITERS)
		writer(r, 20000);
	else
		while (atomic_load(&writing) > 0)
			read_pass(r);
	if (r->id < WORKERS + WRITERS) {
		spanheap_flush_cache(&sh);
		atomic_fetch_sub(&writing, 1);
	}
}

/* A grace period: the slabs queued so far go back once every read-side
 * section open now has ended. Returns the slabs given back. */
static size_t grace_period(void)
{
	struct mm_rcu_head *queued = mm_port_posix_rcu_take();
	pthread_rwlock_wrlock(&readers);
	pthread_rwlock_unlock(&readers);
	return mm_port_posix_rcu_run(queued);
}

/* The page heap's debug mode: a page given back is unmapped at once, so
 * a reader of a slab freed too early faults. */
static bool heap_make(void)
{
	struct mheap_config hc;
	struct spanheap_config sc;
	mheap_config_default(&hc);
	spanheap_config_default(&sc);
	hc.arena_bytes = SH_ARENA_BYTES;
	hc.flags = MHEAP_DEBUG_SCAV_ON_FREE;
	return sh_heap_new_with(&heap, &sh, &hc, &sc);
}

/* Nothing out: every object of c's slabs free in its slab or in a
 * stash, and some in the stashes (the frees went through them). */
static bool all_free(struct objcache *c)
{
	struct objcache_slabs s;
	objcache_slabs_info(c, &s);
	ktest_diag("%s: %zu slabs of %zu objects, %zu free in them, %zu "
	           "stashed",
	           c->name, s.slabs, s.objs_per_slab, s.free_objs, s.stashed);
	return s.stashed > 0 &&
	       s.free_objs + s.stashed == s.slabs * s.objs_per_slab;
}

/* The end: every object freed, each slab's objects all free or stashed,
 * the caches checked, shrunk to nothing (every CPU's stash) and
 * destroyed. */
static void finish_caches(void)
{
	for (unsigned i = 0; i < SLOTS; i++)
		objcache_free(rcu_cache, atomic_exchange(&table[i], NULL));
	for (unsigned i = 0; i < WORKERS; i++)
		objcache_free(ctor_cache, atomic_exchange(&handoff[i], NULL));
	grace_period();
	KEXPECT(all_free(ctor_cache) && all_free(rcu_cache));
	KEXPECT(objcache_own_check(ctor_cache));
	KEXPECT(objcache_own_check(rcu_cache));
	objcache_shrink(ctor_cache);
	objcache_shrink(rcu_cache);
	grace_period();
	struct objcache_slabs a, b;
	objcache_slabs_info(ctor_cache, &a);
	objcache_slabs_info(rcu_cache, &b);
	KEXPECT_EQ(a.slabs + a.stashed + b.slabs + b.stashed + b.pending, 0);
	KEXPECT(objcache_destroy(ctor_cache));
	KEXPECT(objcache_destroy(rcu_cache));
}

KTEST(objcache_own_stress, typesafe_readers_see_objects_while_ctor_holds)
{
	KASSERT(heap_make());
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(
	        &ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	KASSERT(pthread_rwlock_init(&readers, &ra) == 0);
	KASSERT(ctor_cache = objcache_create_flags(&sh, "stress-ctor",
	                                           sizeof(struct cobj), 0, 0,
	                                           cobj_ctor));
	KASSERT(rcu_cache = objcache_create_flags(
	                &sh, "stress-rcu", sizeof(struct tobj), 0,
	                OBJCACHE_TYPESAFE_BY_RCU, tobj_ctor));
	for (int i = 0; i < THREADS; i++)
		roles[i] = (struct role){.id = i,
		                         .rng = 0x2545f4914f6cdd1dull *
		                                (uint64_t)(i + 1)};
	atomic_store(&writing, WORKERS + WRITERS);
	atomic_store(&started, 0);
	atomic_store(&passes, 0);
	atomic_store(&found_all, 0);
	struct mm_thread *t[THREADS];
	mm_port_set_cpu(THREADS);
	KASSERT(start_all(t, THREADS, run_role, roles, sizeof(*roles)));
	size_t periods = 0, slabs = 0, checks = 0;
	bool clean = true;
	while (atomic_load(&writing) > 0) {
		slabs += grace_period();
		periods++;
		clean = clean && objcache_own_check(ctor_cache) &&
		        objcache_own_check(rcu_cache);
		checks++;
		sched_yield();
	}
	join_all(t, THREADS);
	KEXPECT(clean);
	unsigned long found = 0, reused = 0;
	for (int i = 0; i < THREADS; i++) {
		STRESS_REPORT(i, &roles[i].failures);
		found += roles[i].found;
		reused += roles[i].reused;
	}
	ktest_diag("%zu grace periods gave back %zu slabs, %zu live checks; "
	           "readers found %lu objects, %lu reused under them",
	           periods, slabs, checks, found, reused);
	KEXPECT(found > 0);
	finish_caches();
	pthread_rwlock_destroy(&readers);
	mm_port_set_cpu(0);
	sh_flush_cpus(&sh, THREADS + 1);
	spanheap_check(&sh);
	spanheap_release_all(&sh);
	SH_EXPECT_ONLY_KEPT(&heap, &sh);
	SH_CHECK(&sh, "at the end");
	sh_heap_release(&heap, &sh);
}
