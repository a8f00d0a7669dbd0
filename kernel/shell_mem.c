/*
 * The shell's memory commands: meminfo (the frame pool, the page heap,
 * the span heap, the scavenger's and the sweeper's counters, the
 * per-CPU allocator's, the shrinkers: kernel/shrinker.h), slabinfo
 * (per size class, then the named caches: kmem_cache), sweep, scavenge and
 * release, which run the collector's steps now and report what they did, and
 * mmfail, which arms, disarms and shows allocation-failure injection: the
 * heap's (mm/spanheap_fail.h) and, as "mmfail frame", the frame pool's
 * (kernel/frames.h). The commands that look at single objects are
 * shell_debug.c's.
 */
#include "arch/x86_64/paging.h"
#include "arch/x86_64/trap.h"
#include "kernel/addrinfo.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/percpu_alloc.h"
#include "kernel/printk.h"
#include "kernel/rcu.h"
#include "kernel/shell_internal.h"
#include "kernel/shrinker.h"
#include "kernel/format.h"
#include "kernel/string.h"
#include "kernel/time.h"
#include "mm/failpoint.h"

/* The shell thread's own (one command at a time): too big for its stack,
 * and a kmalloc'd copy would be an object of the heap being described,
 * counted in its own report (a 3584-byte object, and a span when its
 * class had none). */
static struct spanheap_stats snap[2];

/* shell_internal.h: the named caches' lines (slabinfo, alloctraces). */
struct objcache_info shell_caches[OBJCACHE_MAX];

/* Fills snap[which] with the span heap's statistics and returns it. */
static struct spanheap_stats *stats_now(unsigned which)
{
	spanheap_stats(&kspanheap, &snap[which]);
	return &snap[which];
}

static void print_page_heap(const struct mheap_stats *h)
{
	printk("page heap: %zu pages grown (%zu chunks): %zu in use, %zu free "
	       "backed, %zu free scavenged, %zu being scavenged\n",
	       h->grown_pages, h->grown_pages / PALLOC_CHUNK_PAGES,
	       h->in_use_pages, h->free_backed_pages, h->free_scav_pages,
	       h->scavenging_pages);
	printk("page heap: goal %zu free backed, reserve %zu; %llu grows "
	       "(%llu for the reserve, %llu waits), %llu atomic refusals\n",
	       h->goal_pages, h->reserve_pages, (unsigned long long)h->n.grows,
	       (unsigned long long)h->n.refills,
	       (unsigned long long)h->n.grow_waits,
	       (unsigned long long)h->n.atomic_fails);
	printk("scavenger: %llu background runs, %llu pages, %llu us CPU; "
	       "frames short: %llu runs, %llu pages; release-all %llu pages\n",
	       (unsigned long long)h->n.bg_runs,
	       (unsigned long long)h->n.bg_pages,
	       (unsigned long long)(h->n.bg_cpu_ns / 1000),
	       (unsigned long long)h->n.sync_runs,
	       (unsigned long long)h->n.sync_pages,
	       (unsigned long long)h->n.release_pages);
}

/* The span heap's own metadata (span structs, all-spans arrays, magazine
 * slabs, poison mode's side tables, the stack depot, named caches' structs
 * and counters, pools' reserves): a page heap of its own, apart from the
 * object pages (mm/spanheap_meta.c). */
static void print_meta_heap(const struct spanheap_stats *st)
{
	printk("metadata heap: %zu pages in use, %zu free backed, %zu free "
	       "scavenged, %zu grown, of a %zu MiB arena; %llu atomic "
	       "refusals\n",
	       st->meta.in_use_pages, st->meta.free_backed_pages,
	       st->meta.free_scav_pages, st->meta.grown_pages,
	       st->meta_arena_bytes >> 20,
	       (unsigned long long)st->meta.n.atomic_fails);
}

/* The page heap's scavenger serves the metadata heap (mm/mheap_scav.c,
 * "served"): the "scavenger:" line's CPU covers these runs, its pages
 * are the page heap's alone (until a review nothing told these). */
