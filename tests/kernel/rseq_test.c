/*
 * The heap's restartable sequences (mm/rseq.h): a kmalloc or kfree
 * interrupted at any instruction, by a handler that uses the same
 * magazine, still hands out and takes back each object exactly once.
 *
 * The interruption is a single step (RFLAGS.TF): the traced call traps
 * after every instruction, and at the k-th trap the #DB hook does what an
 * interrupt handler on this CPU may (two kfrees and a kmalloc of the same
 * class, so the magazine's top moves), then what irq_dispatch does
 * (mm_rseq_restart). Trial k = 0, 1, 2, ... until the call finishes
 * before its k-th step: every instruction boundary of the fast path, the
 * sequence's own included, is tried once. Interrupts are off throughout,
 * so nothing else runs on the CPU.
 *
 * The *_irq_* tests take the real way in instead: at the k-th step the
 * hook sends this CPU an IPI and resumes the call with interrupts on, so
 * the IPI lands at that boundary, through irq_dispatch, whose restart is
 * the one under test; its handler interferes and turns interrupts off
 * again for the rest of the call.
 *
 * The *_preempted_* tests go one further: the IPI's handler wakes a
 * helper thread on the same CPU and asks for a reschedule, so the
 * interrupt's exit switches this thread out at that boundary (as a timer
 * tick's preemption does); the helper, queued ahead of it, interferes,
 * turns the preempted thread's saved interrupts off, and blocks again;
 * the call then resumes from its saved frame.
 *
 * Last, the guard: spanheap_init refuses a heap whose port has no
 * sequences recorded.
 */
#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/lapic.h"
#include "arch/x86_64/trap.h"
#include "kernel/heap.h"
#include "kernel/irq.h"
#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/sched_internal.h"
#include "kernel/string.h"
#include "kernel/thread.h"
#include "mm/rseq.h"
#include "mm/spanheap.h"
#include "mm/spanheap_internal.h"
#include "tests/kernel/rseq_trial_util.h"

#define OBJ 64

/* The BY_SWITCH trials' helper thread: go and frame set by test_ipi. */
static struct {
	struct thread_handle h;
	_Atomic bool ready; /* set as it first blocks, interrupts off */
	_Atomic bool go, stop;
	struct trap_frame *frame; /* the preempted call's, to resume */
	unsigned ran;             /* times it interfered */
} helper;

/* A fill trial's objects: the "handler" frees them until this CPU's
 * magazine of the class is full. */
#define FILL_MAX 1100
static struct {
	bool on;
	unsigned n;
	void *v[FILL_MAX];
} fill;

static void interfere(void)
{
	if (fill.on) {
		struct mmag *m = &kspanheap.caches[this_cpu()->id]
		                          .mag[sizeclass_of(OBJ)];
		while (mag_top(m) < m->limit && fill.n)
			kfree(fill.v[--fill.n]);
		trial.fired = true;
		return;
	}
	kfree(trial.g1);
	kfree(trial.g2);
	trial.s = kmalloc(OBJ, KM_ATOMIC);
	trial.fired = true;
}

/* The IPI of a BY_IPI or BY_SWITCH trial (trial_ipi_landed). */
static void test_ipi(struct trap_frame *f)
{
	if (!trial_ipi_landed(f))
		return;
	if (trial.by == BY_SWITCH) {
		/* Queued now, the helper runs before this thread, which the
		 * exit's switch queues behind it. */
		helper.frame = f;
		atomic_store(&helper.go, true);
		thread_wake(helper.h);
		this_cpu()->need_resched = true;
		return;
	}
	interfere();
	f->rflags &= ~RFLAGS_IF; /* the rest of the call as before */
}

