/*
 * The rank table (see lockrank.h). Lower ranks are taken first. A lock held
 * with interrupts enabled must rank below every lock an interrupt handler
 * takes, since the handler's locks nest inside whatever it interrupted.
 * Why each lock sits where it does:
 */
#include "lockrank.h"

static const struct {
	const char *name;
	bool leaf;
	const char *why;
} ranks[LOCK_RANK_COUNT] = {
        [LOCK_RANK_STW] = {"stw", false,
                           "stop-the-world state; taken first, by the stopper "
                           "only, before it parks anyone"},
        [LOCK_RANK_SEMA] = {"sema", false,
                            "a semaphore's count; waking a waiter takes the "
                            "wait queue and run queue under it"},
        [LOCK_RANK_WAITQ] = {"waitq", false,
                             "a wait queue's list; wake-ups enqueue threads on "
                             "run queues under it"},
        [LOCK_RANK_RUNQUEUE] = {"runqueue", false,
                                "a CPU's run queue and sleepers; the scheduler "
                                "holds it across the context switch"},
        [LOCK_RANK_THREADS] = {"threads", false,
                               "the list of all threads; taken under a run "
                               "queue when a thread exits"},
        [LOCK_RANK_SHOOTDOWN] = {"shootdown", false,
                                 "serialises TLB shootdowns. Held with "
                                 "interrupts on (so CPUs spinning for it still "
                                 "answer IPIs), so every lock an interrupt "
                                 "handler takes nests inside it: lowest rank"},
        [LOCK_RANK_KSTACK] = {"kstack", false,
                              "kernel stack slots; released before mapping"},
        [LOCK_RANK_VM] = {"vm", false,
                          "page-table pages: a walk that may create tables "
                          "allocates frames under it"},
        [LOCK_RANK_FRAMES] = {"frames", false,
                              "the physical frame pool; taken by table "
                              "creation under vm"},
        [LOCK_RANK_MM_RESERVE] = {"mm_reserve", false,
                                  "mm/ address-space reservations"},
        [LOCK_RANK_TEST_LOW] = {"test_low", false, "lock-checker tests"},
        [LOCK_RANK_TEST_HIGH] = {"test_high", false, "lock-checker tests"},
        [LOCK_RANK_CONSOLE] = {"console", false,
                               "serial output; any code but a leaf holder may "
                               "print, so it ranks above all others"},
        [LOCK_RANK_HEAP] = {"heap", true,
                            "the heap lock: a leaf, nothing is taken, "
                            "allocated, printed or traced under it "
                            "(DESIGN.md invariant 1)"},
        [LOCK_RANK_TEST_LEAF] = {"test_leaf", true, "lock-checker tests"},
};

const char *lock_rank_name(enum lock_rank r)
{
	return r > 0 && r < LOCK_RANK_COUNT ? ranks[r].name : "?";
}

bool lock_rank_is_leaf(enum lock_rank r)
{
	return r > 0 && r < LOCK_RANK_COUNT && ranks[r].leaf;
}
