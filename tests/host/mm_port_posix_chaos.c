/*
 * tests/host/mm_port_posix_chaos.c: the POSIX port's chaos mode, which
 * perturbs the schedule at every port hook mm/ calls so that races needing
 * an unlucky interleaving show on a machine of two cores.
 *
 * Off unless the environment says MM_CHAOS=<seed> (a decimal number from 1
 * to 2^64 - 1; empty or 0 is off). Then at each chaos point (mm_posix_chaos,
 * called by the port at lock acquire and release, pin and unpin, event
 * prepare, wait and wake, reserve, map, used, unused, yield, thread start
 * and the visits of each_other_cpu) a thread draws from its own generator
 * and, with probability MM_CHAOS_RATE per mille (default 100), does one of:
 * a sched_yield (half the draws), a spin of up to 4096 pauses (three
 * eighths) or a sleep of up to 200 us (one eighth). With MM_TEST_HOOKS the
 * mm test hooks are chaos points too (mheap_test_hook, unless a test sets
 * its own; MM_CHAOS_HOOKS=0 leaves them out).
 *
 * Representation: the seed, rate and switch are set by a constructor that
 * runs before any thread exists (or by a test, mm_port_set_chaos), and
 * only read afterwards. Each thread
 * seeds its generator (xorshift64*) from the seed and the order in which it
 * first reached a chaos point, so a replay with the same seed gives each
 * thread the same stream of decisions (the threads' order, and so the
 * interleaving, still depends on the host: a replay makes a failure likely
 * again, not certain).
 *
 * The seed is printed on stderr when the mode is on ("chaos: MM_CHAOS=...
 * MM_CHAOS_RATE=..."), so that a failing run can be replayed. A value that
 * is not a number in range stops the program with a line naming it.
 *
 * Contexts: a chaos point may be reached holding mm locks, pinned, or in
 * simulated atomic context; the perturbations only delay the caller, which
 * is what a preemption or an interrupt does on a real CPU.
 */
#define _GNU_SOURCE
#include "mm_port_posix.h"
#include "mm_port_posix_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef MM_TEST_HOOKS
#include "../../mm/mheap_testing.h"
#endif

/* Set by the constructor, or by mm_port_set_chaos while no other thread
 * runs; atomic so that a thread left over from a test reads them cleanly: */
atomic_bool mm_posix_chaos_on;
static _Atomic uint64_t chaos_seed;
static atomic_uint chaos_rate = 100; /* per mille */

/* Atomic, no lock: threads that have drawn, in order of their first draw,
 * and the delays made (mm_port_chaos_delays). */
static atomic_ulong chaos_threads, chaos_delays;

/* Per thread: the generator, 0 until its first draw, and the seed it was
 * seeded from (a new seed reseeds it). */
static _Thread_local uint64_t chaos_state, chaos_state_seed;

/* splitmix64's finaliser: spreads a seed and a thread index apart. */
static uint64_t chaos_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t chaos_next(void)
{
	uint64_t seed = atomic_load_explicit(&chaos_seed, memory_order_relaxed);
	if (!chaos_state || chaos_state_seed != seed) {
		unsigned long idx = atomic_fetch_add(&chaos_threads, 1);
		chaos_state = chaos_mix(seed ^ chaos_mix(idx)) | 1;
		chaos_state_seed = seed;
	}
	chaos_state ^= chaos_state >> 12;
	chaos_state ^= chaos_state << 25;
	chaos_state ^= chaos_state >> 27;
	return chaos_state * 0x2545f4914f6cdd1dull;
}

/* Reads environment variable name as a number in [lo, hi]; def if unset
 * or empty. Exits naming the variable if it is anything else. */
static uint64_t chaos_env(const char *name, uint64_t lo, uint64_t hi,
                          uint64_t def)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v < lo || v > hi) {
		fprintf(stderr,
		        "chaos: %s='%s' is not a number in [%" PRIu64
		        ", %" PRIu64 "]\n",
		        name, s, lo, hi);
		exit(2);
	}
	return v;
}

/* A short delay of the kind r picks (see the top of the file). */
static void chaos_delay(uint64_t r)
{
	unsigned kind = (unsigned)(r >> 20) & 7;
	if (kind < 4) {
		sched_yield();
	} else if (kind < 7) {
		for (unsigned i = (unsigned)(r >> 32) & 4095; i; i--)
			__builtin_ia32_pause();
	} else {
		struct timespec ts = {.tv_nsec = (long)((r >> 32) % 200000u) +
		                                 1000};
		nanosleep(&ts, NULL);
	}
}

void mm_posix_chaos_point(void)
{
	uint64_t r = chaos_next();
	if ((r >> 40) % 1000u <
	    atomic_load_explicit(&chaos_rate, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&chaos_delays, 1,
		                          memory_order_relaxed);
		chaos_delay(r);
	}
}

void mm_port_set_chaos(uint64_t seed, unsigned rate_permille)
{
	if (rate_permille > 1000)
		mm_panic("mm_port_set_chaos: rate %u per mille is over 1000",
		         rate_permille);
	atomic_store(&chaos_seed, seed);
	atomic_store(&chaos_threads, 0);
	atomic_store(&chaos_rate, rate_permille);
	atomic_store(&mm_posix_chaos_on, seed != 0);
}

unsigned long mm_port_chaos_delays(void)
{
	return atomic_load(&chaos_delays);
}

#ifdef MM_TEST_HOOKS
static void chaos_mheap_hook(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	(void)where;
	mm_posix_chaos_point();
}
#endif

__attribute__((constructor)) static void chaos_init(void)
{
	uint64_t seed = chaos_env("MM_CHAOS", 0, UINT64_MAX, 0);
	unsigned rate = (unsigned)chaos_env("MM_CHAOS_RATE", 0, 1000, 100);
	bool hooks = chaos_env("MM_CHAOS_HOOKS", 0, 1, 1);
	if (!seed)
		return;
	mm_port_set_chaos(seed, rate);
#ifdef MM_TEST_HOOKS
	if (hooks)
		mheap_test_hook = chaos_mheap_hook;
#else
	hooks = false;
#endif
	fprintf(stderr,
	        "chaos: MM_CHAOS=%" PRIu64
	        " MM_CHAOS_RATE=%u MM_CHAOS_HOOKS=%d (set these to replay)\n",
	        seed, rate, hooks);
}
