/*
 * kmalloc's storm on the real kernel, with the lock checker on: threads
 * on every CPU and every CPU's timer interrupt allocate and free objects
 * of random sizes, frees crossing CPUs, while the sweeper, the scavenger
 * and release-all run, after which the frame pool is back where it
 * started. Every object says who filled it, so a corrupted or doubly
 * handed-out one is caught. The API's tests and the misuse demos are in
 * kmalloc_test.c. (The image holds a file's tests in reverse order, and
 * this file links just before kmalloc_test.c: the storm still runs before
 * the API's tests, as it did when they were one file.)
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/ktest_kernel.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/spinlock.h"
#include "kernel/string.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"
#include "tests/kernel/storm_util.h"

/* A small xorshift generator; each user keeps its own state. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- Objects that say who filled them -------------------------------- */

/* Every test object (at least 16 bytes) starts with this header; one word
 * every 64 bytes after it, and the last aligned word, hold a pattern of
 * the owner, the address and the offset. */
struct obj_hdr {
	uint32_t owner;
	uint32_t size;
};

static uint64_t pattern(uint32_t owner, const void *p, size_t off)
{
	return ((uint64_t)owner << 40) ^
	       ((uintptr_t)p + off) * 0x9e3779b97f4a7c15ull;
}

static size_t last_word(size_t size)
{
	return (size - 8) & ~(size_t)7;
}

static void obj_fill(void *p, size_t size, uint32_t owner)
{
	uint8_t *b = p;
	*(struct obj_hdr *)p = (struct obj_hdr){owner, (uint32_t)size};
	for (size_t off = 64; off + 8 <= size; off += 64)
		*(uint64_t *)(b + off) = pattern(owner, p, off);
	if (last_word(size) >= 8)
		*(uint64_t *)(b + last_word(size)) =
		        pattern(owner, p, last_word(size));
}

/* The words below limit of an object that obj_fill filled at address
 * `at` with header h (its data may since have moved to p) that are not
 * what it wrote. */
static size_t obj_bad_upto(const void *p, const void *at, struct obj_hdr h,
                           size_t limit)
{
	const uint8_t *b = p;
	const struct obj_hdr *ph = p;
	size_t bad = ph->owner != h.owner || ph->size != h.size;
	for (size_t off = 64; off + 8 <= limit; off += 64)
		bad += *(const uint64_t *)(b + off) !=
		       pattern(h.owner, at, off);
	size_t last = last_word(h.size);
	if (last >= 8 && last + 8 <= limit)
		bad += *(const uint64_t *)(b + last) !=
		       pattern(h.owner, at, last);
	return bad;
}

/* The words of p that are not what obj_fill wrote (its header says who
 * and how much); a header that cannot be right counts as one. */
static size_t obj_bad(const void *p)
{
	struct obj_hdr h = *(const struct obj_hdr *)p;
	if (h.size < 16 || h.size > ksize(p))
		return 1;
	return obj_bad_upto(p, p, h, h.size);
}

/* ---- The storm
 * --------------------------------------------------------------- */

#define STORM_LIVE     16
#define HANDOFF_SLOTS  32
#define IRQ_SLOTS      8
#define IRQ_MIN_ALLOCS 200 /* per storm, over all CPUs */

/* Objects in flight between CPUs: whoever puts one in frees the one it
 * displaces, threads and interrupt handlers alike (lock-free). */
static void *_Atomic handoff[HANDOFF_SLOTS];
static void *irq_slots[MAX_CPUS][IRQ_SLOTS]; /* that CPU's handler's */
static unsigned irq_turn[MAX_CPUS];          /* that CPU's handler's */
static uint64_t irq_rnd[MAX_CPUS];           /* that CPU's handler's */
static _Atomic bool irq_on;
static _Atomic unsigned irq_inside; /* handlers past the irq_on check */
static _Atomic unsigned workers_running;
static _Atomic uint64_t n_allocs, n_bad, n_nulls, n_handoffs, n_reallocs;
static _Atomic uint64_t n_irq_allocs, n_irq_nulls, n_releases;
static _Atomic uint64_t n_zeroed, n_zeroed_large;

static void check_and_free(void *p)
{
	atomic_fetch_add(&n_bad, obj_bad(p));
	kfree(p);
}

static void hand_off(void *p, uint64_t *rnd)
{
	void *old =
	        atomic_exchange(&handoff[next_rand(rnd) % HANDOFF_SLOTS], p);
	atomic_fetch_add(&n_handoffs, 1);
	if (old)
		check_and_free(old);
}

