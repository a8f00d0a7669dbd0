/*
 * The POSIX port's chaos mode (tests/host/mm_port_posix_chaos.c): once on,
 * every hook mm/ calls is a point where the caller may be delayed, each
 * delay counted; rate 0 delays nothing and seed 0 turns the mode off.
 * tools/chaos-run (make test-chaos, make chaos) relies on this to perturb
 * the multi-threaded tests' schedules.
 */
#include <stdlib.h>
#include <string.h>

#include "../../kernel/ktest.h"
#include "port_test_util.h"

/* One call of each hook a heap's hot and slow paths use; how many chaos
 * points they pass (see mm_port_posix.c and mm_port_posix_cpu.c). */
enum { HOOK_POINTS = 4 /* lock */ + 4 /* pin */ + 5 /* event */ + 1 };

static void call_hooks(mm_lock_t *l, mm_event_t *e)
{
	unsigned long irq = mm_lock_acquire(l); /* before, after */
	mm_lock_release(l, irq);                /* before, after */
	struct mm_pin p = mm_port_pin();        /* before, after */
	mm_port_unpin(p);                       /* before, after */
	(void)mm_event_prepare(e);              /* after */
	mm_event_wake(e);                       /* before, after */
	(void)mm_event_wait(e, 0, 0);           /* before, after */
	mm_port_yield();                        /* before */
}

KTEST(mm_port, chaos_delays_at_every_hook)
{
	const char *env = getenv("MM_CHAOS");
	if (env && *env && strcmp(env, "0") != 0)
		KTEST_SKIP("MM_CHAOS is set: this test would turn it off");
	static mm_lock_t l;
	static mm_event_t e;
	mm_lock_init(&l, "chaos_test", MM_RANK_PALLOC);
	mm_event_init(&e, "chaos_test");

	unsigned long d0 = mm_port_chaos_delays();
	call_hooks(&l, &e);
	KEXPECT_EQ(mm_port_chaos_delays(), d0); /* off by default */

	mm_port_set_chaos(42, 1000); /* every point delays */
	call_hooks(&l, &e);
	KEXPECT_EQ(mm_port_chaos_delays(), d0 + HOOK_POINTS);

	mm_port_set_chaos(42, 0); /* on, but never delays */
	call_hooks(&l, &e);
	KEXPECT_EQ(mm_port_chaos_delays(), d0 + HOOK_POINTS);

	/* At 500 per mille some points delay and some do not. */
	mm_port_set_chaos(7, 500);
	for (int i = 0; i < 20; i++)
		call_hooks(&l, &e);
	unsigned long n = mm_port_chaos_delays() - d0 - HOOK_POINTS;
	KEXPECT(n > 0 && n < 20 * HOOK_POINTS);

	mm_port_set_chaos(0, 100);
	unsigned long d1 = mm_port_chaos_delays();
	call_hooks(&l, &e);
	KEXPECT_EQ(mm_port_chaos_delays(), d1);
}
