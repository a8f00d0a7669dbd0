/*
 * The sleeping primitives under load on every CPU: a semaphore as a lock
 * (taken by waits and by tries racing its handed units),
 * a wait queue between producers and consumers, and a sleep ended by
 * thread_wake racing with the timer tick. Each counts what it did and
 * checks the counts at the end; a lost wake-up leaves a thread asleep for
 * good, which the run's hang guard reports (there is no time bound here:
 * under TCG a vCPU can stall for many milliseconds). The run queues and
 * the queue under test are checked (sched_check, waitq_check) every
 * CHECK_EVERY rounds of a thread, racing the others, and at the end.
 */
#include <stdatomic.h>

#include "kernel/ktest.h"
#include "kernel/percpu.h"
#include "kernel/spinlock.h"
#include "kernel/sched.h"
#include "kernel/thread.h"
#include "kernel/time.h"
#include "tests/kernel/smp_util.h"

#define PER_CPU     2 /* threads of each kind on every CPU */
#define CHECK_EVERY 32

/* Starts PER_CPU threads running fn(arg) on every online CPU into t;
 * returns how many it started (all, or the test fails). */
static unsigned start_everywhere(const char *name, void (*fn)(void *),
                                 void *arg, struct thread_handle *t)
{
	unsigned n = 0, ncpus = atomic_load(&ncpus_online);
	for (unsigned c = 0; c < ncpus; c++)
		for (unsigned k = 0; k < PER_CPU; k++) {
			t[n] = thread_create(name, fn, arg, c);
			KEXPECT(thread_handle_ok(t[n]));
			n += thread_handle_ok(t[n]);
		}
	return n;
}

static void join_all(struct thread_handle *t, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		thread_join(t[i]);
}

/* ---- A semaphore of one unit as a lock ---------------------------------- */

#define SEMA_ROUNDS 200
static struct semaphore lock_sema;
static volatile uint64_t sema_counter; /* by lock_sema */
static _Atomic int holders, most_holders;
static _Atomic unsigned refused;

/* Round i's take: every other round tries first (a few sema_try_acquire
 * with yields between, as a poller would), racing the units releases
 * hand to woken waiters, then waits as the others do. */
static bool take_lock_sema(unsigned i)
{
	for (unsigned k = 0; i % 2 && k < 4; k++) {
		if (sema_try_acquire(&lock_sema))
			return true;
		thread_yield();
	}
	return sema_acquire(&lock_sema);
}

static void sema_worker(void *arg)
{
	for (unsigned i = 0; i < SEMA_ROUNDS; i++) {
		if (!take_lock_sema(i)) {
			atomic_fetch_add(&refused, 1);
			return;
		}
		int in = atomic_fetch_add(&holders, 1) + 1;
		int most = atomic_load(&most_holders);
		while (in > most &&
		       !atomic_compare_exchange_weak(&most_holders, &most, in))
			;
		uint64_t v = sema_counter; /* a lost update if two are in */
		if (i % 8 == 0)
			thread_yield(); /* a holder switched out, others queue
			                 */
		sema_counter = v + 1;
		atomic_fetch_sub(&holders, 1);
		sema_release(&lock_sema);
		if (i % CHECK_EVERY == 0) {
			sema_check(&lock_sema);
			sched_check();
		}
	}
}

KTEST(sync, semaphore_lock_on_every_cpu)
{
	struct thread_handle t[MAX_CPUS * PER_CPU];
	sema_init(&lock_sema, "stress_sema", 1, 1);
	sema_counter = 0;
	atomic_store(&holders, 0);
	atomic_store(&most_holders, 0);
	atomic_store(&refused, 0);
	unsigned n = start_everywhere("sema_stress", sema_worker, NULL, t);
	join_all(t, n);
	KEXPECT_EQ(atomic_load(&refused), 0);
	KEXPECT_EQ(sema_counter, (uint64_t)n * SEMA_ROUNDS);
	KEXPECT_EQ(atomic_load(&most_holders), 1);
	KEXPECT(sema_try_acquire(&lock_sema)); /* the one unit came back */
	KEXPECT(!sema_try_acquire(&lock_sema));
	KEXPECT_EQ(lock_sema.granted, 0); /* none left handed over */
	sema_release(&lock_sema);
	sema_check(&lock_sema);
	sched_check();
}

/* ---- A wait queue between producers and consumers ----------------------- */

/*
 * A ring of RING slots under ring_wq's lock. The condition of each wait
 * does the work under that lock (a producer's puts its item if there is
 * room, a consumer's takes one if there is any), as a semaphore's take
 * does, and whoever changed the ring wakes the queue. Producers and
 * consumers share the queue, so the wake is wake_all: a wake_one could
 * pick a waiter of the waker's own kind and leave the other kind asleep.
 * Every producer's items are distinct, so the consumers' sum and count
 * say whether an item was lost or taken twice.
 */
