/*
 * The shell's `stress SECONDS [CPUS [SEED]]`: an allocation storm on CPUS
 * CPUs (all by default) while the shell watches.
 *
 * Each worker thread owns STRESS_SLOTS slots; each step picks a slot at
 * random: a full one is freed (one time in 8 it is handed to another
 * CPU's inbox instead, and whatever that displaces is freed here: a
 * remote free), an empty one gets a new object, mostly small, one in 8
 * up to the largest size class, one in 1024 large (up to 256 KiB). Every
 * object carries its size and a tag in its first 16 bytes: the tag names
 * the slot that holds the object (or the inbox), checked when the object
 * leaves it, so a heap that hands out one object twice is caught when
 * the first holder takes it out after the second wrote its own (a tag
 * of the size alone, as until a review, was one both holders wrote
 * alike, and only the heap's double free check could see them).
 *
 * Worker i's generator starts from SEED and i alone (SEED is the clock
 * unless given), and each step draws once whatever the others do, so a
 * run's first line names the seed, and `stress SECONDS CPUS SEED` makes
 * every worker take the same steps again (the CPUs' interleaving, and so
 * which objects cross, is the machine's). Until a review the seed was
 * the clock's, never printed: a run that found a corrupt object could
 * not be run again.
 *
 * The shell thread prints a progress line every half second, rewritten
 * in place with \r (ops/s over the last interval, live bytes, the kernel
 * heap's RSS in frames: in use plus free backed, of both page heaps, the
 * objects' and the span heap's metadata heap), stops the workers when
 * the time is up or Ctrl-C was typed, frees what is left, flushes every
 * CPU's cache and verifies the heap (spanheap_check, mheap_check panic
 * on a broken invariant). Only one stress runs at a time: the shell runs
 * one command at a time.
 */
#include <stdatomic.h>

#include "kernel/heap.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/shell_internal.h"
#include "kernel/thread.h"
#include "kernel/time.h"

#define STRESS_SLOTS   256
#define STRESS_TAG     0x5a17ab1e00000000ull
#define STRESS_LARGE   (256u << 10)
#define TICK_NS        50000000ull /* how often the shell looks */
#define PROGRESS_TICKS 10          /* a progress line every 500 ms */

struct worker {
	struct thread_handle t;
	uint64_t rnd; /* the worker's own */
	void **slots; /* the worker's own */
	/* Written by the worker, read by the shell (relaxed): */
	_Atomic uint64_t ops;
	_Atomic int64_t live_bytes; /* allocated minus freed, by this worker */
	_Atomic uint64_t bad, nulls;
} __attribute__((aligned(64)));

/* The shell thread's, and the workers' during a run: */
static struct worker workers[MAX_CPUS];
static void *_Atomic inbox[MAX_CPUS]; /* objects handed between CPUs */
static unsigned nworkers;
static _Atomic bool stop;

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t pick_size(uint64_t r)
{
	if (r % 1024 == 0)
		return 32769 + (r >> 8) % (STRESS_LARGE - 32768);
	if (r % 8 == 0)
		return 1025 + (r >> 8) % 31744;
	return 16 + (r >> 8) % 1009;
}

/* The tag of an object of n bytes held by holder (a slot, or the
 * inbox). */
static uint64_t tag(uint64_t n, const void *holder)
{
	return STRESS_TAG ^ n ^ (uint64_t)(uintptr_t)holder;
}

/* Takes p out of holder: counts it bad if its tag names another. */
static void check_tag(struct worker *w, uint64_t *p, const void *holder)
{
	if (p[1] != tag(p[0], holder))
		atomic_fetch_add_explicit(&w->bad, 1, memory_order_relaxed);
}

static void check_free(struct worker *w, void *p, const void *holder)
{
	uint64_t *h = p;
	check_tag(w, h, holder);
	atomic_fetch_sub_explicit(&w->live_bytes, (int64_t)h[0],
	                          memory_order_relaxed);
	kfree(p);
}

