/*
 * malloc/slots_gone.c: the slots of threads that are gone without giving
 * them back: who owns or shares a slot (the ids a slot records), and a
 * claim's reclaim of what a thread gone left counted.
 *
 * Representation: a slot's owner word (the thread that claimed it alone)
 * and its MM_SLOT_SHARERS sharer words (threads that joined it, as many
 * as fit), each (pid << 32) | tid or 0 (enter.h). Per thread, the word it
 * wrote (self_owner, self_share), which its exit clears.
 *
 * Algorithm (slots.c, "claim" and "exit"). A thread whose first call
 * comes in glibc's last round of key destructors sets the exit key too
 * late for its destructor to run, and is gone with its count in the
 * slot's state. A claim that finds every slot owned reclaims, slot by
 * slot, what such threads left: a slot whose owner the kernel no longer
 * knows (tgkill(pid, tid, 0) fails with ESRCH), or that has no owner,
 * first loses the counts of its recorded sharers that are gone (each
 * record cleared by compare-and-swap, so a count is dropped once); then
 * an ownerless slot left at no count is claimed (0 -> 1), and a gone
 * owner's slot left at its one count is taken over (owner from its ids to
 * the claimer's, the count and the cache kept). Until this version a
 * sharer's count stayed for good: its slot's owner kept the slow path,
 * and once the owner left no thread claimed it alone again.
 *
 * Invariants (slots.c's 6, for the sharer words too): a word is 0, the
 * ids of a thread counted in the slot's state, or another process's; it
 * is cleared and its count dropped only by its thread's exit or, once the
 * kernel has no thread by its ids, by a claim.
 *
 * Contexts: the claim and the exit of the thread itself (slots.c), with
 * its signals blocked in the claim; no lock. Limits: a process whose
 * probes are refused (a seccomp filter that fails tgkill) makes one, and
 * reclaims nothing but slots with no owner and no recorded sharer: its
 * claims with every slot owned then share at once. A slot records
 * MM_SLOT_SHARERS sharers; a sharer that finds them all taken first
 * drops those gone (at most MM_SLOT_SHARERS probes, only then), and
 * joins unrecorded only if all are alive (or probes are refused), which
 * is logged with a count (mm_log, MM_MALLOC_VERBOSE=1): the joined slot
 * is the least owned, so every slot then counts more than
 * MM_SLOT_SHARERS threads. Its count stays for good only if it is gone in
 * its last key round. Otherwise a live owner keeps a gone sharer's count
 * (and the slow path) until it leaves: its slot is not looked into while
 * it lives, so that a claim costs at most one tgkill(2) a slot beside
 * its recorded sharers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "malloc_internal.h"

/* This thread's word in the owner or a sharer word of its slot, which
 * its exit clears; 0 if it wrote none. */
static _Thread_local unsigned long long self_owner;
static _Thread_local _Atomic unsigned long long *self_share;
static _Thread_local unsigned long long self_share_ids;

/* This thread's ids in process pid, as a slot records them. */
static unsigned long long ids_of_self(pid_t pid)
{
	return (unsigned long long)pid << 32 | (uint32_t)gettid();
}

void mm_malloc_owner_set(int s)
{
	self_owner = ids_of_self(getpid());
	self_share = NULL; /* a fork child's sharer owns its slot now */
	atomic_store(&mm_malloc_slots[s].owner, self_owner);
}

void mm_malloc_ids_clear(int s)
{
	unsigned long long me = self_owner;
	if (me)
		atomic_compare_exchange_strong(&mm_malloc_slots[s].owner, &me,
		                               0);
	me = self_share_ids;
	if (self_share)
		atomic_compare_exchange_strong(self_share, &me, 0);
	self_owner = 0;
	self_share = NULL;
}

/* Set once a probe failed with anything but ESRCH: a seccomp filter's
 * EPERM (or ENOSYS), which stays for the process's life and its fork
 * children's. Until this version each claim made while every slot was
 * owned probed every slot again: 63 failing system calls a claim. */
static atomic_bool probes_refused;

/* True if the thread of ids is one of process pid's that the kernel no
 * longer knows. A thread id may be reused: a live thread with the same
 * id keeps its word, never the reverse (the kernel finds no thread by an
 * id only once its thread ran its last instruction). Any error but ESRCH
 * keeps it too, and every later probe is skipped (probes_refused).
 * Changes errno. */