/* Mostly small, one in 8 up to the largest class, one in 64 large. */
static size_t storm_size(uint64_t r, size_t large_max)
{
	if (r % 64 == 0)
		return 32769 + (r >> 8) % (large_max - 32768);
	if (r % 8 == 0)
		return 1025 + (r >> 8) % 31744;
	return 16 + (r >> 8) % 1009;
}

/* From every CPU's timer tick: frees the slot's old object, allocates a
 * new one with KM_ATOMIC and keeps it or hands it to another CPU. */
static void irq_work(void)
{
	unsigned cpu = this_cpu()->id;
	uint64_t *rnd = &irq_rnd[cpu];
	if (!*rnd)
		*rnd = 0x9e3779b97f4a7c15ull * (cpu + 1);
	void **slot = &irq_slots[cpu][irq_turn[cpu]++ % IRQ_SLOTS];
	if (*slot) {
		check_and_free(*slot);
		*slot = NULL;
	}
	uint64_t r = next_rand(rnd);
	size_t n = storm_size(r, 128 << 10); /* KM_ATOMIC: <= 64 pages */
	void *p = kmalloc(n, KM_ATOMIC);
	if (!p) {
		atomic_fetch_add(&n_irq_nulls, 1);
		return;
	}
	obj_fill(p, n, 0x100 | cpu);
	atomic_fetch_add(&n_irq_allocs, 1);
	if (r % 4 == 1)
		hand_off(p, rnd);
	else
		*slot = p;
}

/* Counts itself in before it reads irq_on: once the test has cleared
 * irq_on and then seen irq_inside at 0, no handler is in irq_work. */
static void irq_tick(void)
{
	atomic_fetch_add(&irq_inside, 1);
	if (atomic_load(&irq_on))
		irq_work();
	atomic_fetch_sub(&irq_inside, 1);
}

/* Resizes a live object: what it held up to the smaller size must come
 * along. Returns the object (the old one if krealloc failed). */
static void *storm_resize(void *old, uint32_t owner, uint64_t *rnd)
{
	atomic_fetch_add(&n_bad, obj_bad(old));
	struct obj_hdr h = *(struct obj_hdr *)old;
	size_t n = storm_size(next_rand(rnd), 256 << 10);
	void *p = krealloc(old, n, 0);
	if (!p) {
		atomic_fetch_add(&n_nulls, 1);
		return old;
	}
	atomic_fetch_add(&n_bad, ksize(p) < n);
	atomic_fetch_add(&n_bad,
	                 obj_bad_upto(p, old, h, n < h.size ? n : h.size));
	obj_fill(p, n, owner);
	atomic_fetch_add(&n_reallocs, 1);
	atomic_fetch_add(&n_allocs, 1);
	return p;
}

/* The words of a new object of n bytes that are not zero: one every 64
 * bytes and the last, where obj_fill writes (so a freed object's pattern
 * left behind shows). */
static size_t nonzero_words(const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t bad = *(const uint64_t *)b != 0;
	for (size_t off = 64; off + 8 <= n; off += 64)
		bad += *(const uint64_t *)(b + off) != 0;
	return bad + (*(const uint64_t *)(b + last_word(n)) != 0);
}

/* A new object: plain, zeroed or aligned, whatever its size (the kind is
 * drawn apart from the size: drawn from one number, zeroed and aligned
 * objects were never over 1 KiB). NULL if kmalloc failed. */
static void *storm_alloc(uint32_t owner, uint64_t *rnd)
{
	uint64_t r = next_rand(rnd), kind = next_rand(rnd) % 32;
	size_t n = storm_size(r, 256 << 10);
	void *p;
	if (kind % 16 == 5) {
		p = kzalloc(n, 0);
		if (p) {
			atomic_fetch_add(&n_bad, nonzero_words(p, n));
			atomic_fetch_add(&n_zeroed, 1);
			atomic_fetch_add(&n_zeroed_large, n > 32768);
		}
	} else if (kind == 7) {
		size_t align = (size_t)16 << (r >> 20) % 9; /* up to 4 KiB */
		p = kmalloc_aligned(n, align, 0);
		if (p)
			atomic_fetch_add(&n_bad, (uintptr_t)p % align != 0);
	} else {
		p = kmalloc(n, 0);
	}
	if (!p) {
		atomic_fetch_add(&n_nulls, 1);
		return NULL;
	}
	atomic_fetch_add(&n_bad, ksize(p) < n);
	obj_fill(p, n, owner);
	atomic_fetch_add(&n_allocs, 1);
	return p;
}

static unsigned storm_ops;

