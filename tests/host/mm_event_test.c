/*
 * The POSIX port's event counts (mm_event_prepare/wait/wake): one wake
 * reaches every waiter; a wait times out with false; a wake between
 * prepare and wait is not lost; a waiter that timed out does not stop
 * later wakes from reaching the others; and two threads handing a turn
 * back and forth thousands of times never lose a wake.
 *
 * No check here bounds how long anything takes: the host may leave a
 * thread unscheduled for any length. A waiter that must be woken waits
 * with NO_TIMEOUT, so a wake that does not reach it leaves it asleep and
 * the suite's timeout (HOST_TIMEOUT in the Makefile) names the test. A
 * finite timeout would not do: a sleeper the wake missed would return at
 * its deadline, see the count moved, and pass.
 */
#include "../../kernel/ktest.h"
#include "port_test_util.h"

#define NO_TIMEOUT UINT64_MAX

enum { ALL_WAITERS = 5 };

KTEST(mm_event, one_wake_reaches_every_waiter)
{
	static mm_event_t e;
	static atomic_int cond;
	mm_event_init(&e, "all");
	atomic_store(&cond, 0);
	struct waiter_arg w[ALL_WAITERS];
	struct mm_thread *t[ALL_WAITERS];
	for (int i = 0; i < ALL_WAITERS; i++)
		w[i] = (struct waiter_arg){
		        .e = &e, .cond = &cond, .timeout_ns = NO_TIMEOUT};
	uint64_t before = mm_event_prepare(&e);
	KASSERT(start_all(t, ALL_WAITERS, waiter, w, sizeof(*w)));
	for (int i = 0; i < ALL_WAITERS; i++) /* all read the count */
		poll_until(&w[i].ready, 1, NO_TIMEOUT);
	sleep_ns(20 * MS); /* let them all fall asleep in the futex */
	atomic_store(&cond, 1);
	mm_event_wake(&e);
	join_all(t, ALL_WAITERS);
	for (int i = 0; i < ALL_WAITERS; i++)
		KEXPECT(w[i].moved && w[i].saw_cond);
	KEXPECT_EQ(mm_event_prepare(&e), before + 1);
}

KTEST(mm_event, wait_times_out_with_false)
{
	static mm_event_t e;
	mm_event_init(&e, "timeout");
	uint64_t seen = mm_event_prepare(&e);
	uint64_t t0 = mm_port_now_ns();
	KEXPECT(!mm_event_wait(&e, seen, 30 * MS));
	/* Not before its timeout; how long after is the host's business. */
	KEXPECT(mm_port_now_ns() - t0 >= 30 * MS);
	KEXPECT(!mm_event_wait(&e, seen, 0)); /* a poll */
	KEXPECT_EQ(mm_event_prepare(&e), seen);
}

KTEST(mm_event, wake_between_prepare_and_wait_is_kept)
{
	static mm_event_t e;
	mm_event_init(&e, "early");
	uint64_t seen = mm_event_prepare(&e);
	mm_event_wake(&e); /* nobody waits yet */
	/* With no timeout: a wait that slept although the count had moved
	 * would never return. */
	KEXPECT(mm_event_wait(&e, seen, NO_TIMEOUT));
	KEXPECT(mm_event_wait(&e, seen, NO_TIMEOUT)); /* it stays moved */
	/* Two wakes with nobody waiting count as two; a fresh prepare
	 * sleeps again. */
	mm_event_wake(&e);
	KEXPECT_EQ(mm_event_prepare(&e), seen + 2);
	KEXPECT(!mm_event_wait(&e, mm_event_prepare(&e), 1 * MS));
}

enum { LONG_WAITERS = 3 };

KTEST(mm_event, timed_out_waiter_does_not_block_later_wakes)
{
	static mm_event_t e;
	mm_event_init(&e, "mixed");
	struct waiter_arg w[LONG_WAITERS],
	        quick = {.e = &e, .timeout_ns = 20 * MS};
	struct mm_thread *t[LONG_WAITERS];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < LONG_WAITERS; i++)
			w[i] = (struct waiter_arg){.e = &e,
			                           .timeout_ns = NO_TIMEOUT};
		quick = (struct waiter_arg){.e = &e, .timeout_ns = 20 * MS};
		KASSERT(start_all(t, LONG_WAITERS, waiter, w, sizeof(*w)));
		struct mm_thread *q =
		        mm_port_thread_start("quick", waiter, &quick);
		if (q)
			mm_port_thread_join(q);        /* it gave up */
		for (int i = 0; i < LONG_WAITERS; i++) /* the wake is theirs */
			poll_until(&w[i].ready, 1, NO_TIMEOUT);
		sleep_ns(5 * MS);
		mm_event_wake(&e);
		join_all(t, LONG_WAITERS);
		KASSERT(q);
		KEXPECT(!quick.moved);
		for (int i = 0; i < LONG_WAITERS; i++)
			KEXPECT(w[i].moved);
	}
}

/* Ping-pong: each side waits for its turn with the prepare/check/wait
 * pattern and hands the turn over with a wake. The waits have no timeout:
 * a lost wake-up leaves both sides asleep for good, and the suite's
 * timeout names the test (see the top of the file). */
enum { ROUNDS = 2000 };

struct side {
	atomic_int *turn;
	mm_event_t *mine, *theirs;
	int parity;
	int rounds;
};

/* Waits until it is this side's turn. */
static void await_turn(struct side *s, int want)
{
	for (;;) {
		uint64_t seen = mm_event_prepare(s->mine);
		if (atomic_load(s->turn) == want)
			return;
		mm_event_wait(s->mine, seen, NO_TIMEOUT);
	}
}

static void play(void *p)
{
	struct side *s = p;
	for (int i = 0; i < ROUNDS; i++) {
		await_turn(s, 2 * i + s->parity);
		atomic_store(s->turn, 2 * i + s->parity + 1);
		mm_event_wake(s->theirs);
		s->rounds++;
	}
}

KTEST(mm_event, ping_pong_loses_no_wake)
{
	static mm_event_t ping, pong;
	static atomic_int turn;
	mm_event_init(&ping, "ping");
	mm_event_init(&pong, "pong");
	atomic_store(&turn, 0);
	struct side sides[2] = {
	        {&turn, &ping, &pong, .parity = 0},
	        {&turn, &pong, &ping, .parity = 1},
	};
	struct mm_thread *t[2];
	uint64_t t0 = mm_port_now_ns();
	KASSERT(start_all(t, 2, play, sides, sizeof(*sides)));
	join_all(t, 2);
	ktest_diag("%d round trips in %lu ms", sides[1].rounds,
	           (unsigned long)((mm_port_now_ns() - t0) / MS));
	KEXPECT_EQ(sides[0].rounds + sides[1].rounds, 2 * ROUNDS);
	KEXPECT_EQ(atomic_load(&turn), 2 * ROUNDS);
}
