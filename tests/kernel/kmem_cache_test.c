/*
 * Named object caches in the kernel (kernel/heap.h's kmem_cache over
 * mm/objcache.c), with the lock checker on: threads on every CPU and
 * every CPU's timer interrupt allocate from two caches and free, frees
 * crossing CPUs, and each cache counts 0 at the end and is destroyed; a
 * cache with objects out is not destroyed, and the line says how many;
 * thread structs are counted in the "thread" cache while their threads
 * live; bad requests are refused; slabinfo lists the caches, and
 * alloctraces takes a cache's name and lists its own objects alone (poison
 * mode, where a refused destroy lists them too). The wrong cache's free,
 * and in poison mode one of the same class and a kfree of a cache's
 * object and an allocation from a destroyed cache, are demos
 * (KTEST_FAIL_DEMO), checked by the harness.
 */
#include <stdatomic.h>

#include "kernel/format.h"
#include "kernel/heap.h"
#include "kernel/kmem_cache.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/sched.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "tests/kernel/capture_util.h"
#include "tests/kernel/storm_util.h"

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Two caches; an object's first word says which and who filled it, and
 * every 32nd byte after it holds a pattern of its address. */
static struct objcache *caches[2];
static const size_t sizes[2] = {72, 1500};

static uint64_t pattern(const void *p, size_t off)
{
	return ((uintptr_t)p + off) * 0x9e3779b97f4a7c15ull;
}

static void obj_fill(uint64_t *p, unsigned which, unsigned owner)
{
	p[0] = (uint64_t)owner << 8 | which;
	for (size_t off = 32; off + 8 <= sizes[which]; off += 32)
		p[off / 8] = pattern(p, off);
}

static _Atomic uint64_t n_bad, n_allocs, n_irq_allocs, n_nulls;

static void check_and_free(void *obj)
{
	uint64_t *p = obj;
	unsigned which = (unsigned)(p[0] & 0xff);
	if (which > 1) {
		atomic_fetch_add(&n_bad, 1);
		return; /* which cache is not known: left, and counted */
	}
	for (size_t off = 32; off + 8 <= sizes[which]; off += 32)
		if (p[off / 8] != pattern(p, off)) {
			atomic_fetch_add(&n_bad, 1);
			break;
		}
	kmem_cache_free(caches[which], p);
}

#define HANDOFF  32
#define IRQ_KEEP 4
static void *_Atomic handoff[HANDOFF]; /* displaced: freed by the putter */
/* Row c, IRQ_KEEP slots: CPU c's handler's (an atomic slot for
 * cpu_storm_give_back; the handler alone uses its row meanwhile). */
static void *_Atomic irq_keep[MAX_CPUS * IRQ_KEEP];
static uint64_t irq_rnd[MAX_CPUS];
static _Atomic bool irq_on;
static _Atomic unsigned irq_inside;
static _Atomic unsigned running;

static void hand_off(uint64_t *p, uint64_t *rnd)
{
	uint64_t *old = atomic_exchange(&handoff[next_rand(rnd) % HANDOFF], p);
	if (old)
		check_and_free(old);
}

static void irq_work(void)
{
	unsigned cpu = this_cpu()->id;
	if (!irq_rnd[cpu])
		irq_rnd[cpu] = 0x2545f4914f6cdd1dull * (cpu + 1);
	uint64_t r = next_rand(&irq_rnd[cpu]);
	void *_Atomic *slot = &irq_keep[cpu * IRQ_KEEP + r % IRQ_KEEP];
	uint64_t *p = atomic_load(slot);
	if (p)
		check_and_free(p);
	unsigned which = (unsigned)(r >> 8) % 2;
	atomic_store(slot, p = kmem_cache_alloc(caches[which], KM_ATOMIC));
	if (!p)
		return; /* KM_ATOMIC may get NULL: not a failure */
	obj_fill(p, which, 0x100 | cpu);
	atomic_fetch_add(&n_irq_allocs, 1);
	if (r % 4 == 1) {
		atomic_store(slot, NULL);
		hand_off(p, &irq_rnd[cpu]);
	}
}

static void irq_tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	if (atomic_load(&irq_on))
		irq_work();
	atomic_fetch_sub(&irq_inside, 1);
}

enum { OPS = 4000, LIVE = 16, IRQ_MIN = 100 };

