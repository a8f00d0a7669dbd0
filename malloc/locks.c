/*
 * malloc/locks.c: the library's lock order, checked at run time. mm's
 * locks (port_sync.c) have their ranks (mm/port.h); the library has three
 * locks of its own outside that table, and one thread-local mask records
 * all of them, so that a wrong nesting of any two panics naming both.
 *
 * The order, lowest first (locks.h numbers the bits):
 *   1. mm_malloc_ctl_lock (slots.c): taken holding no other lock. Under
 *      it: the slots, glibc's stdio list lock (fork), visit_lock, mm's
 *      locks, shootdown_lock.
 *   2. visit_lock (visit.c): taken holding at most ctl_lock (no mm lock:
 *      mm_port_each_other_cpu's contract). Under it: the slots' busy
 *      words, mm's locks that its fn takes, shootdown_lock.
 *   3. mm's locks, in rank order (MM_RANK_*), each only while every mm
 *      lock held has a lower rank.
 *   4. shootdown_lock (port_prod.c): taken holding at most ctl_lock and
 *      visit_lock, and a leaf: its holder, whose signals are blocked,
 *      takes no lock. Its bit is the top one, so that any lock taken
 *      under it finds a higher bit held.
 * The slots and glibc's stdio lock are not locks here: they are waited
 * for, not ranked (slots.c, "Locking").
 *
 * Representation: mm_malloc_held_mask, a bit a held lock (a bit a rank
 * for mm's locks, which no thread nests at one rank). A check is a mask
 * and a compare against it, before the lock is taken, so that a wrong
 * order panics before it can deadlock.
 *
 * Contexts: any thread, and a signal handler of it, whose checks see
 * what the code it interrupted holds: a handler's fork or malloc_trim
 * inside this thread's hold of ctl_lock is told by the mutex (EDEADLK)
 * and does nothing, as before; shootdown_lock blocks signals.
 *
 * Cost: none on the malloc fast path, which takes no lock. mm's locks
 * (slow paths) pay the one compare they paid before; the library's own
 * are taken on rare paths only (start and stop of the background
 * threads, fork, malloc_trim, a visit, a fence without membarrier).
 *
 * Fork: the child's one thread inherits its mask. The forking thread
 * holds ctl_lock across the copy (fork.c), which the child makes anew
 * (mm_malloc_ctl_reset clears its bit); it holds no mm lock, no visit
 * and no shootdown then.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "malloc_internal.h"

_Thread_local unsigned mm_malloc_held_mask;

#define BIT(b) (1u << (b))

static const struct {
	const char *name;
	unsigned bit;
	unsigned forbidden; /* held bits it may not be taken under */
} lib_locks[] = {
        [MM_MALLOC_LOCK_CTL] = {"ctl_lock", MM_MALLOC_BIT_CTL,
                                ~BIT(MM_MALLOC_BIT_CTL)},
        [MM_MALLOC_LOCK_VISIT] = {"visit_lock", MM_MALLOC_BIT_VISIT,
                                  ~(BIT(MM_MALLOC_BIT_CTL) |
                                    BIT(MM_MALLOC_BIT_VISIT))},
        [MM_MALLOC_LOCK_SHOOTDOWN] = {"shootdown_lock", MM_MALLOC_BIT_SHOOTDOWN,
                                      ~(BIT(MM_MALLOC_BIT_CTL) |
                                        BIT(MM_MALLOC_BIT_VISIT))},
};

/* mm's ranks by name (mm/port.h), for reports. */
static const char *const rank_names[MM_RANK_COUNT] = {
        [MM_RANK_SWEEP] = "MM_RANK_SWEEP",
        [MM_RANK_CENTRAL] = "MM_RANK_CENTRAL",
        [MM_RANK_PALLOC] = "MM_RANK_PALLOC",
        [MM_RANK_HEAP] = "MM_RANK_HEAP",
        [MM_RANK_OBJCACHE] = "MM_RANK_OBJCACHE",
};