static void storm_worker(void *arg)
{
	uint32_t owner = (uint32_t)(uintptr_t)arg;
	uint64_t rnd = 0x2545f4914f6cdd1dull * (owner + 7);
	void *live[STORM_LIVE] = {0};
	for (unsigned i = 0; i < storm_ops; i++) {
		void **s = &live[next_rand(&rnd) % STORM_LIVE];
		uint64_t r = next_rand(&rnd);
		if (*s && r % 16 == 3) {
			*s = storm_resize(*s, owner, &rnd);
		} else {
			if (*s && r % 4 == 0)
				hand_off(*s, &rnd);
			else if (*s)
				check_and_free(*s);
			*s = storm_alloc(owner, &rnd);
		}
		if (i % 64 == 0)
			thread_yield();
	}
	for (unsigned k = 0; k < STORM_LIVE; k++)
		if (live[k])
			check_and_free(live[k]);
	atomic_fetch_sub(&workers_running, 1);
}

/* Flushes every CPU's cache, sweeps and scavenges everything while the
 * workers run, from the first moment on. */
static void storm_releaser(void *arg)
{
	while (atomic_load(&workers_running) > 0) {
		heap_release_all();
		atomic_fetch_add(&n_releases, 1);
		thread_sleep_ns(20000000);
	}
}

/* One storm of ops operations per worker, one worker per CPU. Waits for
 * the workers and for IRQ_MIN_ALLOCS interrupt allocations, then frees
 * everything still handed off or held by handlers. */
static bool storm(unsigned ops)
{
	storm_ops = ops;
	atomic_store(&n_allocs, 0);
	atomic_store(&n_bad, 0);
	atomic_store(&n_nulls, 0);
	atomic_store(&n_handoffs, 0);
	atomic_store(&n_reallocs, 0);
	atomic_store(&n_irq_allocs, 0);
	atomic_store(&n_irq_nulls, 0);
	atomic_store(&n_releases, 0);
	atomic_store(&n_zeroed, 0);
	atomic_store(&n_zeroed_large, 0);
	cpu_storm_run(&(struct cpu_storm){.name = "kstorm",
	                                  .worker = storm_worker,
	                                  .tick = irq_tick,
	                                  .running = &workers_running,
	                                  .irq_on = &irq_on,
	                                  .irq_inside = &irq_inside,
	                                  .irq_allocs = &n_irq_allocs,
	                                  .irq_min = IRQ_MIN_ALLOCS,
	                                  .extra = storm_releaser});
	bool ok = true;
	for (unsigned k = 0; k < HANDOFF_SLOTS; k++) {
		void *p = atomic_exchange(&handoff[k], NULL);
		if (p)
			check_and_free(p);
	}
	for (unsigned c = 0; c < MAX_CPUS; c++)
		for (unsigned k = 0; k < IRQ_SLOTS; k++)
			if (irq_slots[c][k]) {
				check_and_free(irq_slots[c][k]);
				irq_slots[c][k] = NULL;
			}
	return ok;
}

static unsigned online_cpus(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		n += atomic_load(&cpus[i].online);
	return n;
}

/* What the last storm's nw threads and the interrupts did. */
static void storm_diag_counts(unsigned nw)
{
	ktest_diag("storm: %lu allocations by %u threads (%lu resized, %lu "
	           "handed off), %lu by interrupt handlers (%lu NULL), %lu "
	           "release-alls",
	           atomic_load(&n_allocs), nw, atomic_load(&n_reallocs),
	           atomic_load(&n_handoffs), atomic_load(&n_irq_allocs),
	           atomic_load(&n_irq_nulls), atomic_load(&n_releases));
	ktest_diag("zeroed: %lu objects checked, %lu of them large",
	           atomic_load(&n_zeroed), atomic_load(&n_zeroed_large));
}

/* The span heap's counts from st0 to st. */
static void storm_diag_frees(const struct spanheap_stats *st0,
                             const struct spanheap_stats *st)
{
	ktest_diag("frees: %lu local, %lu remote; %lu refills; sweep: %lu "
	           "cycles, %lu spans freed, sweeper CPU %lu us; large: %lu",
	           st->local_frees - st0->local_frees,
	           st->remote_frees - st0->remote_frees,
	           st->refills - st0->refills, st->n.cycles - st0->n.cycles,
	           st->n.freed_spans - st0->n.freed_spans,
	           (st->n.sweeper_cpu_ns - st0->n.sweeper_cpu_ns) / 1000,
	           st->n.large_allocs - st0->n.large_allocs);
}

/* The frame pool and the span heap's metadata, at the baseline (frames0,
 * meta0) and now (meta). */
