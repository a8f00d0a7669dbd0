/*
 * The run-time lock checker (see spinlock.h for the rules). State: each
 * CPU's stack of held locks (struct cpu, touched only by that CPU with
 * preemption off, and changed only with interrupts off: see
 * stack_change_begin), three usage bits per lock, and the lowest rank
 * taken in an interrupt handler and the highest taken with interrupts on
 * (atomic: see check_irq_rank). A violation panics naming both locks and
 * their ranks, or, in test mode, is counted and its message kept for the
 * test to read (lockcheck_record.c).
 */
#include "lockcheck.h"

#include <stdatomic.h>

#include "arch/x86_64/cpu.h"
#include "kernel/format.h"
#include "kernel/lockcheck_internal.h"
#include "kernel/lockcheck_testing.h"
#include "kernel/percpu.h"
#include "kernel/printk.h"
#include "kernel/thread.h"

#define LOCK_USED_IN_IRQ   1u
#define LOCK_TAKEN_IRQS_ON 2u
#define LOCK_IRQ_REPORTED  4u

/* Formats a violation's message and reports it (lockcheck_record.c):
 * a panic, or in test mode a record. */
__attribute__((format(printf, 1, 2))) static void violation(const char *fmt,
                                                            ...)
{
	char msg[LOCKCHECK_MESSAGE_MAX];
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	lockcheck_report(msg);
}

/* The held lock of highest rank, or NULL. */
static struct spinlock *highest_held(struct cpu *c)
{
	struct spinlock *h = NULL;
	for (int i = 0; i < c->nheld; i++)
		if (!h || c->held[i]->rank > h->rank)
			h = c->held[i];
	return h;
}

static void check_irq_usage(struct spinlock *l, struct cpu *c, bool irqs_on)
{
	uint8_t bit = c->irq_depth > 0 ? LOCK_USED_IN_IRQ
	              : irqs_on        ? LOCK_TAKEN_IRQS_ON
	                               : 0;
	if (!bit)
		return;
	uint8_t old = atomic_fetch_or(&l->usage, bit);
	uint8_t now = old | bit;
	if ((now & LOCK_USED_IN_IRQ) && (now & LOCK_TAKEN_IRQS_ON) &&
	    !(old & LOCK_IRQ_REPORTED)) {
		atomic_fetch_or(&l->usage, LOCK_IRQ_REPORTED);
		violation("lock %s (rank %s) is used in interrupt context but "
		          "was held with interrupts enabled on cpu %u",
		          l->name, lock_rank_name(l->rank), c->id);
	}
}

/*
 * The rule of lockrank.h: a lock held with interrupts enabled ranks below
 * every lock an interrupt handler takes. An interrupt that lands while
 * such a lock is held shows a breach as a rank-order violation, but only
 * if one lands in that window, which a short hold rarely offers. So the
 * checker keeps the lowest rank taken in an interrupt handler and the
 * highest taken with interrupts on, and checks every acquisition of
 * either kind against the other side. Only acquisitions that pass raise
 * or lower them (a test's deliberate breach leaves them as they were).
 * Checked, then published: two first uses racing on two CPUs may both
 * pass, and the next acquisition of either lock reports them. The names
 * are for the message only. Atomic, any CPU.
 */
static _Atomic int lowest_irq_rank = 1 << 30;
static const char *_Atomic lowest_irq_name;
static _Atomic int highest_irqs_on_rank = -1;
static const char *_Atomic highest_irqs_on_name;

/* Moves *rank to r if r is below it (lower) or above it (!lower). */
static void publish_rank(_Atomic int *rank, const char *_Atomic *name, int r,
                         const char *n, bool lower)
{
	int old = atomic_load(rank);
	while (lower ? r < old : r > old) {
		if (atomic_compare_exchange_weak(rank, &old, r)) {
			atomic_store(name, n);
			return;
		}
	}
}

/* A name published just after its rank may not be there yet. */
static const char *name_or_unknown(const char *name)
{
	return name ? name : "?";
}

