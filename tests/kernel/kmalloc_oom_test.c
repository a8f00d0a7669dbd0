/*
 * kmalloc with the frame pool empty, on the real kernel with the lock
 * checker on: it returns NULL in threads and in timer interrupts, holding
 * no lock and leaking nothing; and memory freed but not swept yet is not
 * out of memory: a thread allocation the page heap refuses sweeps first.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/paging.h"
#include "kernel/frames.h"
#include "kernel/heap.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "tests/kernel/frames_util.h"
#include "tests/kernel/heap_util.h"

/* ---- Out of frames
 * ------------------------------------------------------------ */

#define OOM_MAX 100000 /* allocations tried before giving up on NULL */

static _Atomic bool oom_claimed, oom_done;
static unsigned oom_cpu;   /* the test's, set before the hook */
static void *oom_irq_list; /* by the claiming handler, then the test */
static size_t oom_irq_got;
static bool oom_irq_null, oom_irq_large_null;
static int oom_irq_held, oom_irq_depth;

/* One timer tick on the test's CPU, whose magazine holds what the test
 * freed for it: KM_ATOMIC page-sized objects until NULL, then a large
 * one. */
static void oom_tick(void)
{
	if (this_cpu()->id != oom_cpu || atomic_load(&oom_done) ||
	    atomic_exchange(&oom_claimed, true))
		return;
	for (size_t i = 0; i < OOM_MAX; i++) {
		void **p = kmalloc(4096, KM_ATOMIC);
		if (!p) {
			oom_irq_null = true;
			break;
		}
		*p = oom_irq_list;
		oom_irq_list = p;
		oom_irq_got++;
	}
	oom_irq_held = this_cpu()->nheld;
	oom_irq_depth = this_cpu()->irq_depth;
	void *large = kmalloc(64 << 10, KM_ATOMIC);
	oom_irq_large_null = large == NULL;
	kfree(large);
	atomic_store(&oom_done, true);
}

static size_t free_list(void *head)
{
	size_t n = 0;
	while (head) {
		void *next = *(void **)head;
		kfree(head);
		head = next;
		n++;
	}
	return n;
}

/* 4 KiB objects until NULL (*null_seen) or OOM_MAX, linked through their
 * first word onto *list; their number. */
static size_t oom_thread_allocs(void **list, bool *null_seen)
{
	size_t got = 0;
	for (size_t i = 0; i < OOM_MAX && !*null_seen; i++) {
		void **p = kmalloc(4096, 0);
		if (p) {
			*p = *list;
			*list = p;
			got++;
		}
		*null_seen = p == NULL;
	}
	return got;
}

/* Frees up to n objects off the head of *list; how many it freed. */
static size_t free_first(void **list, size_t n)
{
	size_t given = 0;
	for (; given < n && *list; given++) {
		void *next = *(void **)*list;
		kfree(*list);
		*list = next;
	}
	return given;
}

/* Runs oom_tick once, in a timer interrupt on this CPU, and waits for it. */
static void oom_irq_run(void)
{
	oom_cpu = this_cpu()->id;
	oom_irq_list = NULL;
	oom_irq_got = 0;
	oom_irq_null = oom_irq_large_null = false;
	oom_irq_held = oom_irq_depth = -1;
	atomic_store(&oom_claimed, false);
	atomic_store(&oom_done, false);
	sched_tick_hook = oom_tick;
	while (!atomic_load(&oom_done))
		thread_sleep_ns(1000000);
	sched_tick_hook = NULL;
}

