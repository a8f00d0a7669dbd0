/*
 * The kernel's heaps (see heap.h): configuration from the frame pool's
 * size and the command line (mm.guard: the span heap's guarded pool), the
 * span heap over the page heap, their background threads, flushing every
 * CPU's span cache, the memory dump, allocation-failure injection's
 * switch (mm.fail, spanheap_fail_parse), the shrinkers of the per-CPU
 * allocator and of the caches with slabs of their own, and the usercopy
 * check's panic (heap_copy.h).
 */
#include "kernel/heap.h"
#include "kernel/heap_copy.h"

#include <stdatomic.h>

#include "arch/x86_64/smp.h"
#include "kernel/bootinfo.h"
#include "kernel/dma.h"
#include "kernel/format.h"
#include "kernel/kasan.h"
#include "kernel/frames.h"
#include "kernel/percpu.h"
#include "kernel/percpu_alloc.h"
#include "kernel/printk.h"
#include "kernel/shrinker.h"
#include "kernel/thread.h"

struct mheap kheap;
struct spanheap kspanheap;
struct pcpu kpcpu;

/* "key=N" from the command line if present and within [lo, hi]; else
 * def (cmdline_get_uint names a refused value). */
static unsigned cmdline_uint(const char *key, unsigned def, unsigned lo,
                             unsigned hi)
{
	uint64_t v = def;
	cmdline_get_uint(key, lo, hi, &v);
	return (unsigned)v;
}

/* Slots of the guarded pool when mm.guard turns it on: KFENCE's default
 * object count is 255; 64 pages (and 65 guards) of address space, and at
 * most 64 frames, keep it cheap while the sampling still finds its
 * faults. */
#define GUARD_SLOTS 64
/* The sampling interval of a bare "mm.guard". */
#define GUARD_DEFAULT_INTERVAL 64
/* The largest mm.guard=N taken (spanheap_config's 16 bits). */
#define GUARD_MAX_INTERVAL 65535

/* mm.guard=N: the guarded pool's sampling interval (one guarded
 * allocation in N refills and out-of-line allocations of each CPU); a
 * bare mm.guard, GUARD_DEFAULT_INTERVAL; absent or 0, no pool. */
static unsigned guard_interval(void)
{
	uint64_t v = 0;
	cmdline_get_uint_or_flag("mm.guard", GUARD_DEFAULT_INTERVAL, 0,
	                         GUARD_MAX_INTERVAL, &v);
	return (unsigned)v;
}

/* The section mm_rseq (linker.ld): one range per inlined sequence. */
extern struct mm_rseq_range __start_mm_rseq[], __stop_mm_rseq[];

void heap_rseq_init(void)
{
	mm_rseq_init(__start_mm_rseq, __stop_mm_rseq);
	printk("heap: %zu restartable sequences\n",
	       (size_t)(__stop_mm_rseq - __start_mm_rseq));
}

/* The section mm_rseq_mags (linker.ld): per inlined magazine sequence,
 * its load through the CPU's magazines (mm/rseq.h). */
extern const uintptr_t __start_mm_rseq_mags[], __stop_mm_rseq_mags[];

bool heap_fault_unset_mags(uint64_t rip, uint64_t cr2)
{
	if (cr2 >= MM_PAGE_SIZE)
		return false;
	for (const uintptr_t *p = __start_mm_rseq_mags; p < __stop_mm_rseq_mags;
	     p++)
		if (*p == rip)
			return true;
	return false;
}

/* mm.fail=...: armed once the heap's threads run (their handles and
 * structs come from the heap: armed earlier, the boot could not start
 * them). */
static void heap_fail_boot(void)
{
	char v[96];
	struct spanheap_fail_attr a;
	if (!cmdline_get("mm.fail", v, sizeof(v)) ||
	    !spanheap_fail_parse_option("mm.fail", v, &a) ||
	    !spanheap_fail_arm(&kspanheap, &a))
		return;
	printk("heap: failure injection armed: every %u-th eligible call, "
	       "%u/10000 of them, %ld at most (-1: no cap), what %#x, seed "
	       "%llu\n",
	       a.interval, a.probability, (long)a.times, a.what,
	       (unsigned long long)a.seed);
}

/* kpcpu's empty chunks (the spare pcpu_free keeps) for a reclaim: count
 * and scan run in thread context, no spinlock held (shrinker.h). */
static size_t pcpu_count(struct shrinker *s)
{
	return pcpu_empty_chunks(&kpcpu);
}

static size_t pcpu_scan(struct shrinker *s, size_t nr)
{
	return pcpu_trim(&kpcpu);
}

static struct shrinker pcpu_shrinker = {
        .name = "pcpu", .count = pcpu_count, .scan = pcpu_scan};

/* The caches with slabs of their own (kmem_cache_create_flags): their
 * per-CPU stashes and kept empty slabs, which objcache_shrink_all gives
 * back whole (bounded: a stash per CPU and a slab per cache). */
static size_t slab_count(struct shrinker *s)
{
	return objcache_spare(&kspanheap);
}