static void check_irq_rank(struct spinlock *l, struct cpu *c, bool irqs_on)
{
	bool in_irq = c->irq_depth > 0;
	if (!in_irq && !irqs_on)
		return;
	int r = (int)l->rank;
	int other = in_irq ? atomic_load(&highest_irqs_on_rank)
	                   : atomic_load(&lowest_irq_rank);
	if (in_irq ? r > other : r < other) {
		if (in_irq)
			publish_rank(&lowest_irq_rank, &lowest_irq_name, r,
			             l->name, true);
		else
			publish_rank(&highest_irqs_on_rank,
			             &highest_irqs_on_name, r, l->name, false);
		return;
	}
	/* Once per lock, as the other interrupt rule. */
	if (atomic_fetch_or(&l->usage, LOCK_IRQ_REPORTED) & LOCK_IRQ_REPORTED)
		return;
	if (in_irq)
		violation("lock %s (rank %s) is taken in an interrupt handler "
		          "but ranks at or below %s (rank %s), which is "
		          "held with interrupts enabled",
		          l->name, lock_rank_name(l->rank),
		          name_or_unknown(atomic_load(&highest_irqs_on_name)),
		          lock_rank_name((enum lock_rank)other));
	else
		violation("lock %s (rank %s) is held with interrupts enabled "
		          "but ranks at or above %s (rank %s), which an "
		          "interrupt handler takes",
		          l->name, lock_rank_name(l->rank),
		          name_or_unknown(atomic_load(&lowest_irq_name)),
		          lock_rank_name((enum lock_rank)other));
}

/*
 * A lock that spin_init or SPINLOCK_INIT never set up (zeroed memory) has
 * no name and rank 0, which is no rank: every check below would be about
 * nothing, and its holder field, 0, is CPU 0 (a false self-deadlock
 * there). Reported naming its address; in test mode it is then taken
 * unchecked. True when l was set up.
 */
static bool set_up(struct spinlock *l, struct cpu *c)
{
	if (l->name && lock_rank_exists(l->rank))
		return true;
	violation("cpu %u takes the lock at %p, which was never set up "
	          "(name %s, rank %d): spin_init or SPINLOCK_INIT first",
	          c->id, (void *)l, l->name ? l->name : "none", (int)l->rank);
	return false;
}

void lockcheck_acquire(struct spinlock *l, bool irqs_on)
{
	struct cpu *c = this_cpu();
	if (!set_up(l, c))
		return;
	if (atomic_load_explicit(&l->holder, memory_order_relaxed) ==
	    (int)c->id)
		panic("lock checker: cpu %u takes %s again (self-deadlock)",
		      c->id, l->name);
	for (int i = 0; i < c->nheld; i++)
		if (lock_rank_is_leaf(c->held[i]->rank))
			violation("lock %s (rank %s) taken while holding "
			          "leaf lock %s (rank %s)",
			          l->name, lock_rank_name(l->rank),
			          c->held[i]->name,
			          lock_rank_name(c->held[i]->rank));
	struct spinlock *h = highest_held(c);
	if (h && h->rank >= l->rank && !lock_rank_is_leaf(h->rank))
		violation("lock order: %s (rank %d %s) taken while holding "
		          "%s (rank %d %s)",
		          l->name, l->rank, lock_rank_name(l->rank), h->name,
		          h->rank, lock_rank_name(h->rank));
	check_irq_usage(l, c, irqs_on);
	check_irq_rank(l, c, irqs_on);
}

/*
 * An interrupt handler on this CPU reads its held-lock stack (the checks
 * of the handler's own locks) and pushes onto it, and a lock taken with
 * interrupts on (the shootdown lock) changes the stack under it. Each
 * change is therefore made with interrupts off, so that a handler sees the
 * stack before it or after it: never a count that already covers a stale
 * entry (a leaf released just before: a false "taken while holding leaf"),
 * nor an entry half shifted out. Returns the state for stack_change_end.
 */
static unsigned long stack_change_begin(void)
{
	unsigned long flags = read_rflags();
	if (flags & RFLAGS_IF)
		cpu_cli();
	return flags;
}

static void stack_change_end(unsigned long flags)
{
	if (flags & RFLAGS_IF)
		cpu_sti();
}

TEST_HOOK_DEFINE(lockcheck_testing_window);

void lockcheck_acquired(struct spinlock *l)
{
	struct cpu *c = this_cpu();
	if (c->nheld == LOCKS_HELD_MAX)
		panic("lock checker: cpu %u holds more than %d locks", c->id,
		      LOCKS_HELD_MAX);
	unsigned long flags = stack_change_begin();
	c->held[c->nheld] = l;
	TEST_HOOK(lockcheck_testing_window, (uintptr_t)l);
	c->nheld++;
	stack_change_end(flags);
}

