/*
 * The hosted library's fences and signal masks (malloc_internal.h): the
 * membarrier(2) calls behind the slot protocol's fast path (slots.c says
 * why a fence in every thread makes an exclusive owner's plain stores
 * safe), the shootdown that stands in when membarrier is refused after
 * registering, and the signal masks the set-up's and the claim's windows
 * hold. None allocates; the fence keeps errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "malloc_internal.h"

long mm_malloc_membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

/* True if this process may use membarrier's private expedited command
 * (registered now); false if the kernel lacks it, a seccomp filter
 * refuses it, or MM_MALLOC_MEMBARRIER=0 says not to. */
bool mm_malloc_fences_register(void)
{
	if (mm_malloc_env_switch("MM_MALLOC_MEMBARRIER",
	                         getenv("MM_MALLOC_MEMBARRIER")) == 0)
		return false;
	long cmds = mm_malloc_membarrier(MEMBARRIER_CMD_QUERY);
	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		return false;
	return mm_malloc_membarrier(
	               MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

/* A full barrier in every thread of the process (see "Why"): membarrier,
 * or, refused after registering (a seccomp filter a sandbox installed
 * later: until this version fork and a sharer's claim aborted then), a
 * TLB shootdown, which interrupts the same threads. */
void mm_malloc_fence_others(void)
{
	/* A refused membarrier leaves EPERM: a free's claim must keep
	 * errno (until a review it did not; API test
	 * membarrier_refused_later). */
	int saved = errno;
	if (mm_malloc_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
		mm_malloc_fence_by_shootdown();
	errno = saved;
}

/* Blocks every signal in this thread, keeping its mask in *old, for a
 * window in which a handler's allocation would wait for this thread
 * (the set-up) or claim a second slot (the claim): the signals are
 * delivered when mm_malloc_signals_restore puts the mask back, the
 * window done. Two system calls, once per process and once per thread
 * (and per call that takes the late slot, enter.c); they neither
 * allocate nor change errno. */
void mm_malloc_signals_block(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
}

void mm_malloc_signals_restore(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}