static void storm_diag_frames(size_t frames0, size_t meta0, size_t meta)
{
	unsigned long irq = mm_lock_acquire(&kheap.lock);
	size_t nstructs = kspanheap.nstructs, nfree = kspanheap.nstructs_free;
	mm_lock_release(&kheap.lock, irq);
	ktest_diag("frames free: %zu at the baseline, %zu now; span-heap "
	           "metadata pages %zu then, %zu now (%zu span structs, %zu "
	           "in use)",
	           frames0, frames_free_count(), meta0, meta, nstructs,
	           nstructs - nfree);
}

/* The storm's operations a worker: a fifth in ticket mode (the harness's
 * spinlock_ticket case; bare metal), as sched.counter_under_one_lock_is_exact
 * makes a fifth of its increments: FIFO hand-offs to vCPUs the host is not
 * running made the storm 42.6 s of that case's 60 under make test. 4,000
 * operations a CPU still take each lock of the heap's paths thousands of
 * times, contended, from threads and interrupts. */
static unsigned storm_worker_ops(void)
{
	return spin_mode() == SPIN_TICKET ? 4000 : 20000;
}

/*
 * Workers on every CPU allocate objects of 16 bytes to 256 KiB (plain,
 * zeroed, aligned, resized), fill them with their pattern, and free them
 * or hand them to any other CPU; every CPU's timer interrupt does the same
 * with KM_ATOMIC; a thread runs heap_release_all every 20 ms; the sweeper
 * and the scavenger run as they will. No pattern may break, no thread
 * allocation fail, and after the last release-all the frame pool holds
 * what it held after a warm-up storm, but for the span heap's own
 * span-struct pages, which stay by design.
 */
KTEST(kmalloc, storm_every_cpu_and_interrupts_returns_every_frame)
{
	/* At -smp 8 under TCG on two host cores the storm took 45 s with
	 * ticket spinlocks, and 5 s now that the boot chooses test-and-set
	 * under a hypervisor (kernel/spinlock.h); an 8-CPU boot asked for
	 * a twentieth of the operations until then (make test now runs the
	 * whole suite at -smp 8). */
	enum { WARM_OPS = 1000, WARM_PAGES = 16384 };
	const unsigned storm_n = storm_worker_ops();
	/* Grow the heap well past the storm's peak (64 MiB) and run a small
	 * storm: the growth's metadata and page tables, and the threads'
	 * stack slots' page tables, are in place before the baseline. */
	KTEST_NEED_FREE_FRAMES(WARM_PAGES);
	void *grow = mheap_alloc_pages(&kheap, WARM_PAGES, 0);
	KASSERT(grow != NULL);
	mheap_free_pages(&kheap, grow, WARM_PAGES);
	KASSERT(storm(WARM_OPS));
	KEXPECT_EQ(atomic_load(&n_bad), 0);
	heap_settle();
	size_t frames0 = frames_free_count(), meta0 = span_meta_pages();
	struct spanheap_stats st0, st;
	spanheap_stats(&kspanheap, &st0);
	uint64_t restarts0 = mm_rseq_restarts();

	KASSERT(storm(storm_n));
	heap_settle();
	size_t meta = span_meta_pages();
	spanheap_stats(&kspanheap, &st);
	unsigned nw = online_cpus();
	storm_diag_counts(nw);
	storm_diag_frees(&st0, &st);
	/* Interrupts that landed in a kmalloc's or kfree's magazine step
	 * (under TCG only after its branch, where a translation block
	 * ends); rseq.* steps through every boundary. */
	ktest_diag("restartable sequences restarted: %lu",
	           (unsigned long)(mm_rseq_restarts() - restarts0));
	storm_diag_frames(frames0, meta0, meta);
	KEXPECT_EQ(atomic_load(&n_bad), 0);
	KEXPECT_EQ(atomic_load(&n_nulls), 0);
	KEXPECT(atomic_load(&n_allocs) >= (uint64_t)nw * storm_n);
	KEXPECT(atomic_load(&n_irq_allocs) >= IRQ_MIN_ALLOCS);
	KEXPECT(st.remote_frees > st0.remote_frees);
	KEXPECT(st.n.large_allocs > st0.n.large_allocs);
	KEXPECT(atomic_load(&n_zeroed_large) > 0);
	KEXPECT_EQ(frames_free_count() + (meta - meta0), frames0);
	spanheap_check(&kspanheap);
	/* Every CPU took frames and gave them back meanwhile: the count
	 * above is one number, the pool's bitmaps and summaries are the
	 * rest. */
	frames_check();
}