/*
 * With the frame pool empty, kmalloc in a thread returns NULL once the
 * memory the heap already has is used up (and a large request at once),
 * and so does KM_ATOMIC in a timer interrupt; neither returns holding a
 * lock. After the frames come back and everything is freed and released,
 * the pool is where it was.
 *
 * The heap has memory when the pool is drained: SPARE objects freed into
 * this CPU's magazine (one of 4 KiB objects holds 16; a full one keeps
 * half), or in poison mode (no magazines) pending-free bits in their
 * spans. Settled, it had none, and both phases got 0 objects before NULL.
 * Free backed pages would not do: the scavenger may return them to the
 * pool before it is drained. Before the interrupt's phase the test frees
 * IRQ_SPARE of the thread's objects into the same magazine, on the CPU
 * whose tick runs it (threads never migrate).
 *
 * The heap's threads are stopped throughout. Running, a sweeper cycle
 * (one a second) could fold poison mode's pending frees and give the
 * emptied spans (4 objects of the 8 KiB class each) to the page heap,
 * or a cycle's visit to an idle CPU hand its magazines back the same
 * way, and the scavenger then return their pages to the pool before the
 * drain took them: "got 4" (of 8) once in six poison-suite runs on the
 * KASAN image under load, and got 0 every time when the test waited for
 * that before the drain. Stopped, the sweeper folds nothing, and the
 * thread's allocations must fold the pending frees themselves (a
 * refill's fold, spanheap_reclaim). Stopped before the settle: what the
 * stop gives back (26 frames on the KASAN image, the two threads'
 * 8-page stacks among them) is in the pool before the first count.
 * Stopped only around the drain, some of it was heap memory the drain
 * left, and the thread got 12.
 */
KTEST(kmalloc, out_of_frames_returns_null_in_threads_and_interrupts)
{
	enum { SPARE = 8, IRQ_SPARE = 4 };
	/* With mm.guard=1 the spares are sampled: the pool's, whose frees
	 * give their pages back instead of keeping them in the magazine. */
	if (kspanheap.guard.base)
		KTEST_SKIP("mm.guard: the spares would be guarded objects, "
		           "not kept in the magazine");
	heap_threads_stop();
	heap_settle();
	size_t frames0 = frames_free_count(), meta0 = span_meta_pages();
	struct spanheap_stats st0, st;
	spanheap_stats(&kspanheap, &st0);
	void *spare[SPARE];
	size_t made = 0; /* no KASSERT: it would leave the threads stopped */
	for (int i = 0; i < SPARE; i++)
		made += (spare[i] = kmalloc(4096, 0)) != NULL;
	for (int i = 0; i < SPARE; i++)
		kfree(spare[i]);
	paddr_t head = frames_drain(0);

	void *list = NULL;
	bool null_seen = false;
	size_t got = oom_thread_allocs(&list, &null_seen);
	int held = this_cpu()->nheld;
	bool irqs_on = read_rflags() & RFLAGS_IF;
	void *large = kmalloc(1 << 20, 0);
	size_t given = free_first(&list, IRQ_SPARE);
	oom_irq_run();

	frames_refill(head);
	kfree(large);
	size_t freed = free_list(list) + free_list(oom_irq_list);
	heap_settle();
	spanheap_stats(&kspanheap, &st);
	size_t meta = span_meta_pages(), frames = frames_free_count();
	bool restarted = heap_threads_start();
	ktest_diag("no frames: a thread got %zu 4 KiB objects, then NULL; "
	           "after it freed %zu, a timer interrupt got %zu, then "
	           "NULL; atomic refusals %lu",
	           got, given, oom_irq_got,
	           st.n.atomic_fails - st0.n.atomic_fails);
	ktest_diag("frames free: %zu before, %zu after; span-heap metadata "
	           "pages %zu, %zu",
	           frames0, frames, meta0, meta);
	KEXPECT(restarted);
	KEXPECT_EQ(made, SPARE);
	KEXPECT(null_seen);
	KEXPECT(got >= SPARE);
	KEXPECT_EQ(given, IRQ_SPARE);
	KEXPECT(oom_irq_got >= IRQ_SPARE);
	KEXPECT_EQ(held, 0);
	KEXPECT(irqs_on);
	KEXPECT(large == NULL);
	KEXPECT(oom_irq_null);
	KEXPECT(oom_irq_large_null);
	KEXPECT_EQ(oom_irq_held, 0);
	KEXPECT(oom_irq_depth > 0);
	KEXPECT(st.n.atomic_fails >= st0.n.atomic_fails + 2);
	KEXPECT_EQ(given + freed, got + oom_irq_got);
	KEXPECT_EQ(frames + (meta - meta0), frames0);
	spanheap_check(&kspanheap);
}