/*
 * The helper of the BY_SWITCH trials, on the test's CPU: blocked until
 * test_ipi wakes it, then does what another thread on this CPU may and
 * turns the interrupted call's interrupts off for the rest of it, as
 * test_ipi does.
 *
 * It runs with interrupts off from its loop to its exit and leaves the
 * CPU only by blocking (sched_block, as a wait queue does; thread_yield
 * and thread_sleep_ns need interrupts on and return with them on), so no
 * tick or IPI preempts it. A preempted helper is queued behind the call's
 * thread, which then finishes the call, interrupts on, before the helper
 * interferes: so it failed once under host load, when the helper yielded
 * between trials with interrupts on and a tick, its slice run out,
 * preempted it next to its check of go.
 */
static void helper_thread(void *arg)
{
	cpu_cli();
	atomic_store(&helper.ready, true);
	while (!atomic_load(&helper.stop)) {
		if (atomic_load(&helper.go)) {
			atomic_store(&helper.go, false);
			interfere();
			helper.frame->rflags &= ~RFLAGS_IF;
			helper.ran++;
		}
		/* No wake is lost between the checks and the block: the
		 * wakers (test_ipi, run_preempted) run on this CPU, so only
		 * while the helper is off it, and it gets off only here. */
		sched_prepare_block();
		sched_block();
	}
	cpu_sti();
}

static inline void trace_on(void)
{
	single_step_on();
}

/* A fresh object of the class, or the test fails. */
static void *obj(void)
{
	void *p = kmalloc(OBJ, KM_ATOMIC);
	KEXPECT(p != NULL);
	return p;
}

/*
 * The magazine holds exactly the n objects of want[] (any order): n pops
 * give each once, and the pop after them none of them. Frees what it
 * popped. Returns false (having failed the test) otherwise.
 */
static bool magazine_holds(void *const *want, unsigned n, unsigned k)
{
	void *got[8];
	bool ok = true;
	for (unsigned i = 0; i <= n; i++)
		got[i] = kmalloc(OBJ, KM_ATOMIC);
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
		kfree(got[i]);
	return ok;
}

/* Runs trials of op, interrupted by by, until one finishes untouched;
 * returns the number of trials that restarted a sequence. */
static unsigned run_trials(bool (*op)(unsigned k), enum interrupter by)
{
	return trial_run(op, by, test_ipi);
}

/* One trial of kfree(p) interrupted at step k. Afterwards the magazine
 * holds {p, g1, g2} but the handler's s. */
static bool free_trial(unsigned k)
{
	spanheap_flush_cache(&kspanheap); /* the magazine empty */
	void *p = obj();
	trial = (typeof(trial)){
	        .by = trial.by, .target = k, .g1 = obj(), .g2 = obj()};
	trace_on();
	kfree(p);
	trace_off();
	void *all[3] = {p, trial.g1, trial.g2}, *left[2];
	unsigned n = 0;
	if (!trial.fired) {
		/* Untouched: the handler's objects are still the test's. */
		kfree(trial.g1);
		kfree(trial.g2);
		return magazine_holds((void *[]){trial.g2, trial.g1, p}, 3, k);
	}
	for (unsigned i = 0; i < 3; i++)
		if (all[i] != trial.s && n < 2)
			left[n++] = all[i];
	bool ok = n == 2 && magazine_holds(left, 2, k);
	kfree(trial.s);
	return ok;
}

/* One trial of kfree(p) interrupted at step k by a handler that fills the
 * magazine: the push then finds it full, also after a restart of an
 * attempt that had stored p's marker, and the slow path must take that
 * marker for this free's own. Afterwards p is free and the heap is
 * whole. */
static bool fill_trial(unsigned k)
{
	spanheap_flush_cache(&kspanheap); /* the magazine empty */
	void *p = obj();
	for (fill.n = 0; fill.n < FILL_MAX; fill.n++)
		fill.v[fill.n] = obj();
	fill.on = true;
	trial = (typeof(trial)){.by = trial.by, .target = k};
	trace_on();
	kfree(p);
	trace_off();
	fill.on = false;
	while (fill.n)
		kfree(fill.v[--fill.n]);
	struct spanheap_where w;
	bool ok = spanheap_where(&kspanheap, p, &w) &&
	          w.state != SPANHEAP_OBJ_ALLOCATED;
	if (!ok)
		ktest_fail_at(__FILE__, __LINE__, "step %u: %p not freed", k,
		              p);
	return ok;
}