static void print_meta_scav(const struct spanheap_stats *st)
{
	printk("metadata heap: scavenger: %llu background runs, %llu pages "
	       "(their CPU in the scavenger's line)\n",
	       (unsigned long long)st->meta.n.bg_runs,
	       (unsigned long long)st->meta.n.bg_pages);
}

/* kernel/rcu.c's counters: objects a kfree_rcu or call_rcu holds until
 * their grace period has passed and their callback run. */
static void print_rcu(void)
{
	struct rcu_stats r;
	rcu_stats(&r);
	printk("rcu: %llu grace periods, %llu callbacks queued, %llu run, "
	       "%llu waiting (%llu wakes left to a tick)\n",
	       (unsigned long long)r.gp_completed,
	       (unsigned long long)r.cbs_queued, (unsigned long long)r.cbs_run,
	       (unsigned long long)r.waiting, (unsigned long long)r.late_wakes);
}

/* The per-CPU allocator's (alloc_percpu, mm/pcpu.h): its bytes are each
 * CPU's, so the memory it holds is chunks times the chunk's bytes. */
static void print_percpu(void)
{
	struct pcpu_stats p;
	pcpu_stats(&kpcpu, &p);
	printk("percpu: %u chunks (of %u at most) of %u units of %zu bytes, "
	       "%zu bytes used and %zu free per CPU; %llu allocations live, "
	       "%llu made, %llu freed\n",
	       p.nchunks, p.max_chunks, p.nunits, p.unit_bytes, p.used_bytes,
	       p.free_bytes, (unsigned long long)p.nlive,
	       (unsigned long long)p.nallocs, (unsigned long long)p.nfrees);
}

static enum shell_status cmd_meminfo(int argc, char **argv)
{
	const struct spanheap_stats *st = stats_now(0);
	char in_use[24], spans[24];
	shell_format_bytes(in_use, sizeof(in_use), st->bytes_in_use);
	shell_format_bytes(spans, sizeof(spans), st->bytes_spans);
	size_t free_frames = frames_free_count(); /* one read: one line */
	printk("frames: %zu free of %zu managed (%zu MiB free)\n", free_frames,
	       frames_managed_count(), free_frames >> 8);
	print_page_heap(&st->heap);
	print_meta_heap(st);
	print_meta_scav(st);
	printk("span heap: %zu spans, %s in use in %s of spans, %zu large "
	       "pages; sweepgen %u\n",
	       st->spans, in_use, spans, st->large_pages, st->sweepgen);
	printk("span heap: %zu freed objects in magazines; %llu local frees, "
	       "%llu remote frees, %llu cache refills, %llu large "
	       "allocations, %llu atomic refusals\n",
	       st->mag_objects, (unsigned long long)st->local_frees,
	       (unsigned long long)st->remote_frees,
	       (unsigned long long)st->refills,
	       (unsigned long long)st->n.large_allocs,
	       (unsigned long long)st->n.atomic_fails);
	printk("span heap: %llu kmalloc/kfree fast paths restarted by an "
	       "interrupt (restartable sequences)\n",
	       (unsigned long long)mm_rseq_restarts());
	printk("sweeper: %llu cycles (%llu early: the heap was quiet, %llu "
	       "for allocations the page heap refused), %llu "
	       "spans swept (%llu on demand, %llu folded from queues), %llu "
	       "spans freed, %llu us CPU; %llu caches handed back by idle "
	       "CPUs\n",
	       (unsigned long long)st->n.cycles,
	       (unsigned long long)st->n.quiet_cycles,
	       (unsigned long long)st->n.reclaims,
	       (unsigned long long)st->n.swept_spans,
	       (unsigned long long)st->n.demand_swept,
	       (unsigned long long)st->n.queue_folded,
	       (unsigned long long)st->n.freed_spans,
	       (unsigned long long)(st->n.sweeper_cpu_ns / 1000),
	       (unsigned long long)st->n.idle_flushes);
	print_rcu();
	print_percpu();
	if (kspanheap.track)
		printk("poison records: %zu stacks in the depot, %zu pages; "
		       "%llu records with no stack for want of room\n",
		       st->depot_stacks, st->depot_pages,
		       (unsigned long long)st->depot_lost);
	if (st->guard_slots)
		printk("guarded pool (mm.guard): %u of %u slots live; %llu "
		       "objects handed out, %llu freed; samples turned away: "
		       "%llu with no slot free, %llu with no memory\n",
		       st->guard_live, st->guard_slots,
		       (unsigned long long)st->guard_allocs,
		       (unsigned long long)st->guard_frees,
		       (unsigned long long)st->guard_full,
		       (unsigned long long)st->guard_nomem);
	shrink_print();
	return SHELL_OK;
}