/* Objects of size bytes until NULL (or max), linked through their first
 * word into *list; their number. */
static size_t alloc_until_null(size_t size, size_t max, void **list)
{
	size_t n = 0;
	void **p;
	while (n < max && (p = kmalloc(size, 0)) != NULL) {
		*p = *list;
		*list = p;
		n++;
	}
	return n;
}

/* With left frames in the pool: 64-byte objects until NULL, all freed,
 * then 256-byte objects until NULL, all freed; the pool refilled. */
static void sweep_round(size_t left, size_t max, size_t got[2], size_t freed[2])
{
	paddr_t head = frames_drain(left);
	void *list = NULL;
	got[0] = alloc_until_null(64, max, &list);
	freed[0] = free_list(list);
	list = NULL;
	got[1] = alloc_until_null(256, max, &list);
	freed[1] = free_list(list);
	frames_refill(head);
	heap_settle();
}

/*
 * With 8 MiB of frames left, a thread fills them with 64-byte objects
 * and frees them all; at once, the same thread's 256-byte objects must
 * get nearly all of that memory back: the page heap's refusal makes the
 * span heap sweep (and wait for a cycle the sweeper is running) before it
 * returns NULL. Without it the second round got NULL while the freed
 * spans waited for the sweeper. A first round grows the heap over the
 * arena the second uses (page tables, span table), so that the pool is
 * back where it was after the second.
 */
KTEST(kmalloc, out_of_frames_sweeps_frees_before_null)
{
	enum { LEFT = 2048, MAX = 1 << 18 };
	size_t got[2], freed[2];
	heap_settle();
	sweep_round(LEFT, MAX, got, freed);
	size_t frames0 = frames_free_count(), meta0 = span_meta_pages();
	sweep_round(LEFT, MAX, got, freed);
	size_t meta = span_meta_pages(); /* mm.kasan's shadow included */
	ktest_diag("%u frames left: %zu objects of 64 bytes, freed; then %zu "
	           "of 256 bytes",
	           (unsigned)LEFT, got[0], got[1]);
	KEXPECT(got[0] > 0 && got[0] < MAX);
	KEXPECT(got[1] < MAX);
	KEXPECT(got[1] * 256 >= got[0] * 64 / 8 * 7);
	KEXPECT_EQ(freed[0], got[0]);
	KEXPECT_EQ(freed[1], got[1]);
	KEXPECT_EQ(frames_free_count() + (meta - meta0), frames0);
	spanheap_check(&kspanheap);
}

/* ---- Other CPUs' caches ---------------------------------------------------
 */

/* What each other CPU leaves in its cache: OTHER_N objects of OTHER_SIZE
 * bytes, allocated and freed there, so that its magazine holds them and
 * keeps their spans in use. Not 1024: in poison mode a class's own size
 * takes a larger class (its red zone); 1000 is the 1 KiB class's in
 * either mode. */
enum { OTHER_SIZE = 1000, OTHER_N = 48 };

static void leave_objects(void *arg)
{
	void *p[OTHER_N];
	size_t *got = arg;
	/* Spans' objects, not the guarded pool's (mm.guard): their spans
	 * are what the magazine keeps in use. */
	struct guard_aside *aside = kmalloc(sizeof(*aside), KM_ZERO);
	for (int i = 0; aside && i < OTHER_N; i++)
		if ((p[i] = kmalloc_plain(OTHER_SIZE, 0, aside)) != NULL)
			++*got;
	for (int i = 0; aside && i < OTHER_N; i++)
		kfree(p[i]);
	if (aside)
		kmalloc_plain_done(aside);
	kfree(aside);
}