bool lockcheck_release(struct spinlock *l)
{
	struct cpu *c = this_cpu();
	for (int i = c->nheld - 1; i >= 0; i--) {
		if (c->held[i] != l)
			continue;
		/* Interrupts on now, l was held with them on: whatever
		 * turned them on under it (an unpin of mm's, a stray sti)
		 * escaped lockcheck_irqs_on, so check l here. */
		if (read_rflags() & RFLAGS_IF) {
			check_irq_usage(l, c, true);
			check_irq_rank(l, c, true);
		}
		unsigned long flags = stack_change_begin();
		for (int j = i; j + 1 < c->nheld; j++)
			c->held[j] = c->held[j + 1];
		TEST_HOOK(lockcheck_testing_window, (uintptr_t)l);
		c->nheld--;
		stack_change_end(flags);
		return true;
	}
	violation("release of lock %s (rank %s), which cpu %u does not hold",
	          l->name, lock_rank_name(l->rank), c->id);
	return false;
}

void lockcheck_irqs_on(void)
{
	struct cpu *c = this_cpu();
	for (int i = 0; i < c->nheld; i++) {
		check_irq_usage(c->held[i], c, true);
		check_irq_rank(c->held[i], c, true);
	}
}

bool lockcheck_held(const struct spinlock *l, const char *what)
{
	if (spin_held(l))
		return true;
	violation("%s on cpu %u, which does not hold lock %s (rank %s)", what,
	          this_cpu()->id, l->name, lock_rank_name(l->rank));
	return false;
}

void lockcheck_irq_return(unsigned vector, int nheld,
                          const struct spinlock *top, int preempt_count,
                          bool irqs_on)
{
	struct cpu *c = this_cpu();
	const char *who = c->current ? c->current->name : "?";
	if (c->nheld > nheld)
		violation("interrupt handler for vector %#x returned holding "
		          "spinlock %s (rank %s); it interrupted thread %s",
		          vector, c->held[c->nheld - 1]->name,
		          lock_rank_name(c->held[c->nheld - 1]->rank), who);
	else if (c->nheld < nheld)
		violation("interrupt handler for vector %#x released a lock "
		          "that thread %s, which it interrupted, holds (%d "
		          "held on entry, %d on return)",
		          vector, who, nheld, c->nheld);
	else if (nheld > 0 && c->held[nheld - 1] != top)
		violation("interrupt handler for vector %#x released a lock "
		          "that thread %s, which it interrupted, holds, and "
		          "returned holding spinlock %s (rank %s) in its place",
		          vector, who, c->held[nheld - 1]->name,
		          lock_rank_name(c->held[nheld - 1]->rank));
	else if (c->preempt_count != preempt_count)
		violation("interrupt handler for vector %#x returned with "
		          "preemption count %d, %d on entry (thread %s)",
		          vector, c->preempt_count, preempt_count, who);
	else if (irqs_on)
		violation("interrupt handler for vector %#x returned with "
		          "interrupts enabled (thread %s); handlers run and "
		          "return with them off",
		          vector, who);
}

/*
 * The sleep check. releasing is the lock the sleep itself releases
 * (thread_sleep_unlock's, taken irqsave), or NULL; irqs_on says whether
 * interrupts were on before it. Any other lock held, or a preemption
 * count beyond releasing's, would go to sleep with the thread and be
 * charged to the next one on this CPU. True when the sleep may go ahead.
 */
static bool sleep_ok(struct cpu *c, const struct spinlock *releasing,
                     bool irqs_on)
{
	int base = releasing ? 1 : 0;
	if (!c->current || !c->idle || c->current == c->idle)
		return false;
	for (int i = 0; i < c->nheld; i++)
		if (c->held[i] != releasing)
			return false;
	return c->nheld == base && c->preempt_count == base &&
	       c->irq_depth == 0 && irqs_on;
}

/* Writes into msg why the sleep of what may not go ahead (sleep_ok said
 * so), naming the first reason of: no thread yet (the CPU's scheduler has
 * not started: nothing to switch to or from), an interrupt handler
 * (whichever thread it interrupted, the idle one too), the idle thread (it
 * runs when nothing else can, so it may never sleep, block or yield: the
 * switch would pick it again while it sleeps, or find no thread), another
 * lock, the released lock not held, the preemption count, interrupts
 * off. */