/* One row of slabinfo; waste is what the spans hold beyond the objects in
 * use: free objects and each span's tail. In mags: the free objects
 * waiting in the CPUs' magazines; mag room: what those magazines may hold
 * now (each shrinks on a CPU that only frees its class). */
static void slab_row(const char *name, const struct spanheap_class_stats *c)
{
	size_t waste = c->bytes_spans - c->bytes_in_use;
	uint64_t permille =
	        c->bytes_spans ? (uint64_t)waste * 1000 / c->bytes_spans : 0;
	printk("%-7s %8zu %8zu %6zu %12zu %12zu %11zu %3llu.%llu%% %7zu %8zu\n",
	       name, c->objects_in_use, c->objects_free, c->spans,
	       c->bytes_in_use, c->bytes_spans, waste,
	       (unsigned long long)(permille / 10),
	       (unsigned long long)(permille % 10), c->mag_objects,
	       c->mag_room);
}

/* The named caches (kmem_cache), one row each, under their header:
 * objects out and the bytes they take. Returns how many there are. */
static size_t caches_rows(void)
{
	struct objcache_info *in = shell_caches;
	size_t n = objcache_list(&kspanheap, in, OBJCACHE_MAX);
	if (!n)
		return 0;
	printk("%-20s %8s %6s %7s %5s %8s %12s %6s %7s %7s\n", "cache", "size",
	       "align", "object", "class", "in use", "bytes used", "slabs",
	       "pending", "stashed");
	/* class "own": slabs of its own (a ctor or SLAB_TYPESAFE_BY_RCU),
	 * their count, those waiting for a grace period and the objects
	 * free in the CPUs' stashes (not in use, not free in the slabs);
	 * "-" merged. */
	for (size_t i = 0; i < n && i < OBJCACHE_MAX; i++) {
		char cls[8], slabs[24], pending[24], stashed[24];
		bool own = in[i].slab_pages != 0;
		ksnprintf(cls, sizeof(cls), own ? "own" : "%u",
		          in[i].sizeclass);
		ksnprintf(slabs, sizeof(slabs), own ? "%zu" : "-", in[i].slabs);
		ksnprintf(pending, sizeof(pending), own ? "%zu" : "-",
		          in[i].pending);
		ksnprintf(stashed, sizeof(stashed), own ? "%zu" : "-",
		          in[i].stashed);
		printk("%-20s %8zu %6zu %7zu %5s %8lld %12lld %6s %7s %7s\n",
		       in[i].name, in[i].size, in[i].align, in[i].objsize, cls,
		       (long long)in[i].live,
		       (long long)in[i].live * (long long)in[i].objsize, slabs,
		       pending, stashed);
	}
	return n;
}