/* One trial of kmalloc interrupted at step k, over a magazine holding
 * {x1, x2}. Afterwards the magazine, the call's object and the handler's
 * hold {x1, x2, g1, g2}, each once. */
static bool alloc_trial(unsigned k)
{
	spanheap_flush_cache(&kspanheap);
	void *x1 = obj(), *x2 = obj();
	trial = (typeof(trial)){
	        .by = trial.by, .target = k, .g1 = obj(), .g2 = obj()};
	kfree(x1);
	kfree(x2);
	size_t size = *(volatile size_t *)&(size_t){OBJ}; /* not constant */
	trace_on();
	void *r = kmalloc(size, KM_ATOMIC);
	trace_off();
	if (!trial.fired) {
		kfree(trial.g1);
		kfree(trial.g2);
		trial.s = NULL;
	}
	void *all[4] = {x1, x2, trial.g1, trial.g2}, *left[3];
	unsigned n = 0, r_seen = 0, s_seen = 0;
	for (unsigned i = 0; i < 4; i++) {
		if (all[i] == r)
			r_seen++;
		else if (all[i] == trial.s)
			s_seen++;
		else if (n < 3)
			left[n++] = all[i];
	}
	unsigned want_n = trial.fired ? 2 : 3;
	bool ok = r_seen == 1 && s_seen == (trial.fired ? 1 : 0) && n == want_n;
	if (!ok)
		ktest_fail_at(__FILE__, __LINE__,
		              "step %u: kmalloc gave %p, the handler %p: not "
		              "one each of the magazine's objects",
		              k, r, trial.s);
	else
		ok = magazine_holds(left, n, k);
	kfree(r);
	if (trial.s)
		kfree(trial.s);
	return ok;
}

/* The sequences are the magazines' pop and push; poison mode
 * (mm.debug_poison) keeps no magazines, so no call runs one; and the
 * guarded pool (mm.guard) may take the refill a step's magazine needs,
 * handing out an object of its own. */
#define SKIP_IN_POISON_MODE()                                              \
	do {                                                               \
		if (kspanheap.cfg.poison)                                  \
			KTEST_SKIP("mm.debug_poison: no magazines, so no " \
			           "sequence runs");                       \
		if (kspanheap.guard.base)                                  \
			KTEST_SKIP("mm.guard: the guarded pool may take "  \
			           "the magazine's refills");              \
	} while (0)

KTEST(rseq, kfree_interrupted_at_every_step)
{
	SKIP_IN_POISON_MODE();
	unsigned restarts = run_trials(free_trial, BY_HOOK);
	/* The push's sequence (rseq_push, mm/spanheap_free.c) is eleven
	 * instructions on its way to the commit (the marker's test, two,
	 * then nine): each was interrupted once, before it ran, and each
	 * such trial restarted the sequence. */
	KEXPECT_EQ(restarts, 11);
}

/* The same with a handler that fills the magazine: until a review, a
 * restart after the push had stored p's marker found the magazine full,
 * and the slow path's claim of the marker panicked, "double free", on
 * p's own marker. */
KTEST(rseq, kfree_interrupted_by_a_handler_that_fills_the_magazine)
{
	SKIP_IN_POISON_MODE();
	KEXPECT_EQ(run_trials(fill_trial, BY_HOOK), 11);
	spanheap_check(&kspanheap);
}

KTEST(rseq, kmalloc_interrupted_at_every_step)
{
	SKIP_IN_POISON_MODE();
	unsigned restarts = run_trials(alloc_trial, BY_HOOK);
	/* The pop's (spanheap_rseq_pop, mm/spanheap.h): eight. */
	KEXPECT_EQ(restarts, 8);
}