static void step(struct worker *w, unsigned self)
{
	uint64_t r = next_rand(&w->rnd);
	void **slot = &w->slots[r % STRESS_SLOTS];
	r >>= 8;
	if (*slot) {
		uint64_t *p = *slot;
		*slot = NULL;
		if (r % 8 == 0 && nworkers > 1) {
			unsigned to = (self + 1 +
			               (unsigned)(r >> 3) % (nworkers - 1)) %
			              nworkers;
			check_tag(w, p, slot);
			p[1] = tag(p[0], inbox);
			p = atomic_exchange(&inbox[to], p);
			if (p)
				check_free(w, p, inbox);
		} else {
			check_free(w, p, slot);
		}
	} else {
		size_t n = pick_size(r);
		uint64_t *p = kmalloc(n, 0);
		if (!p) {
			atomic_fetch_add_explicit(&w->nulls, 1,
			                          memory_order_relaxed);
			return;
		}
		p[0] = n;
		p[1] = tag(n, slot);
		*slot = p;
		atomic_fetch_add_explicit(&w->live_bytes, (int64_t)n,
		                          memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&w->ops, 1, memory_order_relaxed);
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned self = (unsigned)(w - workers);
	while (!atomic_load_explicit(&stop, memory_order_relaxed))
		for (unsigned i = 0; i < 64; i++)
			step(w, self);
	for (unsigned i = 0; i < STRESS_SLOTS; i++)
		if (w->slots[i])
			check_free(w, w->slots[i], &w->slots[i]);
}

struct sample {
	uint64_t ns, ops;
	int64_t live;
	size_t rss;
};

static struct sample sample_now(void)
{
	struct sample s = {time_now_ns(), 0, 0, 0};
	for (unsigned i = 0; i < nworkers; i++) {
		s.ops += atomic_load_explicit(&workers[i].ops,
		                              memory_order_relaxed);
		s.live += atomic_load_explicit(&workers[i].live_bytes,
		                               memory_order_relaxed);
	}
	/* The span heap's own pages (span structs, slabs, side tables) are
	 * its metadata heap's, apart from kheap (mm/spanheap_meta.c): until
	 * a review the rss counted kheap's alone. */
	struct mheap_stats h, m;
	mheap_stats(&kheap, &h);
	mheap_stats(&kspanheap.meta, &m);
	s.rss = h.in_use_pages + h.free_backed_pages + m.in_use_pages +
	        m.free_backed_pages;
	return s;
}

static void progress(const struct sample *prev, const struct sample *now,
                     uint64_t t0)
{
	char live[24];
	shell_format_bytes(live, sizeof(live),
	                   now->live > 0 ? (uint64_t)now->live : 0);
	uint64_t dt = now->ns - prev->ns;
	uint64_t rate = dt ? (now->ops - prev->ops) * 1000000000ull / dt : 0;
	uint64_t tenths = (now->ns - t0) / 100000000ull;
	printk("\rstress: %3llu.%llu s %10llu ops/s  live %-10s rss %6zu "
	       "frames ",
	       (unsigned long long)(tenths / 10),
	       (unsigned long long)(tenths % 10), (unsigned long long)rate,
	       live, now->rss);
}

static uint64_t stop_workers(uint64_t *nulls);

/* Starts a worker on each of CPUs [0, n), their generators from seed:
 * false if one cannot be made (those made are stopped and joined). */
static bool start_workers(unsigned n, uint64_t seed)
{
	atomic_store(&stop, false);
	nworkers = 0;
	for (unsigned cpu = 0; cpu < MAX_CPUS && nworkers < n; cpu++) {
		if (!atomic_load(&cpus[cpu].online))
			continue;
		struct worker *w = &workers[nworkers];
		*w = (struct worker){0};
		w->rnd = 0x9e3779b97f4a7c15ull * (nworkers + 1) ^ seed;
		w->rnd = w->rnd ? w->rnd : 1; /* xorshift's one dead state */
		w->slots = kcalloc(STRESS_SLOTS, sizeof(void *), 0);
		w->t = w->slots ? thread_create("stress", worker_main, w, cpu)
		                : THREAD_NONE;
		if (!thread_handle_ok(w->t)) {
			kfree(w->slots);
			break;
		}
		nworkers++;
	}
	if (nworkers == n)
		return true;
	/* As at the end: the objects they handed over are freed too (they
	 * leaked here). */
	uint64_t nulls = 0;
	stop_workers(&nulls);
	return false;
}

/* Stops and joins the workers, frees what is in flight; returns the
 * corrupt objects found and adds the NULLs to *nulls. */
static uint64_t stop_workers(uint64_t *nulls)
{
	atomic_store(&stop, true);
	uint64_t bad = 0;
	for (unsigned i = 0; i < nworkers; i++) {
		thread_join(workers[i].t);
		kfree(workers[i].slots);
	}
	for (unsigned i = 0; i < nworkers; i++) {
		void *p = atomic_exchange(&inbox[i], NULL);
		if (p)
			check_free(&workers[0], p, inbox);
	}
	for (unsigned i = 0; i < nworkers; i++) {
		bad += atomic_load(&workers[i].bad);
		*nulls += atomic_load(&workers[i].nulls);
	}
	return bad;
}

static enum shell_status cmd_stress(int argc, char **argv);

const struct shell_cmd shell_stress_cmds[] = {
        {"stress", "SECONDS [CPUS [SEED]]",
         "kmalloc/kfree storm on CPUS CPUs (all), then verify the heap",
         cmd_stress},
        {NULL, NULL, NULL, NULL},
};

/* SECONDS [CPUS [SEED]] into *secs, *ncpus and *seed (the clock's unless
 * given): false, said why, if one is not a number in its range. */
static bool parse_args(int argc, char **argv, uint64_t *secs, uint64_t *ncpus,
                       uint64_t *seed)
{
	*ncpus = atomic_load(&ncpus_online);
	*seed = time_now_ns();
	return shell_parse_uint(argv[0], "SECONDS", argv[1], 1, 3600, secs) &&
	       (argc < 3 ||
	        shell_parse_uint(argv[0], "CPUS", argv[2], 1,
	                         atomic_load(&ncpus_online), ncpus)) &&
	       (argc < 4 || shell_parse_uint(argv[0], "SEED", argv[3], 0,
	                                     UINT64_MAX, seed));
}

static enum shell_status cmd_stress(int argc, char **argv)
{
	uint64_t secs, ncpus, seed;
	if (argc < 2 || argc > 4)
		return shell_usage(&shell_stress_cmds[0]);
	if (!parse_args(argc, argv, &secs, &ncpus, &seed))
		return SHELL_USAGE;
	printk("stress: seed %llu (`stress %llu %llu %llu` replays each "
	       "worker's steps)\n",
	       (unsigned long long)seed, (unsigned long long)secs,
	       (unsigned long long)ncpus, (unsigned long long)seed);
	if (!start_workers((unsigned)ncpus, seed)) {
		printk("stress: cannot start %llu worker threads\n",
		       (unsigned long long)ncpus);
		return SHELL_FAILED;
	}
	struct sample first = sample_now(), prev = first, now = first;
	size_t peak_rss = first.rss;
	int64_t peak_live = 0;
	bool interrupted = false;
	for (unsigned tick = 1;; tick++) {
		thread_sleep_ns(TICK_NS);
		interrupted = shell_interrupted();
		bool done = time_now_ns() - first.ns >= secs * 1000000000ull;
		if (tick % PROGRESS_TICKS && !done && !interrupted)
			continue;
		now = sample_now();
		peak_rss = now.rss > peak_rss ? now.rss : peak_rss;
		peak_live = now.live > peak_live ? now.live : peak_live;
		progress(&prev, &now, first.ns);
		prev = now;
		if (done || interrupted)
			break;
	}
	uint64_t nulls = 0, bad = stop_workers(&nulls);
	now = sample_now();
	uint64_t ms = (now.ns - first.ns) / 1000000;
	char live[24];
	shell_format_bytes(live, sizeof(live), (uint64_t)peak_live);
	printk("\nstress: %s after %llu.%03llu s on %u CPU%s: %llu operations "
	       "(%llu ops/s), peak live %s, peak rss %zu frames\n",
	       interrupted ? "interrupted by Ctrl-C" : "done",
	       (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
	       nworkers, nworkers == 1 ? "" : "s", (unsigned long long)now.ops,
	       (unsigned long long)(ms ? now.ops * 1000 / ms : 0), live,
	       peak_rss);
	heap_flush_caches();
	spanheap_check(&kspanheap);
	mheap_check(&kheap);
	printk("stress: heap verified (spanheap_check, mheap_check); %llu "
	       "corrupt objects, %llu failed allocations\n",
	       (unsigned long long)bad, (unsigned long long)nulls);
	if (bad || nulls) {
		printk("stress: failed with seed %llu\n",
		       (unsigned long long)seed);
		return SHELL_FAILED;
	}
	return interrupted ? SHELL_INTERRUPTED : SHELL_OK;
}