#define RING       4
#define ITEMS_EACH 300
static struct waitq ring_wq = WAITQ_INIT("stress_ring");
static uint64_t ring[RING];
static unsigned ring_head, ring_count; /* by ring_wq.lock */
static _Atomic uint64_t consumed_sum, consumed_n;

struct ring_op {
	uint64_t item;
};

/* Locking: ring_wq.lock held (a wait's condition). */
static bool put_item(void *arg)
{
	struct ring_op *op = arg;
	if (ring_count == RING)
		return false;
	ring[(ring_head + ring_count) % RING] = op->item;
	ring_count++;
	return true;
}

static bool take_item(void *arg)
{
	struct ring_op *op = arg;
	if (ring_count == 0)
		return false;
	op->item = ring[ring_head];
	ring_head = (ring_head + 1) % RING;
	ring_count--;
	return true;
}

static void ring_changed(void)
{
	waitq_wake_all(&ring_wq);
}

static _Atomic unsigned next_producer;

static void producer(void *arg)
{
	uint64_t base = (uint64_t)atomic_fetch_add(&next_producer, 1) << 32;
	for (unsigned i = 0; i < ITEMS_EACH; i++) {
		struct ring_op op = {base + i};
		if (!waitq_wait_until(&ring_wq, put_item, &op)) {
			atomic_fetch_add(&refused, 1);
			return;
		}
		ring_changed();
	}
}

static void consumer(void *arg)
{
	for (unsigned i = 0; i < ITEMS_EACH; i++) {
		struct ring_op op;
		if (!waitq_wait_until(&ring_wq, take_item, &op)) {
			atomic_fetch_add(&refused, 1);
			return;
		}
		ring_changed();
		atomic_fetch_add(&consumed_sum, op.item);
		atomic_fetch_add(&consumed_n, 1);
		if (i % CHECK_EVERY == 0) {
			waitq_check(&ring_wq);
			sched_check();
		}
	}
}

KTEST(sync, wait_queue_producers_and_consumers_on_every_cpu)
{
	struct thread_handle p[MAX_CPUS * PER_CPU], c[MAX_CPUS * PER_CPU];
	ring_head = ring_count = 0;
	atomic_store(&consumed_sum, 0);
	atomic_store(&consumed_n, 0);
	atomic_store(&next_producer, 0);
	atomic_store(&refused, 0);
	unsigned np = start_everywhere("producer", producer, NULL, p);
	unsigned nc = start_everywhere("consumer", consumer, NULL, c);
	KASSERT(np == nc); /* each consumer takes what one producer puts */
	join_all(p, np);
	join_all(c, nc);
	KEXPECT_EQ(atomic_load(&refused), 0);
	KEXPECT_EQ(atomic_load(&consumed_n), (uint64_t)np * ITEMS_EACH);
	/* Producer k's items are k << 32 plus 0 .. ITEMS_EACH - 1. */
	uint64_t want = 0;
	for (uint64_t k = 0; k < np; k++)
		want += (k << 32) * ITEMS_EACH +
		        (uint64_t)ITEMS_EACH * (ITEMS_EACH - 1) / 2;
	KEXPECT_EQ(atomic_load(&consumed_sum), want);
	KEXPECT_EQ(ring_count, 0);
	waitq_check(&ring_wq);
	sched_check();
}

/* ---- A sleep ended by thread_wake, racing with the tick ----------------- */

/*
 * Pairs on different CPUs (on one CPU, the same one): a waker posts a
 * token under pair->lock and wakes the sleeper; the sleeper checks for a
 * token under the lock and sleeps through thread_sleep_unlock, for one
 * tick at most, so that the tick's wake-up of due sleepers races with
 * thread_wake. Every token must be taken exactly once. The last wake may
 * find the sleeper gone (it took the last token after a tick's wake-up):
 * a wake of an exited thread, not yet joined, does nothing.
 */
#define TOKENS 300
struct pair {
	struct spinlock lock;
	unsigned posted, taken; /* by lock */
	struct thread_handle sleeper;
	_Atomic bool sleeper_set;
};
static struct pair pairs[MAX_CPUS];

static void sleeper(void *arg)
{
	struct pair *pr = arg;
	unsigned long irq = spin_lock_irqsave(&pr->lock);
	while (pr->taken < TOKENS) {
		if (pr->posted > pr->taken) {
			pr->taken++;
			continue;
		}
		thread_sleep_unlock(&pr->lock, irq, SCHED_TICK_NS);
		irq = spin_lock_irqsave(&pr->lock);
	}
	spin_unlock_irqrestore(&pr->lock, irq);
}