static enum shell_status cmd_slabinfo(int argc, char **argv)
{
	const struct spanheap_stats *st = stats_now(0);
	printk("%-7s %8s %8s %6s %12s %12s %11s %6s %7s %8s\n", "size",
	       "in use", "free", "spans", "bytes used", "span bytes", "waste",
	       "waste", "in mags", "mag room");
	unsigned shown = 0;
	for (unsigned cls = 1; cls < SC_NCLASSES; cls++) {
		const struct spanheap_class_stats *c = &st->cls[cls];
		if (!c->spans)
			continue;
		char name[16];
		ksnprintf(name, sizeof(name), "%u", c->size);
		slab_row(name, c);
		shown++;
	}
	slab_row("large", &st->cls[0]);
	struct spanheap_class_stats all = {0};
	for (unsigned cls = 0; cls < SC_NCLASSES; cls++) {
		all.objects_in_use += st->cls[cls].objects_in_use;
		all.objects_free += st->cls[cls].objects_free;
		all.mag_objects += st->cls[cls].mag_objects;
		all.mag_room += st->cls[cls].mag_room;
	}
	all.spans = st->spans;
	all.bytes_in_use = st->bytes_in_use;
	all.bytes_spans = st->bytes_spans;
	slab_row("total", &all);
	size_t ncaches = caches_rows();
	printk("slabinfo: %u of %u size classes have spans, %zu named "
	       "caches\n",
	       shown, SC_NCLASSES - 1, ncaches);
	print_meta_heap(st);
	return SHELL_OK;
}

static enum shell_status cmd_sweep(int argc, char **argv)
{
	const struct spanheap_stats *before = stats_now(0);
	uint64_t t0 = time_now_ns();
	size_t freed = spanheap_sweep_cycle(&kspanheap);
	uint64_t us = (time_now_ns() - t0) / 1000;
	const struct spanheap_stats *after = stats_now(1);
	printk("sweep: cycle done in %llu us: %zu empty spans given back "
	       "(%zu pages now in spans, was %zu); sweepgen %u -> %u, %llu "
	       "cycles in all\n",
	       (unsigned long long)us, freed, after->bytes_spans / MM_PAGE_SIZE,
	       before->bytes_spans / MM_PAGE_SIZE, before->sweepgen,
	       after->sweepgen, (unsigned long long)after->n.cycles);
	return SHELL_OK;
}

/* Free backed pages of both page heaps, the objects' and the span heap's
 * metadata heap; *frames_free, the pool's free frames. */
static size_t free_backed_now(size_t *frames_free)
{
	struct mheap_stats h, m;
	mheap_stats(&kheap, &h);
	mheap_stats(&kspanheap.meta, &m);
	*frames_free = h.frames_free;
	return h.free_backed_pages + m.free_backed_pages;
}

/* Both page heaps' free backed pages: until a review kheap's alone, and
 * the span heap's freed side tables and arrays stayed backed. */
static enum shell_status cmd_scavenge(int argc, char **argv)
{
	size_t frames0, frames1, backed0 = free_backed_now(&frames0);
	uint64_t t0 = time_now_ns();
	size_t pages =
	        mheap_release_all(&kheap) + mheap_release_all(&kspanheap.meta);
	uint64_t us = (time_now_ns() - t0) / 1000;
	size_t backed1 = free_backed_now(&frames1);
	printk("scavenge: %zu pages (%zu KiB) scavenged in %llu us; free "
	       "backed %zu -> %zu pages; frames free %zu -> %zu\n",
	       pages, pages * 4, (unsigned long long)us, backed0, backed1,
	       frames0, frames1);
	return SHELL_OK;
}

static enum shell_status cmd_release(int argc, char **argv)
{
	size_t frames_before = frames_free_count();
	size_t pages = heap_release_all();
	size_t frames_after = frames_free_count();
	struct mheap_stats h;
	mheap_stats(&kheap, &h);
	long delta = (long)frames_after - (long)frames_before;
	printk("release: %zu pages scavenged; %ld frames came back; frames "
	       "free %zu of %zu\n",
	       pages, delta, frames_after, frames_managed_count());
	printk("release: page heap holds %zu pages in use, %zu free backed\n",
	       h.in_use_pages, h.free_backed_pages);
	/* The span heap's own pages (span structs, slabs): its metadata
	 * heap's, apart from the page heap (mm/spanheap_meta.c). */
	mheap_stats(&kspanheap.meta, &h);
	printk("release: metadata heap holds %zu pages in use, %zu free "
	       "backed\n",
	       h.in_use_pages, h.free_backed_pages);
	/* Held for good, and grown by a heap that grew meanwhile. */
	printk("release: metadata holds %zu frames, page tables %zu\n",
	       heap_meta_frames(), paging_table_pages());
	return SHELL_OK;
}