static size_t class_spans(size_t size)
{
	static struct spanheap_stats st; /* large: not on the stack */
	spanheap_stats(&kspanheap, &st);
	return st.cls[sizeclass_of(size)].spans;
}

/*
 * Every other CPU frees OTHER_N objects of 1 KiB into its own magazine;
 * then this CPU uses up the frame pool with 4 KiB objects. Before its
 * NULL, the refused allocation gives every CPU's cache back
 * (spanheap_reclaim, with the world stopped: mm_port_each_other_cpu), so
 * the 1 KiB class has no more spans than before the other CPUs' objects.
 * Before, they stayed in those CPUs' magazines and their pages were lost
 * to the allocation until those CPUs refilled.
 */
KTEST(kmalloc, out_of_frames_flushes_other_cpus)
{
	heap_settle();
	size_t frames0 = frames_free_count(), meta0 = span_meta_pages();
	size_t base = class_spans(OTHER_SIZE), got[MAX_CPUS] = {0}, others = 0;
	uint32_t sg0 = atomic_load(&kspanheap.sweepgen);
	struct thread_handle t[MAX_CPUS] = {0};
	unsigned self = this_cpu()->id;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (i != self && atomic_load(&cpus[i].online))
			t[i] = thread_create("oom_leave", leave_objects,
			                     &got[i], i);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (thread_handle_ok(t[i])) {
			thread_join(t[i]);
			KEXPECT_EQ(got[i], OTHER_N);
			others++;
		}
	size_t held = class_spans(OTHER_SIZE);
	/* A cycle begun meanwhile has idle CPUs hand their caches back. */
	bool flipped = atomic_load(&kspanheap.sweepgen) != sg0;
	uint64_t flushes0 = atomic_load(&kspanheap.flush_alls);

	paddr_t head = frames_drain(0);
	void *list = NULL;
	size_t n = alloc_until_null(4096, OOM_MAX, &list);
	size_t after = class_spans(OTHER_SIZE);
	frames_refill(head);
	size_t freed = free_list(list);
	heap_settle();
	size_t meta = span_meta_pages();
	ktest_diag("%zu other CPUs left 1 KiB objects: class spans %zu before, "
	           "%zu held, %zu after this CPU's %zu 4 KiB objects and NULL",
	           others, base, held, after, n);
	if (others)
		KEXPECT(held > base || flipped);
	KEXPECT(after <= base);
	KEXPECT(n < OOM_MAX);
	KEXPECT_EQ(freed, n);
	KEXPECT(atomic_load(&kspanheap.flush_alls) > flushes0);
	KEXPECT_EQ(frames_free_count() + (meta - meta0), frames0);
	spanheap_check(&kspanheap);
}

/* ---- Every CPU out of frames at once
 * ------------------------------------------ */

enum { ALL_LEFT = 512, ALL_ROUNDS = 4, ALL_OBJS = 1 << 15 };

static const size_t all_sizes[] = {64, 1024, 4096, 48 << 10};
#define ALL_NSIZES (sizeof all_sizes / sizeof all_sizes[0])

struct oom_worker {
	unsigned id;
	size_t got[ALL_ROUNDS], bad;
	void **objs;
};

static uintptr_t all_pattern(const struct oom_worker *w, size_t i,
                             const void *p)
{
	return (uintptr_t)p ^ ((uintptr_t)w->id << 56) ^ i;
}

/* Each round: objects of one size until NULL (or ALL_OBJS), each with its
 * pattern in its first and last words, checked and freed. */