static bool ids_gone(unsigned long long ids, pid_t pid)
{
	if (ids >> 32 != (uint32_t)pid ||
	    atomic_load_explicit(&probes_refused, memory_order_relaxed))
		return false;
	if (syscall(SYS_tgkill, pid, (pid_t)(uint32_t)ids, 0) == 0)
		return false;
	if (errno == ESRCH)
		return true;
	atomic_store_explicit(&probes_refused, true, memory_order_relaxed);
	return false;
}

/* Drops the counts of slot sl's recorded sharers that are gone. Their
 * last leave gave busy back with release; the next holder's take
 * acquires it. */
static void sharers_reclaim(struct mm_malloc_slot *sl, pid_t pid)
{
	for (unsigned k = 0; k < MM_SLOT_SHARERS; k++) {
		unsigned long long was = atomic_load(&sl->sharers[k]);
		if (was != 0 && ids_gone(was, pid) &&
		    atomic_compare_exchange_strong(&sl->sharers[k], &was, 0))
			atomic_fetch_sub_explicit(&sl->state, MM_SLOT_ONE,
			                          memory_order_release);
	}
}

/* Records this thread's ids me in a free sharer word of sl; false if
 * every word is taken. */
static bool sharer_record(struct mm_malloc_slot *sl, unsigned long long me)
{
	for (unsigned k = 0; k < MM_SLOT_SHARERS; k++) {
		unsigned long long free_word = 0;
		if (atomic_compare_exchange_strong(&sl->sharers[k], &free_word,
		                                   me)) {
			self_share = &sl->sharers[k];
			self_share_ids = me;
			return true;
		}
	}
	return false;
}

/* Sharers that joined a slot with every sharer word taken by a live
 * thread: not recorded, so a count left by one gone without giving it
 * back is never dropped. Reported (mm_log). */
static atomic_ulong unrecorded_sharers;

void mm_malloc_sharer_set(int s)
{
	pid_t pid = getpid();
	unsigned long long me = ids_of_self(pid);
	struct mm_malloc_slot *sl = &mm_malloc_slots[s];
	if (sharer_record(sl, me))
		return;
	/* Every word taken: the words of sharers gone make room, their
	 * counts dropped (this thread's own count, added already, keeps
	 * the owner off its fast path meanwhile). Until this version the
	 * joiner went unrecorded, and its count stayed for good if it was
	 * gone in its last key round. */
	int saved_errno = errno; /* the probes' */
	sharers_reclaim(sl, pid);
	errno = saved_errno;
	if (sharer_record(sl, me))
		return;
	unsigned long n = atomic_fetch_add(&unrecorded_sharers, 1) + 1;
	mm_log("slot %d: a sharer joins unrecorded, its %lu sharer words "
	       "held by live threads (%lu so far): its count stays if it "
	       "ends in its last key round",
	       s, (unsigned long)MM_SLOT_SHARERS, n);
}

/* Slot i, whose owner word is was (0 or gone), left at no count by its
 * reclaim: claims it (0 -> 1, whatever the fork flag). */
static bool ownerless_claim(unsigned i)
{
	atomic_uint *st = &mm_malloc_slots[i].state;
	unsigned v = atomic_load(st);
	while (v < MM_SLOT_ONE) {
		mm_malloc_hook(MM_MALLOC_HOOK_CLAIM_FREE);
		if (atomic_compare_exchange_weak(st, &v, v + MM_SLOT_ONE)) {
			mm_malloc_owner_set((int)i);
			return true;
		}
	}
	return false;
}

bool mm_malloc_slot_reclaim(unsigned i, pid_t pid)
{
	struct mm_malloc_slot *sl = &mm_malloc_slots[i];
	unsigned long long was = atomic_load(&sl->owner);
	if (was != 0 && !ids_gone(was, pid))
		return false; /* a live owner, or another process's */
	sharers_reclaim(sl, pid);
	if (was == 0)
		return ownerless_claim(i);
	/* The owner ran its last call to the end: in and busy are 0, stored
	 * with release by its last leave, and these acquire loads read
	 * them. The cache is the slot's: the new owner goes on with it. */
	if ((atomic_load(&sl->state) & ~(MM_SLOT_FORK | MM_SLOT_VISIT)) !=
	            MM_SLOT_ONE ||
	    atomic_load(&sl->in) != 0 || atomic_load(&sl->busy) != 0)
		return false;
	unsigned long long me = ids_of_self(pid);
	mm_malloc_hook(MM_MALLOC_HOOK_RECLAIM_READ);
	if (!atomic_compare_exchange_strong(&sl->owner, &was, me))
		return false;
	self_owner = me;
	self_share = NULL;
	return true;
}