const char *mm_malloc_lock_name(unsigned bits, char *buf, size_t size)
{
	unsigned b = bits ? 31u - (unsigned)__builtin_clz(bits) : 0;
	for (unsigned l = 0; l < sizeof(lib_locks) / sizeof(lib_locks[0]); l++)
		if (lib_locks[l].bit == b) {
			snprintf(buf, size, "%s", lib_locks[l].name);
			return buf;
		}
	unsigned rank = b - MM_MALLOC_BIT_MM;
	const char *rn = rank < MM_RANK_COUNT ? rank_names[rank] : NULL;
	snprintf(buf, size, "an mm lock of rank %u (%s)", rank,
	         rn ? rn : "unnamed");
	return buf;
}

void mm_malloc_lock_check(enum mm_malloc_lock l)
{
	unsigned held = mm_malloc_held_mask & lib_locks[l].forbidden;
	if (__builtin_expect(held, 0)) {
		char name[64];
		mm_panic("lock order: %s taken while holding %s",
		         lib_locks[l].name,
		         mm_malloc_lock_name(held, name, sizeof(name)));
	}
}

void mm_malloc_lock_note(enum mm_malloc_lock l, bool held)
{
	if (held)
		mm_malloc_held_mask |= BIT(lib_locks[l].bit);
	else
		mm_malloc_held_mask &= ~BIT(lib_locks[l].bit);
}

/* ---- The control lock -----------------------------------------------------
 */

int mm_malloc_ctl_take(void)
{
	mm_malloc_lock_check(MM_MALLOC_LOCK_CTL);
	int err = pthread_mutex_lock(&mm_malloc_ctl_lock);
	if (!err)
		mm_malloc_lock_note(MM_MALLOC_LOCK_CTL, true);
	return err;
}

int mm_malloc_ctl_try(void)
{
	mm_malloc_lock_check(MM_MALLOC_LOCK_CTL);
	int err = pthread_mutex_trylock(&mm_malloc_ctl_lock);
	if (!err)
		mm_malloc_lock_note(MM_MALLOC_LOCK_CTL, true);
	return err;
}

void mm_malloc_ctl_give(void)
{
	mm_malloc_lock_note(MM_MALLOC_LOCK_CTL, false);
	pthread_mutex_unlock(&mm_malloc_ctl_lock);
}

void mm_malloc_ctl_reset(void)
{
	mm_malloc_ctl_lock =
	        (pthread_mutex_t)PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
	mm_malloc_lock_note(MM_MALLOC_LOCK_CTL, false);
}

/* ---- Tests ----------------------------------------------------------------
 */

#ifdef MM_TEST_HOOKS
static sigset_t test_old_mask; /* the shootdown's, while the test holds it */
static unsigned long test_irq;

/* Takes (take) or gives back the lock named name; false if unknown or
 * not had. */
static bool test_lock(const char *name, bool take)
{
	if (strcmp(name, "ctl") == 0) {
		if (!take)
			mm_malloc_ctl_give();
		return !take || mm_malloc_ctl_take() == 0;
	}
	if (strcmp(name, "visit") == 0) {
		if (!take)
			mm_malloc_visit_give();
		return !take || mm_malloc_visit_try();
	}
	if (strcmp(name, "shootdown") == 0) {
		if (take)
			mm_malloc_shootdown_take(&test_old_mask);
		else
			mm_malloc_shootdown_give(&test_old_mask);
		return true;
	}
	if (strcmp(name, "heap") == 0 && mm_malloc_heap_ready()) {
		if (take)
			test_irq = mm_lock_acquire(&mm_malloc_heap.lock);
		else
			mm_lock_release(&mm_malloc_heap.lock, test_irq);
		return true;
	}
	return false;
}

int mm_malloc_test_lock_nest(const char *outer, const char *inner)
{
	if (!test_lock(outer, true))
		return -1;
	bool ok = test_lock(inner, true);
	if (ok)
		test_lock(inner, false);
	test_lock(outer, false);
	return ok ? 0 : -1;
}
#endif