static void oom_worker_main(void *arg)
{
	struct oom_worker *w = arg;
	for (unsigned r = 0; r < ALL_ROUNDS; r++) {
		size_t size = all_sizes[(w->id + r) % ALL_NSIZES], n = 0;
		uintptr_t *p;
		while (n < ALL_OBJS && (p = kmalloc(size, 0)) != NULL) {
			p[0] = p[size / sizeof(uintptr_t) - 1] =
			        all_pattern(w, n, p);
			w->objs[n++] = p;
		}
		w->got[r] = n;
		for (size_t i = 0; i < n; i++) {
			p = w->objs[i];
			uintptr_t want = all_pattern(w, i, p);
			if (p[0] != want ||
			    p[size / sizeof(uintptr_t) - 1] != want)
				w->bad++;
			kfree(p);
		}
	}
}

/* One storm: a worker on every online CPU, ALL_LEFT frames in the pool.
 * Returns the rounds a NULL ended; adds up objects and bad patterns. */
static size_t all_storm(struct oom_worker *w, size_t *objs, size_t *bad)
{
	struct thread_handle t[MAX_CPUS] = {0};
	paddr_t head = frames_drain(ALL_LEFT);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		if (w[i].objs && atomic_load(&cpus[i].online))
			t[i] = thread_create("oom_all", oom_worker_main, &w[i],
			                     i);
	size_t nulls = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		if (!thread_handle_ok(t[i]))
			continue;
		thread_join(t[i]);
		for (unsigned r = 0; r < ALL_ROUNDS; r++) {
			*objs += w[i].got[r];
			nulls += w[i].got[r] < ALL_OBJS;
		}
		*bad += w[i].bad;
	}
	frames_refill(head);
	heap_settle();
	return nulls;
}

/*
 * Every CPU runs out of frames at once, round after round of one size
 * each (64 B to 48 KiB): each refusal flushes every CPU's cache (stopping
 * the world, from several CPUs at the same time) and sweeps before its
 * NULL, while the others allocate and free. No pattern breaks, NULLs come,
 * and after it the frame pool is where it was, and sound (frames_check,
 * as well as its count). A first storm grows the
 * heap's metadata over the arena the second uses.
 */
KTEST(kmalloc, every_cpu_out_of_frames_at_once)
{
	static struct oom_worker w[MAX_CPUS];
	size_t objs = 0, bad = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++) {
		w[i] = (struct oom_worker){.id = i};
		if (atomic_load(&cpus[i].online))
			KASSERT(w[i].objs =
			                kmalloc(ALL_OBJS * sizeof(void *), 0));
	}
	heap_settle();
	all_storm(w, &objs, &bad);
	/* Held for good, and grown by a storm that reaches further into the
	 * arena than the first did (the CPUs' race decides how far): the
	 * span heap's own pages, the page heap's metadata and page tables. */
	/* span_own_pages, not span_meta_pages: heap_meta_frames holds
	 * mm.kasan's shadow already. */
	size_t frames0 = frames_free_count(), own0 = span_own_pages();
	size_t hmeta0 = heap_meta_frames(), pt0 = paging_table_pages();
	uint64_t flushes0 = atomic_load(&kspanheap.flush_alls);
	objs = bad = 0;
	size_t nulls = all_storm(w, &objs, &bad);
	size_t held = (span_own_pages() - own0) +
	              (heap_meta_frames() - hmeta0) +
	              (paging_table_pages() - pt0);
	ktest_diag(
	        "%zu objects, %zu rounds ended by NULL, %lu flushes of "
	        "every CPU; frames free %zu then %zu, %zu more held for good",
	        objs, nulls,
	        (unsigned long)(atomic_load(&kspanheap.flush_alls) - flushes0),
	        frames0, frames_free_count(), held);
	KEXPECT_EQ(bad, 0);
	KEXPECT(nulls > 0);
	KEXPECT(objs > 0);
	KEXPECT(atomic_load(&kspanheap.flush_alls) > flushes0);
	KEXPECT_EQ(frames_free_count() + held, frames0);
	for (unsigned i = 0; i < MAX_CPUS; i++)
		kfree(w[i].objs);
	spanheap_check(&kspanheap);
	/* The pool too: its count alone (above) passed a free that was
	 * counted but never made (its bitmap and summaries disagree). */
	frames_check();
}