/* As above, with the restart irq_dispatch's own (without it these fail,
 * and the two above do not). An IPI at a sequence's first instruction
 * moves nothing, so one restart fewer is seen. */
KTEST(rseq, kfree_irq_at_every_step)
{
	SKIP_IN_POISON_MODE();
	KEXPECT_EQ(run_trials(free_trial, BY_IPI), 11 - 1);
}

KTEST(rseq, kmalloc_irq_at_every_step)
{
	SKIP_IN_POISON_MODE();
	KEXPECT_EQ(run_trials(alloc_trial, BY_IPI), 8 - 1);
}

/* Trials of op preempted at every step: the helper on this CPU
 * interferes while the call is switched out. Returns the restarts. */
static unsigned run_preempted(bool (*op)(unsigned k))
{
	helper = (typeof(helper)){0};
	struct thread_handle h =
	        thread_create("rseq_helper", helper_thread, NULL,
	                      this_cpu()->id); /* a thread keeps its CPU */
	if (!thread_handle_ok(h)) {
		ktest_fail_at(__FILE__, __LINE__, "no helper thread");
		return 0;
	}
	helper.h = h;
	/* Until it blocks, the helper may be preempted, with interrupts on,
	 * before its loop. */
	while (!atomic_load(&helper.ready))
		thread_yield();
	unsigned restarts = run_trials(op, BY_SWITCH);
	atomic_store(&helper.stop, true);
	thread_wake(h);
	thread_join(h);
	return restarts;
}

/* As the *_irq_* tests, the handler's work done by another thread that
 * the interrupt's exit switched to, the call resumed from its frame. */
KTEST(rseq, kfree_preempted_at_every_step)
{
	SKIP_IN_POISON_MODE();
	KEXPECT_EQ(run_preempted(free_trial), 11 - 1);
	KEXPECT(helper.ran >= 11);
}

KTEST(rseq, kmalloc_preempted_at_every_step)
{
	SKIP_IN_POISON_MODE();
	KEXPECT_EQ(run_preempted(alloc_trial), 8 - 1);
	KEXPECT(helper.ran >= 8);
}

KTEST(rseq, restart_moves_only_an_ip_inside_a_sequence)
{
	uintptr_t ip = (uintptr_t)&run_trials;
	KEXPECT(!mm_rseq_restart(&ip));
	KEXPECT_EQ(ip, (uintptr_t)&run_trials);
	ip = 0;
	KEXPECT(!mm_rseq_restart(&ip));
	KEXPECT_EQ(ip, 0);
}

/* spanheap_init refuses MM_PORT_RSEQ with an empty table, as when a port
 * never called mm_rseq_init or its linker script dropped the section: no
 * interrupted fast path could be restarted. The test hides the count
 * alone; the table, which the other CPUs' restarts search, stays. The
 * refusal touches nothing of the heap it was given. */
KTEST(rseq, spanheap_init_refuses_an_empty_table)
{
	KASSERT(mm_rseq_count() > 0);
	struct spanheap *scratch = kmalloc(sizeof(*scratch), 0);
	KASSERT(scratch != NULL);
	memset(scratch, 0xa5, sizeof(*scratch));
	struct spanheap_config cfg;
	spanheap_config_default(&cfg);
	atomic_store(&mm_rseq_test_hide_count, true);
	bool ok = spanheap_init(scratch, &kheap, &cfg);
	atomic_store(&mm_rseq_test_hide_count, false);
	KEXPECT(!ok);
	KEXPECT(mm_rseq_count() > 0);
	const unsigned char *b = (const unsigned char *)scratch;
	size_t changed = 0;
	for (size_t i = 0; i < sizeof(*scratch); i++)
		changed += b[i] != 0xa5;
	KEXPECT_EQ(changed, 0);
	kfree(scratch);
}