static void sleep_refusal(const char *what, const struct spinlock *releasing,
                          char *msg, size_t n)
{
	struct cpu *c = this_cpu();
	int base = releasing ? 1 : 0;
	const char *who = c->current ? c->current->name : "?";
	const struct spinlock *other = NULL;
	for (int i = c->nheld - 1; i >= 0 && !other; i--)
		if (c->held[i] != releasing)
			other = c->held[i];
	if (!c->current || !c->idle)
		ksnprintf(msg, n,
		          "%s on cpu %u before its scheduler started (no "
		          "thread to sleep)",
		          what, c->id);
	else if (c->irq_depth > 0)
		ksnprintf(msg, n, "%s in an interrupt handler (thread %s)",
		          what, who);
	else if (c->current == c->idle)
		ksnprintf(msg, n,
		          "%s in cpu %u's idle thread %s, which must never "
		          "sleep",
		          what, c->id, who);
	else if (other)
		ksnprintf(msg, n,
		          "%s in thread %s while holding spinlock %s "
		          "(rank %s)",
		          what, who, other->name, lock_rank_name(other->rank));
	else if (c->nheld != base)
		ksnprintf(msg, n,
		          "%s in thread %s, which does not hold lock %s", what,
		          who, releasing->name);
	else if (c->preempt_count > base)
		ksnprintf(msg, n, "%s in thread %s with preemption disabled",
		          what, who);
	else if (c->preempt_count < base)
		ksnprintf(msg, n,
		          "%s in thread %s with preemption count %d "
		          "(a preempt_enable without its "
		          "preempt_disable)",
		          what, who, c->preempt_count);
	else /* pinned with interrupts off (as mm's per-CPU caches will be) */
		ksnprintf(msg, n, "%s in thread %s with interrupts disabled",
		          what, who);
}

/* The check for a sleep on object (a wait queue's or semaphore's name)
 * or on nothing (NULL); the report names what and object. */
static bool may_sleep(const char *what, const char *object,
                      const struct spinlock *releasing, bool irqs_on)
{
	if (sleep_ok(this_cpu(), releasing, irqs_on))
		return true;
	char name[64], msg[160];
	if (object) {
		ksnprintf(name, sizeof(name), "%s(%s)", what, object);
		what = name;
	}
	sleep_refusal(what, releasing, msg, sizeof(msg));
	violation("%s", msg);
	return false;
}

bool lockcheck_may_sleep(const char *what)
{
	return may_sleep(what, NULL, NULL, (read_rflags() & RFLAGS_IF) != 0);
}

bool lockcheck_may_sleep_on(const char *what, const char *object)
{
	return may_sleep(what, object, NULL, (read_rflags() & RFLAGS_IF) != 0);
}

void lockcheck_must_sleep(const char *what)
{
	char msg[160];
	if (sleep_ok(this_cpu(), NULL, (read_rflags() & RFLAGS_IF) != 0))
		return;
	sleep_refusal(what, NULL, msg, sizeof(msg));
	panic("lock checker: %s", msg);
}

bool lockcheck_may_sleep_releasing(const char *what,
                                   const struct spinlock *held,
                                   unsigned long irq_state)
{
	return may_sleep(what, NULL, held, (irq_state & RFLAGS_IF) != 0);
}

void lockcheck_misuse(const char *fmt, ...)
{
	char msg[LOCKCHECK_MESSAGE_MAX];
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	lockcheck_report(msg);
}

void lockcheck_preempt_underflow(void)
{
	struct cpu *c = this_cpu();
	violation("preempt_enable on cpu %u (thread %s) without a matching "
	          "preempt_disable: preemption count %d",
	          c->id, c->current ? c->current->name : "?", c->preempt_count);
}

void lockcheck_preempt_under_lock(void)
{
	struct cpu *c = this_cpu();
	struct spinlock *l = c->held[c->nheld - 1];
	violation("preempt_enable on cpu %u (thread %s) without a matching "
	          "preempt_disable while holding spinlock %s (rank %s): "
	          "preemption count %d, %d locks held",
	          c->id, c->current ? c->current->name : "?", l->name,
	          lock_rank_name(l->rank), c->preempt_count, c->nheld);
}