static void waker(void *arg)
{
	struct pair *pr = arg;
	while (!atomic_load(&pr->sleeper_set))
		thread_yield();
	for (unsigned i = 0; i < TOKENS; i++) {
		unsigned long irq = spin_lock_irqsave(&pr->lock);
		pr->posted++;
		spin_unlock_irqrestore(&pr->lock, irq);
		thread_wake(pr->sleeper);
		/* One token out at a time: wait until it is taken. */
		for (;;) {
			irq = spin_lock_irqsave(&pr->lock);
			bool taken = pr->taken == pr->posted;
			spin_unlock_irqrestore(&pr->lock, irq);
			if (taken)
				break;
			thread_yield();
		}
		if (i % CHECK_EVERY == 0)
			sched_check();
	}
}

KTEST(sync, sleep_and_wake_pairs_on_every_cpu)
{
	unsigned ncpus = atomic_load(&ncpus_online);
	struct thread_handle s[MAX_CPUS], w[MAX_CPUS];
	for (unsigned c = 0; c < ncpus; c++) {
		struct pair *pr = &pairs[c];
		spin_init(&pr->lock, "stress_pair", LOCK_RANK_WAITQ);
		pr->posted = pr->taken = 0;
		atomic_store(&pr->sleeper_set, false);
		s[c] = thread_create("sleeper", sleeper, pr, c);
		KASSERT(thread_handle_ok(s[c]));
		pr->sleeper = s[c];
		atomic_store(&pr->sleeper_set, true);
		w[c] = thread_create("waker", waker, pr, (c + 1) % ncpus);
		KASSERT(thread_handle_ok(w[c]));
	}
	for (unsigned c = 0; c < ncpus; c++) {
		thread_join(w[c]);
		thread_join(s[c]);
		KEXPECT_EQ(pairs[c].posted, TOKENS);
		KEXPECT_EQ(pairs[c].taken, TOKENS);
	}
	sched_check();
}

/* ---- The ticket lock: its holder and its order -------------------------- */

/*
 * While one CPU holds a lock, a CPU waiting for it has a ticket but is not
 * its holder: spin_held (the _locked functions' check) stays true on the
 * holder's CPU (a waiter that wrote its id there on taking its ticket
 * made the holder's own checks fail). On release the waiter's ticket is
 * served before a relock by the releasing CPU, however quickly it comes:
 * a lock that let the fastest in would let the relock in first. The lock
 * ranks below the interrupt handlers' locks, as one held with interrupts
 * on must. In ticket mode, which this test sets: under a hypervisor the
 * boot chooses test-and-set, which has no order (spin_mode_test.c).
 */
static struct spinlock ticket_lock =
        SPINLOCK_INIT("ticket_lock", LOCK_RANK_STW);
static _Atomic bool ticket_go, ticket_waiter_in;

static void ticket_waiter(void *arg)
{
	while (!atomic_load(&ticket_go))
		cpu_pause();
	spin_lock(&ticket_lock);
	atomic_store(&ticket_waiter_in, true);
	spin_unlock(&ticket_lock);
}

static uint32_t tickets_out(void)
{
	return atomic_load(&ticket_lock.next) -
	       atomic_load(&ticket_lock.serving);
}

KTEST(sync, ticket_lock_keeps_its_holder_and_serves_a_waiter_first)
{
	unsigned cpu = other_online_cpu(), me = this_cpu()->id;
	if (cpu == MAX_CPUS)
		KTEST_SKIP("needs two CPUs");
	enum spin_mode old = spin_mode_set(SPIN_TICKET);
	atomic_store(&ticket_go, false);
	atomic_store(&ticket_waiter_in, false);
	struct thread_handle t =
	        thread_create("ticket_waiter", ticket_waiter, NULL, cpu);
	KASSERT(thread_handle_ok(t));
	spin_lock(&ticket_lock);
	atomic_store(&ticket_go, true);
	while (tickets_out() < 2)
		cpu_pause(); /* the waiter has its ticket */
	/* Give a waiter that wrongly claims the lock time to do so. */
	time_delay_us(10000);
	KEXPECT(spin_held(&ticket_lock));
	KEXPECT_EQ(atomic_load(&ticket_lock.holder), (int)me);
	KEXPECT(!atomic_load(&ticket_waiter_in));
	spin_unlock(&ticket_lock);
	spin_lock(&ticket_lock); /* behind the waiter's ticket */
	KEXPECT(atomic_load(&ticket_waiter_in));
	spin_unlock(&ticket_lock);
	thread_join(t);
	spin_mode_set(old);
}