static size_t slab_scan(struct shrinker *s, size_t nr)
{
	return objcache_shrink_all(&kspanheap);
}

static struct shrinker slab_shrinker = {
        .name = "slab",
        .count = slab_count,
        .scan = slab_scan,
};

void heap_init(void)
{
	struct mheap_config cfg;
	mheap_config_default(&cfg);
	/* Below 1/32 of the pool free, growth scavenges first. */
	cfg.low_watermark_pages = frames_managed_count() / 32;
	if (cmdline_flag("mm.debug_pagealloc"))
		cfg.flags |= MHEAP_DEBUG_SCAV_ON_FREE;
	cfg.goal_percent =
	        cmdline_uint("mm.scav_goal", cfg.goal_percent, 0, 1000);
	cfg.cpu_permille =
	        cmdline_uint("mm.scav_budget", cfg.cpu_permille, 1, 1000);
	if (!mheap_init(&kheap, &cfg))
		panic("heap: cannot set up the kernel heap");
	struct spanheap_config scfg;
	spanheap_config_default(&scfg);
	/* mm.kasan's shadow is kept by poison mode's paths: it implies it. */
	bool kasan = cmdline_flag("mm.kasan");
	if (kasan && !kasan_init(kheap.arena_base, cfg.arena_bytes))
		panic("heap: mm.kasan: no address space or frames for the "
		      "shadow of the %zu MiB arena",
		      cfg.arena_bytes >> 20);
	scfg.poison = kasan || cmdline_flag("mm.debug_poison");
	scfg.guard_interval = guard_interval();
	scfg.guard_slots = scfg.guard_interval ? GUARD_SLOTS : 0;
	if (!spanheap_init(&kspanheap, &kheap, &scfg))
		panic("heap: cannot set up the kernel span heap");
	/* A unit for every CPU the MADT lists: a CPU's index is below that
	 * count (smp.h), and none comes online after it is made. */
	unsigned units = smp_report()->listed;
	if (units < atomic_load(&ncpus_online))
		units = atomic_load(&ncpus_online);
	if (!pcpu_init(&kpcpu, &kspanheap, units > MAX_CPUS ? MAX_CPUS : units))
		panic("heap: cannot set up the per-CPU allocator");
	shrinker_register(&pcpu_shrinker);
	shrinker_register(&slab_shrinker);
	/* Threads from here on: their structs come from the heap. */
	thread_cache_init();
	if (!mheap_scavenger_start(&kheap))
		panic("heap: cannot start the scavenger thread");
	if (!spanheap_sweeper_start(&kspanheap))
		panic("heap: cannot start the sweeper thread");
	char guard[64] = "";
	if (kspanheap.guard.base)
		ksnprintf(guard, sizeof(guard),
		          ", guarded pool: %u slots, 1 in %u",
		          kspanheap.guard.nslots, kspanheap.guard.interval);
	printk("heap: %zu MiB arena at %#lx, scavenger goal +%u%%, budget "
	       "%u.%u%% of a CPU, low watermark %zu pages%s%s%s%s\n",
	       cfg.arena_bytes >> 20, kheap.arena_base, cfg.goal_percent,
	       cfg.cpu_permille / 10, cfg.cpu_permille % 10,
	       cfg.low_watermark_pages,
	       (cfg.flags & MHEAP_DEBUG_SCAV_ON_FREE) ? ", debug_pagealloc"
	                                              : "",
	       scfg.poison ? ", debug_poison" : "", kasan ? ", kasan" : "",
	       guard);
	heap_fail_boot();
}

void heap_flush_caches(void)
{
	/* Every CPU's: the others while the world is stopped (mm_port.c). */
	spanheap_flush_all(&kspanheap);
}

void heap_cpu_idle(void)
{
	/* Before heap_init, kspanheap is all zero: no sweeper, nothing. */
	spanheap_cpu_idle(&kspanheap);
}

size_t heap_release_all(void)
{
	pcpu_trim(&kpcpu); /* its empty chunks are the span heap's */
	return spanheap_release_all(&kspanheap);
}

void heap_meminfo(void)
{
	printk("meminfo: frames %zu free of %zu managed\n", frames_free_count(),
	       frames_managed_count());
	spanheap_dump(&kspanheap);
}

const char *usercopy_refused(const void *p, size_t n, bool to_user)
{
	enum spanheap_copy_dir dir =
	        to_user ? SPANHEAP_COPY_TO_USER : SPANHEAP_COPY_FROM_USER;
	if (spanheap_check_copy(&kspanheap, p, n, dir) == SPANHEAP_COPY_BAD)
		return "leaves its heap object";
	/* Not the heap's: a DMA buffer bounds it by its pages (Linux's
	 * check of a copy at a multi-page allocation of the page
	 * allocator). */
	return dma_copy_refused(p, n, to_user);
}

void check_object_size(const void *p, size_t n, bool to_user)
{
	const char *why = usercopy_refused(p, n, to_user);
	if (why)
		panic("usercopy: a copy %s of %zu bytes at %p %s (named on "
		      "the line before)",
		      to_user ? "to user" : "from user", n, p, why);
}