static void worker(void *arg)
{
	unsigned owner = (unsigned)(uintptr_t)arg;
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (owner + 3);
	uint64_t *live[LIVE] = {0};
	for (unsigned i = 0; i < OPS; i++) {
		uint64_t r = next_rand(&rnd);
		uint64_t **s = &live[r % LIVE];
		if (*s && (r >> 8) % 4 == 0)
			hand_off(*s, &rnd);
		else if (*s)
			check_and_free(*s);
		unsigned which = (unsigned)(r >> 16) % 2;
		*s = kmem_cache_alloc(caches[which], 0);
		if (*s) {
			obj_fill(*s, which, owner);
			atomic_fetch_add(&n_allocs, 1);
		} else {
			atomic_fetch_add(&n_nulls, 1);
		}
		if (i % 64 == 0)
			thread_yield();
	}
	for (unsigned k = 0; k < LIVE; k++)
		if (live[k])
			check_and_free(live[k]);
	atomic_fetch_sub(&running, 1);
}

static int64_t live_of(struct objcache *c)
{
	struct objcache_info in;
	objcache_info(c, &in);
	return in.live;
}

/* Starts a worker on every online CPU and the tick hook; waits for them
 * and IRQ_MIN interrupt allocations; frees what is left. */
static bool run_all(void)
{
	cpu_storm_run(CPU_STORM("kcache", worker, irq_tick));
	cpu_storm_give_back(handoff, HANDOFF, check_and_free);
	cpu_storm_give_back(irq_keep, MAX_CPUS * IRQ_KEEP, check_and_free);
	return true;
}

KTEST(kmem_cache, every_cpu_and_interrupts_count_true_and_destroy)
{
	KASSERT(caches[0] = kmem_cache_create("ktest-small", sizes[0], 0));
	KASSERT(caches[1] = kmem_cache_create("ktest-big", sizes[1], 64));
	KASSERT(run_all());
	ktest_diag("%lu allocations by threads, %lu by interrupt handlers",
	           (unsigned long)atomic_load(&n_allocs),
	           (unsigned long)atomic_load(&n_irq_allocs));
	KEXPECT_EQ(atomic_load(&n_bad), 0);
	KEXPECT_EQ(atomic_load(&n_nulls), 0);
	KEXPECT(atomic_load(&n_irq_allocs) >= IRQ_MIN);
	for (int i = 0; i < 2; i++) {
		KEXPECT_EQ(live_of(caches[i]), 0);
		KEXPECT(kmem_cache_destroy(caches[i]));
	}
	spanheap_check(&kspanheap);
}