static void fail_show(void)
{
	struct spanheap_fail_attr a;
	bool armed = spanheap_fail_get(&kspanheap, &a);
	const struct spanheap_stats *st = stats_now(0);
	printk("mmfail: %s: interval %u, probability %u/10000, failures left "
	       "%lld, what %#x, seed %llu; %llu eligible calls, %llu failures "
	       "injected\n",
	       armed ? "armed" : "off", a.interval, a.probability,
	       (long long)a.times, a.what, (unsigned long long)a.seed,
	       (unsigned long long)st->fail_calls,
	       (unsigned long long)st->fail_injected);
}

/* The frame pool's (mmfail frame), in the heap's words. */
static void fail_show_frames(void)
{
	struct spanheap_fail_attr a;
	struct failpoint_counts n;
	bool armed = frames_fail_get(&a, &n);
	printk("mmfail frame: %s: interval %u, probability %u/10000, failures "
	       "left %lld, seed %llu; %llu eligible calls, %llu failures "
	       "injected; frames free %zu\n",
	       armed ? "armed" : "off", a.interval, a.probability,
	       (long long)a.times, (unsigned long long)a.seed,
	       (unsigned long long)n.calls, (unsigned long long)n.injected,
	       frames_free_count());
}

/* mmfail frame [off | SPEC]: the frame pool's point. */
static enum shell_status fail_frames(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[2], "off") == 0) {
		frames_fail_disarm();
	} else if (argc == 3) {
		struct spanheap_fail_attr a;
		if (!spanheap_fail_parse("mmfail frame", argv[2], &a))
			return SHELL_USAGE;
		if (!frames_fail_arm(&a))
			return SHELL_USAGE; /* what: frames_fail_arm says why */
	}
	fail_show_frames();
	return SHELL_OK;
}

/* mmfail [frame] [off | interval,probability,times[,what[,seed]]] */
static enum shell_status cmd_mmfail(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "frame") == 0 && argc <= 3)
		return fail_frames(argc, argv);
	if (argc > 2)
		return shell_usage(&shell_mem_cmds[5]); /* its own entry */
	if (argc == 2 && strcmp(argv[1], "off") == 0) {
		spanheap_fail_disarm(&kspanheap);
	} else if (argc == 2) {
		struct spanheap_fail_attr a;
		if (!spanheap_fail_parse("mmfail", argv[1], &a))
			return SHELL_USAGE;
		if (!spanheap_fail_arm(&kspanheap, &a)) {
			printk("mmfail: not armed on every CPU\n");
			fail_show();
			return SHELL_FAILED;
		}
	}
	fail_show();
	return SHELL_OK;
}

const struct shell_cmd shell_mem_cmds[] = {
        {"meminfo", "",
         "frames, page heap, span heap, scavenger, sweeper, rcu, percpu",
         cmd_meminfo},
        {"slabinfo", "",
         "per size class: objects, spans, bytes, waste; the named caches",
         cmd_slabinfo},
        {"sweep", "", "run a sweep cycle now", cmd_sweep},
        {"scavenge", "",
         "scavenge every free backed page now (both page heaps)", cmd_scavenge},
        {"release", "", "flush, sweep and scavenge everything", cmd_release},
        {"mmfail", "[frame] [off | interval,probability,times[,what[,seed]]]",
         "show, arm or disarm kmalloc (or frame) failure injection",
         cmd_mmfail},
        {NULL, NULL, NULL, NULL},
};