#if KTEST_HOOKS
/* A leak's stack, for the destroy's report. */
__attribute__((noinline)) static void *leak_here(struct objcache *c)
{
	void *p = kmem_cache_zalloc(c, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

KTEST(kmem_cache, destroy_with_objects_out_is_refused_saying_how_many)
{
	struct objcache *c = kmem_cache_create("ktest-leak", 100, 0);
	KASSERT(c);
	void *p[3];
	/* One call site, so that the three share a stack: unrolled (as
	 * clang -O2 unrolls it, and gcc -O2 with UBSan), each call has its
	 * own return address, and the report has three groups of one. */
#pragma GCC unroll 1
	for (int i = 0; i < 3; i++)
		KASSERT(p[i] = leak_here(c));
	capture_start();
	bool gone = kmem_cache_destroy(c);
	capture_stop();
	KEXPECT(!gone);
	KEXPECT(seen_has("objcache: cache 'ktest-leak' not destroyed: objects "
	                 "of it still allocated: 3"));
	/* Poison mode: and by the stack that allocated them. */
	KEXPECT_EQ(seen_has("cache 'ktest-leak''s live objects by the stack "
	                    "that allocated them"),
	           kspanheap.track);
	if (kspanheap.track) {
		KEXPECT(seen_has("3 objects, 300 bytes, the oldest "));
		KEXPECT(seen_has(" leak_here+0x"));
	}
	/* slabinfo lists it, with its objects and their bytes. */
	KEXPECT_EQ(capture_run_line("slabinfo"), SHELL_OK);
	const char *row = strstr(seen, "\nktest-leak ");
	KASSERT(row);
	row += strlen("\nktest-leak ");
	uint64_t size = number_at(&row), align = number_at(&row);
	uint64_t objsize = number_at(&row), cls = number_at(&row);
	uint64_t out = number_at(&row), bytes = number_at(&row);
	KEXPECT_EQ(size, 100);
	KEXPECT_EQ(align, 16);
	KEXPECT(objsize >= 100 && cls > 0);
	KEXPECT_EQ(out, 3);
	KEXPECT_EQ(bytes, 3 * objsize);
	KEXPECT(seen_has("named caches"));
	for (int i = 0; i < 3; i++)
		kmem_cache_free(c, p[i]);
	KEXPECT(kmem_cache_destroy(c));
	KEXPECT_EQ(capture_run_line("slabinfo"), SHELL_OK);
	KEXPECT(!strstr(seen, "ktest-leak"));
}

static void stash_ctor(void *p)
{
	memset(p, 0x5a, 48);
}

/* slabinfo's row of a cache with slabs of its own ends with the objects
 * its CPUs' stashes hold, neither in use nor free in its slabs: those
 * the frees left there (and the refill's rest), none after a shrink. */
KTEST(kmem_cache, slabinfo_counts_an_own_caches_stashed_objects)
{
	struct objcache *c = kmem_cache_create_flags(
	        "ktest-stashed", 48, 0, SLAB_SKIP_KFENCE, stash_ctor);
	KASSERT(c);
	void *p[3];
	for (int i = 0; i < 3; i++)
		KASSERT(p[i] = kmem_cache_alloc(c, 0));
	for (int i = 0; i < 3; i++)
		kmem_cache_free(c, p[i]);
	for (int round = 0; round < 2; round++) {
		struct objcache_slabs s;
		objcache_slabs_info(c, &s);
		KEXPECT(round ? s.stashed == 0 : s.stashed >= 3);
		KEXPECT_EQ(capture_run_line("slabinfo"), SHELL_OK);
		KEXPECT(seen_has(" stashed\n"));
		const char *row = strstr(seen, "\nktest-stashed ");
		KASSERT(row);
		row += strlen("\nktest-stashed ");
		for (int col = 0; col < 3; col++) /* size, align, object */
			number_at(&row);
		while (*row == ' ')
			row++;
		KEXPECT(!strncmp(row, "own ", 4));
		row += 4;
		uint64_t out = number_at(&row), bytes = number_at(&row);
		uint64_t slabs = number_at(&row), pending = number_at(&row);
		KEXPECT_EQ(out + bytes + pending, 0);
		KEXPECT_EQ(slabs, s.slabs);
		KEXPECT_EQ(number_at(&row), s.stashed);
		kmem_cache_shrink(c);
	}
	KEXPECT(kmem_cache_destroy(c));
}

/* Objects of a cache from one function, for alloctraces. */
__attribute__((noinline)) static void *cache_alloc_here(struct objcache *c)
{
	void *p = kmem_cache_alloc(c, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

__attribute__((noinline)) static void *kmalloc_here(size_t size)
{
	void *p = kmalloc(size, 0);
	__asm__ volatile("" ::: "memory"); /* no tail call */
	return p;
}

KTEST(kmem_cache, alloctraces_counts_a_caches_own_objects_by_stack)
{
	struct objcache *c = kmem_cache_create("ktest-traced", 2900, 0);
	struct objcache *big = kmem_cache_create("ktest-big", 100000, 0);
	KASSERT(c && big);
	static void *p[12], *k[5];
	/* One call site, one stack, as above: clang -O2 unrolls it. */
#pragma GCC unroll 1
	for (int i = 0; i < 12; i++)
		KASSERT((p[i] = cache_alloc_here(c)) != NULL);
	/* kmalloc's objects of its class: not the cache's. */
	for (int i = 0; i < 5; i++)
		KASSERT((k[i] = kmalloc_here(2900)) != NULL);
	enum shell_status st = capture_run_line("alloctraces ktest-traced");
	if (!kspanheap.track) {
		KEXPECT_EQ(st, SHELL_FAILED);
		KEXPECT(seen_has("the heap keeps no records"));
	} else {
		KEXPECT_EQ(st, SHELL_OK);
		KEXPECT(seen_has("cache 'ktest-traced' (size class "));
		KEXPECT(seen_has("\n12 objects, 34800 bytes, the oldest "));
		KEXPECT(seen_has(" cache_alloc_here+0x"));
		KEXPECT(!seen_has(" kmalloc_here")); /* .constprop too */
		/* The class's listing has both. */
		char line[40];
		ksnprintf(line, sizeof(line), "alloctraces %u",
		          spanheap_class_serving(&kspanheap, 2900, 16));
		KEXPECT_EQ(capture_run_line(line), SHELL_OK);
		KEXPECT(seen_has(" cache_alloc_here+0x"));
		KEXPECT(seen_has(" kmalloc_here"));
	}
	for (int i = 0; i < 5; i++)
		kfree(k[i]);
	KEXPECT_EQ(capture_run_line("alloctraces ktest-big"), SHELL_USAGE);
	KEXPECT(seen_has("alloctraces: cache 'ktest-big' has large objects"));
	for (int i = 0; i < 12; i++)
		kmem_cache_free(c, p[i]);
	KEXPECT(kmem_cache_destroy(c) && kmem_cache_destroy(big));
}

KTEST(kmem_cache, bad_requests_are_refused)
{
	capture_start();
	struct objcache *dup = kmem_cache_create("thread", 64, 0);
	struct objcache *zero = kmem_cache_create("ktest-zero", 0, 0);
	struct objcache *odd = kmem_cache_create("ktest-odd", 64, 48);
	capture_stop();
	KEXPECT(!dup && !zero && !odd);
	KEXPECT(seen_has("cache 'thread' refused: the name is another "
	                 "cache's"));
	KEXPECT(seen_has("size 0"));
	KEXPECT(seen_has("an alignment neither a power of two"));
}
#endif

/* The "thread" cache's line of the listing: its objects out. */
static int64_t threads_counted(void)
{
	static struct objcache_info in[OBJCACHE_MAX];
	size_t n = objcache_list(&kspanheap, in, OBJCACHE_MAX);
	for (size_t i = 0; i < n && i < OBJCACHE_MAX; i++)
		if (!strcmp(in[i].name, "thread"))
			return in[i].live;
	return -1;
}

static _Atomic bool hold;

static void held(void *arg)
{
	while (atomic_load(&hold))
		thread_sleep_ns(1000000);
}

KTEST(kmem_cache, thread_structs_are_counted_while_their_threads_live)
{
	int64_t before = threads_counted();
	KASSERT(before > 0); /* the heap's own threads, the shell's */
	atomic_store(&hold, true);
	struct thread_handle t[3];
	for (int i = 0; i < 3; i++) {
		t[i] = thread_create("ktest-held", held, NULL, THREAD_ANY_CPU);
		KASSERT(thread_handle_ok(t[i]));
	}
	KEXPECT_EQ(threads_counted(), before + 3);
	/* Poison mode: what the struct's address is names its cache. */
	char line[40];
	ksnprintf(line, sizeof(line), "addrinfo %p", (void *)t[0].t);
	KEXPECT_EQ(capture_run_line(line), SHELL_OK);
	/* A struct the guarded pool took (mm.guard) is named as its. */
	KEXPECT(seen_has(spanheap_guard_owns(&kspanheap.guard, t[0].t)
	                         ? "guarded object"
	                         : "(allocated) of span"));
	KEXPECT(seen_has("allocated"));
	KEXPECT_EQ(seen_has("cache 'thread''s"), kspanheap.cfg.poison);
	atomic_store(&hold, false);
	for (int i = 0; i < 3; i++)
		thread_join(t[i]);
	KEXPECT_EQ(threads_counted(), before);
}

#ifdef KTEST_FAIL_DEMO
/* An object of a new cache named a of size sa freed to a new one named b
 * of size sb; the pointer printed first: the harness checks the panic
 * names it. */
static void free_to_another(const char *a, size_t sa, const char *b, size_t sb)
{
	struct objcache *from = kmem_cache_create(a, sa, 0);
	struct objcache *to = kmem_cache_create(b, sb, 0);
	void *p = kmem_cache_alloc(from, 0);
	ktest_diag("kfree of %p", p);
	kmem_cache_free(to, p);
}

KTEST(demo, kmem_cache_free_to_the_wrong_cache)
{
	free_to_another("demo-small", 48, "demo-big", 256);
}

/* mm.debug_poison: two caches of one class; each object knows its own. */
KTEST(demo, kmem_cache_free_to_a_cache_of_its_class)
{
	free_to_another("demo-inode", 40, "demo-dentry", 40);
}

/* mm.debug_poison: a cache's object given to kfree. */
KTEST(demo, kfree_of_a_kmem_cache_object)
{
	struct objcache *a = kmem_cache_create("demo-inode", 40, 0);
	void *p = kmem_cache_alloc(a, 0);
	ktest_diag("kfree of %p", p);
	kfree(p);
}

/* mm.debug_poison: an allocation from a destroyed cache, whose struct
 * its destroy freed (a block of the metadata heap, which keeps the
 * destroy's marks; until a review an object, which the free filled with
 * poison). The harness reads the pointer from the "kfree of" line. */
KTEST(demo, kmem_cache_alloc_from_a_destroyed_cache)
{
	struct objcache *a = kmem_cache_create("demo-gone", 40, 0);
	KASSERT(a && kmem_cache_destroy(a));
	ktest_diag("kfree of %p (the cache's struct, freed by its destroy)", a);
	kmem_cache_alloc(a, 0);
}
#endif
