/*
 * malloc/slots.c: the hosted malloc's set-up and its threads: the heap's
 * bootstrap and the thread slots that play the span heap's CPUs. The
 * background threads (their start, and the constructor that allows them)
 * are in background.c, fork()'s handlers and _Fork in fork.c, the slow
 * entry and the nested calls in enter.c, the reclaim of what threads gone
 * left in slots_gone.c, the visit of other slots' caches in visit.c; the
 * algorithm of all five is described here, with the slots they take.
 *
 * Representation. MM_MAX_CPUS slots, each one cache line of three words
 * (malloc_internal.h): in (the exclusive owner is inside a call), state
 * (owners * MM_SLOT_ONE, plus MM_SLOT_FORK while fork is being prepared
 * and MM_SLOT_VISIT while another thread visits the slot's cache) and
 * busy (held on the slow path). Slots [0, LATE_SLOT) are claimed by
 * live threads; LATE_SLOT, the last, serves threads past their exit
 * (below) and is never owned. Per thread, one initial-exec TLS object
 * (mm_malloc_self, pin.h) so that reaching it never allocates: the slot's
 * index, the call and pin depths, the slot if the thread may take the
 * fast path (fast), and the word its outermost leave clears (held). The
 * mode, fences, is decided once at init: true if membarrier(2)
 * registered.
 *
 * Algorithm.
 *   bootstrap  The first call of any entry point, from any thread (the
 *              dynamic loader's first allocations included), initialises
 *              the heap under a spinning state word: 0 none, 1 in progress,
 *              2 ready. Only mmap, mprotect, membarrier (the mode is
 *              decided then, before any slot is claimed) and
 *              pthread_key_create (the exit key, so that every thread
 *              that finds the heap ready can register for it; glibc's
 *              takes an entry of a static table and allocates nothing)
 *              run meanwhile, and pthread_atfork if the constructor
 *              has not registered the fork handlers (it allocates
 *              nothing for its first 48 in glibc; an allocation it
 *              made, nested in the set-up, would fail). The set-up runs
 *              with every signal blocked: a handler's allocation in the
 *              initialising thread would wait for it forever. A set-up
 *              that fails (arena.c or fork.c says why, once; the heap
 *              without fork handlers is a failure) puts the word back to
 *              0: the call fails with ENOMEM, and the next call, or a
 *              thread that waited, tries again.
 *   claim      On first use a thread claims a slot nobody owns (owners
 *              0 -> 1 by compare-and-swap on state, whatever the flag):
 *              it owns it alone and, if fences, may take the fast path.
 *              A claim alone records the thread's ids in the slot's
 *              owner word. When all are owned it first takes over a slot
 *              whose one owner is a thread gone without giving it back
 *              (its first call came in glibc's last round of key
 *              destructors, too late for the exit key's to run; or no
 *              key): owner from its ids to its own by compare-and-swap
 *              (slots_gone.c), the count unchanged, the slot's cache
 *              kept, having dropped the counts of the slot's recorded
 *              sharers that are gone (or claims a slot with no owner
 *              left at no count by that). Else it shares the least-owned
 *              one: adds itself to state (the fast path's state ==
 *              MM_SLOT_ONE no longer holds), records its ids in a free
 *              sharer word of the slot, then calls membarrier(), then
 *              uses the slot, always on the slow path. The claim runs
 *              with every signal blocked: a handler's call in it would
 *              find no slot and claim a second; it first looks again for
 *              a slot, which a handler's call just before the block
 *              claimed.
 *   enter      The fast path (an exclusive owner, fences): in = 1, a
 *              compiler barrier, load state; if it is MM_SLOT_ONE the
 *              thread holds the slot, and leave stores in = 0. Otherwise
 *              it backs out (in = 0) and takes the slow path: busy 0 ->
 *              its token by compare-and-swap (waiting while it is held),
 *              then wait until in is 0; leave stores busy = 0. The wait
 *              for in is what keeps the slow path out of a fast holder's call;
 *              a thread backing out clears in itself. A thread's first call
 *              takes the slow path, which claims its slot (outside the call:
 *              the heap's set-up and the claim may allocate). enter
 *              returns the word to clear, which leave takes back.
 *   nested     A call that finds the thread's held word set is nested:
 *              fork's own (held is fork's word) does nothing more, as
 *              fork holds every slot; any other is a signal handler's
 *              that interrupted one of the thread's calls anywhere, mm/
 *              halfway through a cache included, and takes LATE_SLOT on
 *              the slow path, with signals blocked until its leave,
 *              which puts the thread's slot index back. (Until a review
 *              only a handler's call that cut into a fast entry of a
 *              shared slot did; the others ran in the interrupted
 *              call's caches, and an object was handed out twice: API
 *              test signal_handler_allocs.) A thread past its exit,
 *              whose calls hold LATE_SLOT, has none to lend: its
 *              handler's call is reported (mm_panic). A call that
 *              finds held NULL but its own token in the slot's busy cut
 *              into a slow entry (busy taken, held not yet set) or leave
 *              (held cleared, busy not yet): it is nested in that hold,
 *              once in is 0 (until this version it waited for its own
 *              busy, for ever).
 *   exit       A pthread key's destructor flushes the slot's cache
 *              (spanheap_flush_cache, holding the slot), moves the thread
 *              to LATE_SLOT on the slow path, clears the owner or sharer
 *              word it wrote if it is still its own, and then drops its
 *              ownership, so a later thread claims the slot and thousands
 *              of short-lived threads leave nothing behind. A free()
 *              during the rest of the thread's teardown (later keys'
 *              destructors, glibc's own) holds LATE_SLOT for its call,
 *              never the slot a new thread may own alone by then.
 *   fork       prepare: stop and join the background threads (mid-cycle
 *              work ends with their join), set MM_SLOT_FORK in every
 *              slot, call membarrier(), then take every slot on the slow
 *              path (busy, then in == 0); with those held, no thread is
 *              inside mm/, so no mm lock is held and no span or page is
 *              half-moved; an entry meanwhile waits (fork.c). parent:
 *              clear every busy, then every flag.
 *              child: only the forking thread is left: every slot is
 *              unowned but its own, which it owns alone; it registers for
 *              membarrier again (falling back to exchanges if that fails).
 *              Both restart the background threads lazily (fork.c).
 *   background The sweeper and the scavenger start on an allocation's
 *              slow path (malloc's and calloc's fast paths leave the call
 *              to it while they are allowed and not running, realloc and
 *              the aligned calls have no other), made
 *              after our constructor ran (the first of every object's,
 *              -z initfirst; libc is set up by the next allocation) and
 *              once the heap has grown to 8 MiB (a smaller heap has
 *              little to give back), outside any API
 *              call, under ctl_lock; the allocations pthread_create makes
 *              see the state "running" and do not recurse. They are
 *              threads like any other: a pin outside an API call enters
 *              (port_prod.c), which claims a slot on first use (the
 *              sweeper's visit of stale caches pins nothing: it borrows
 *              the slots it visits, visit.c).
 *   trim       malloc_trim (malloc_info.c) releases as they do, from the
 * caller's thread outside any API call, under ctl_lock (malloc_trim).
 *   visit      mm_port_each_other_cpu (visit.c), for malloc_trim's release,
 *              an allocation the heap refused and the sweeper's visit of
 *              stale caches: one at a time (a visitor inside a call tries
 *              the lock once; one outside waits, holding no slot); holding
 *              its own slot (the sweeper has none and borrows each slot
 *              it visits), a thread sets MM_SLOT_VISIT in every other
 *              slot ever used (mm_malloc_slots_used: the others' caches
 *              are empty), calls membarrier() (none if no slot was
 *              flagged), then takes each slot on the slow
 *              path with a bounded wait (busy, then in == 0; passed by if
 *              either outlasts it), hands its cache to mm/, gives busy
 *              back, and last clears the flags. It never waits for fork's
 *              flag.
 *
 * Why the fast path is safe (an asymmetric Dekker handshake). The fast
 * holder E does (1) in = 1, (2) load state, with only a compiler barrier
 * between, so the CPU may let (2) pass (1) (the store waits in its store
 * buffer). A thread X that needs E out (a sharer joining, fork, a visit) does
 * (a) set its mark in state (a locked instruction: visible before X goes
 * on), (b) membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), then (c) load in
 * (after taking busy). (b) returns only once every thread of the process
 * has passed a full memory barrier B at some point during the call (an
 * IPI if it is running, a context switch otherwise). If E's (2) comes
 * after B in its instruction stream, it reads state after (a), sees the
 * mark and backs out. If (2) comes before B, so does (1), so in = 1 is
 * visible to everyone once B is done, before (b) returns: (c) reads 1 (or
 * the 0 of E's leave, after its call) and X waits. Either way E and X are
 * never both inside, and no fast entry after B succeeds while the mark is
 * set: a sharer's mark stays until it exits, fork's until it releases
 * the slots, a visit's until it gave every slot back. In C11 terms the IPI is a
 * signal handler running a seq_cst fence in E, which atomic_signal_fence orders
 * against. Hand-offs: E's leave stores in = 0 with release and X loads it with
 * acquire; X gives busy back with release and clears its mark with a release
 * RMW, which E's next fast entry loads with acquire (or its slow entry's CAS of
 * busy acquires). A sharer that exits drops its count with a release
 * RMW after its last call, so the owner left alone may use the fast path
 * again. Without fences nobody takes the fast path, in stays 0, and
 * every call is the compare-and-swap (CAS) of busy ("exchange" mode).
 *
 * Invariants.
 *   1. Only a thread that owns a slot alone (claimed by 0 -> 1, taken
 *      over from a thread gone, or a fork child's only thread) has fast
 *      set to it and writes its in, and only while it owns it.
 *   2. A thread that shares a slot called membarrier() after adding
 *      itself to state and before its first call on the slot.
 *   3. While MM_SLOT_FORK (MM_SLOT_VISIT) is set in a slot, fork_prepare
 *      (a visit) called membarrier() after setting it, or has not yet
 *      taken the slot.
 *   4. Nobody owns LATE_SLOT, so nobody takes it on the fast path.
 *   5. busy is 0 or its holder's token (held may be NULL while it is
 *      set: a fork from a signal handler tells its own hold by it,
 *      fork.c; a token is a 64-bit count, never made twice, enter.c).
 *   6. A slot's owner word is 0, the ids of a thread counted in its
 *      state, or those of another process (a child made without the
 *      fork handlers), never taken over; taken over only once the kernel
 *      has no thread by them.
 *
 * Locking: ctl_lock (a pthread mutex) serialises background start and
 * stop, malloc_trim's release and fork. It is never taken holding a
 * slot. A thread holds at most one slot, except fork's, which takes them
 * all in index order with its own calls passing as nested, and a
 * visitor's, which holds its own and one other at a time, taken with a
 * bounded wait; no other holder waits for another slot, and an entry
 * that waits for fork's flag holds none, so waiting for busy or in
 * always ends.
 * Limits: malloc is not async-signal-safe. A signal handler's call that
 * interrupted one of its thread's own runs on LATE_SLOT ("nested"): it
 * never shares the interrupted call's caches nor waits for it (its
 * allocations are MM_ATOMIC, malloc.c), but an mm lock that call holds
 * (or is taking) is reported by the ranks' check and aborts
 * (port_sync.c), where glibc would deadlock or corrupt its heap. 63
 * slots for live threads (one is LATE_SLOT). A thread that shares a slot
 * and is gone without giving its share back (first call in the last key
 * round, every slot owned) leaves it counted while the slot's owner
 * lives, or for good if it joined while the slot's sharer words were
 * all held by live threads (logged; slots_gone.c). A reclaim costs a tgkill(2)
 * a slot and one a recorded sharer of a slot with no live owner, made only when
 * every slot is owned; once one is refused (seccomp), none. An owner left alone
 * after sharing keeps the slow path if it joined as a sharer. A seccomp filter
 * that kills the process on membarrier(2), rather than failing it, kills
 * it at the first allocation (MM_MALLOC_MEMBARRIER=0 avoids the call).
 * Sharing costs a membarrier() per thread that joins a slot, fork one
 * per fork.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "malloc_internal.h"
#include "mm/mheap_testing.h"

struct mheap mm_malloc_heap;
/* In .lbss, which the linker puts after every .bss: it ended a page
 * and was followed by the library's small variables, a page resident
 * for a few of their bytes; now they share the pages before it
 * (review rv110). GCC makes .lbss NOBITS, as .bss; clang 14 makes it
 * PROGBITS (172 KiB of zeros in the file), so not under clang. */
#if defined(__GNUC__) && !defined(__clang__)
#define MM_MALLOC_LAST_BSS __attribute__((section(".lbss")))
#else
#define MM_MALLOC_LAST_BSS
#endif
struct spanheap mm_malloc_sh MM_MALLOC_LAST_BSS;
struct mm_malloc_slot mm_malloc_slots[MM_MAX_CPUS];
_Thread_local struct mm_malloc_thread mm_malloc_self = {.slot_id = -1};
#ifdef MM_TEST_HOOKS
void (*_Atomic mm_malloc_test_hook)(enum mm_malloc_hook_point where);

/* mm/'s hook points that a test of this library needs, passed on as
 * ours (mm/'s own hook is not exported). */
static void pass_mheap_hook(struct mheap *h, enum mheap_hook_point where)
{
	(void)h;
	if (where == MHEAP_HOOK_STATS_COUNTED)
		mm_malloc_hook(MM_MALLOC_HOOK_STATS_COUNTED);
	if (where == MHEAP_HOOK_CACHE_SETTING_UP)
		mm_malloc_hook(MM_MALLOC_HOOK_CACHE_SETTING_UP);
}
#endif

static atomic_int init_state; /* 0 none, 1 in progress, 2 ready */
/* While init_state is 1: pthread_self() of the thread setting up. */
static _Atomic uintptr_t setter;

bool mm_malloc_heap_ready(void)
{
	return atomic_load_explicit(&init_state, memory_order_acquire) == 2;
}
/* Set before init_state is 2 (also by fork_child, alone); then
 * read-only. */
bool mm_malloc_fences;
static pthread_key_t exit_key;
static bool key_ready;
/* The control lock: serialises the background threads' start, fork's
 * handlers and malloc_trim, and protects mm_malloc_bg_pid. Outside mm's
 * rank table, below all of it: taken holding no slot and no mm lock;
 * under it mm locks, glibc's stdio list lock (fork) and the slots. A
 * mutex, not an mm lock: its holders sleep (pthread_create, a fork).
 * Error-checking: a fork from a signal handler that interrupted its
 * holder in this thread is told so (EDEADLK) instead of waiting. Taken
 * through mm_malloc_ctl_take/_try/_give, which check the order at run
 * time (locks.c). */
pthread_mutex_t mm_malloc_ctl_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
static atomic_uint claim_hint;

static void slot_exit(void *arg);

/* Claims the set-up (init_state 0 -> 1) with every signal blocked (their
 * old mask in old_mask), or waits for another thread's to end: true if
 * this thread is to set the heap up, false once it is. Another thread's
 * set-up that failed leaves it to this one. A handler's call in this
 * thread would wait for this set-up forever: signals are blocked from
 * before the claim to the end (until this version the process hung;
 * then, the block made just after the claim, a handler's call between
 * the two still did: hooks test signal_as_set_up_is_won). */
static bool set_up_claim(sigset_t *old_mask)
{
	for (unsigned i = 0;; i++) {
		int st =
		        atomic_load_explicit(&init_state, memory_order_acquire);
		if (st == 2)
			return false;
		if (st == 0) {
			mm_malloc_signals_block(old_mask);
			if (atomic_compare_exchange_strong(&init_state, &st, 1))
				return true;
			mm_malloc_signals_restore(old_mask);
		}
		mm_malloc_backoff(i);
	}
}

/* Makes the heap usable: true once it is, whoever did it; false if this
 * thread's set-up failed (said why the first time, arena.c): the call
 * fails with ENOMEM, and the next one tries again (the program may have
 * freed memory, or a limit risen). Until this version a failed set-up
 * was a panic at the first malloc: under ulimit -d 2048 every program
 * aborted (the span array's pages), where glibc's ran. */
static bool heap_init(void)
{
	/* A call nested in this thread's own set-up (an allocation
	 * pthread_atfork would make, fork.c) fails: waiting for the heap
	 * would be waiting for itself. */
	if (atomic_load_explicit(&init_state, memory_order_acquire) == 1 &&
	    atomic_load(&setter) == (uintptr_t)pthread_self())
		return false;
	sigset_t old_mask;
	if (!set_up_claim(&old_mask))
		return true;
	atomic_store(&setter, (uintptr_t)pthread_self());
	/* The set-up's system calls may fail on the way to a usable heap
	 * (mmap under ulimit -v, as the arena halves; membarrier where a
	 * seccomp filter or the kernel refuses it): the call that caused
	 * it succeeds, and must leave errno as it was, as glibc's does.
	 * Until this version the first malloc or posix_memalign of such a
	 * process set errno to ENOMEM or ENOSYS. */
	mm_malloc_hook(MM_MALLOC_HOOK_INIT_WON);
	int saved_errno = errno;
	mm_malloc_hook(MM_MALLOC_HOOK_INIT_BEGUN);
	/* Failure injection (mm/spanheap_fail.h), so that a program can
	 * prove its out-of-memory paths: parsed here, armed once the heap
	 * is. */
	struct spanheap_fail_attr fa;
	bool fail = mm_malloc_fail_switch(getenv("MM_MALLOC_FAIL"), &fa);
	/* Not without the fork handlers, if the constructor could not
	 * register them (fork.c): the heap stays made for the next try. */
	if (!mm_malloc_heaps_make() || !mm_malloc_register_fork_handlers()) {
		atomic_store(&setter, 0);
		atomic_store_explicit(&init_state, 0, memory_order_release);
		mm_malloc_signals_restore(&old_mask);
		errno = saved_errno;
		return false;
	}
	mm_malloc_guard_start();
	mm_malloc_fences = mm_malloc_fences_register();
#ifdef MM_TEST_HOOKS
	mheap_test_hook = pass_mheap_hook;
#endif
	/* The key before the heap is published: a thread that finds it
	 * ready registers for it. Made after, a thread's first call in
	 * between claimed a slot without it, which it never gave back. */
	key_ready = pthread_key_create(&exit_key, slot_exit) == 0;
	atomic_store(&setter, 0);
	atomic_store_explicit(&init_state, 2, memory_order_release);
	/* Armed once the heap is published, not before: the arming flushes
	 * this thread's cache, which pins, which claims a slot, which waits
	 * for the heap (until it was moved here, the process hung). No
	 * slot has a slab of magazines yet, and none is made while armed
	 * (spanheap_mag_slab_make), so every call is counted from the
	 * first; the visit of the other slots finds no cache. A
	 * thread racing the set-up may still make a slab in between. */
	if (fail)
		spanheap_fail_arm(&mm_malloc_sh, &fa);
	mm_malloc_signals_restore(&old_mask);
	mm_malloc_hook(MM_MALLOC_HOOK_INIT_READY);
	errno = saved_errno;
	return true;
}

bool mm_malloc_heap_up(void)
{
	return mm_malloc_heap_ready() || heap_init();
}

/* Makes slot i, just claimed, this thread's (and its fast slot if fast);
 * returns i. The index first: a signal handler's call that found fast set
 * before it (until this version) indexed the caches with -1. */
static int slot_set(unsigned i, bool fast)
{
	mm_malloc_slot_used(i);
	mm_malloc_self.slot_id = (int)i;
	atomic_signal_fence(memory_order_seq_cst);
	if (fast)
		mm_malloc_self.fast = &mm_malloc_slots[i];
	return (int)i;
}

/* Claims a slot for this thread (see "claim" above) and sets its index
 * and fast; returns its index. */
static int slot_claim(void)
{
	unsigned start = atomic_fetch_add(&claim_hint, 1);
	for (unsigned k = 0; k < MM_MALLOC_LATE_SLOT; k++) {
		unsigned i = (start + k) % MM_MALLOC_LATE_SLOT;
		atomic_uint *st = &mm_malloc_slots[i].state;
		unsigned v = atomic_load_explicit(st, memory_order_relaxed);
		while (v < MM_SLOT_ONE) {
			mm_malloc_hook(MM_MALLOC_HOOK_CLAIM_FREE);
			if (atomic_compare_exchange_weak(st, &v,
			                                 v + MM_SLOT_ONE)) {
				mm_malloc_hook(MM_MALLOC_HOOK_CLAIM_COUNTED);
				mm_malloc_owner_set((int)i);
				return slot_set(i, mm_malloc_fences);
			}
		}
	}
	int saved_errno = errno;
	pid_t pid = getpid();
	for (unsigned i = 0; i < MM_MALLOC_LATE_SLOT; i++)
		if (mm_malloc_slot_reclaim(i, pid)) {
			errno = saved_errno;
			return slot_set(i, mm_malloc_fences);
		}
	errno = saved_errno;
	unsigned best = start % MM_MALLOC_LATE_SLOT, least = UINT32_MAX;
	for (unsigned i = 0; i < MM_MALLOC_LATE_SLOT; i++) {
		unsigned n = atomic_load_explicit(&mm_malloc_slots[i].state,
		                                  memory_order_relaxed);
		if (n < least) {
			least = n;
			best = i;
		}
	}
	atomic_fetch_add(&mm_malloc_slots[best].state, MM_SLOT_ONE);
	mm_malloc_sharer_set((int)best);
	if (mm_malloc_fences)
		mm_malloc_fence_others(); /* invariant 2 */
	return slot_set(best, false);
}

int mm_malloc_first_use(void)
{
	if (!heap_init())
		return -1;
	/* An allocation made by heap_init's registrations got one. */
	if (mm_malloc_self.slot_id >= 0)
		return mm_malloc_self.slot_id;
	mm_malloc_hook(MM_MALLOC_HOOK_BEFORE_CLAIM);
	/* A handler's call before slot_set would find no slot and claim
	 * one of its own, which this claim then overwrote (until this
	 * version: a slot counted as owned forever). So the claim runs with
	 * signals blocked, and looks for a slot again once they are: a
	 * handler's call before the block claimed one (until this version
	 * the check above was the only one: 2 slots owned by one thread,
	 * hooks test signal_before_claim). */
	sigset_t old_mask;
	mm_malloc_signals_block(&old_mask);
	int s = mm_malloc_self.slot_id;
	if (s < 0) {
		mm_malloc_hook(MM_MALLOC_HOOK_CLAIMING);
		s = slot_claim();
	}
	mm_malloc_signals_restore(&old_mask);
	mm_malloc_hook(MM_MALLOC_HOOK_CLAIMED);
	/* Without the key (none was free) the slot is not given back at
	 * exit. */
	if (key_ready)
		pthread_setspecific(exit_key, (void *)1);
	return s;
}

/* The key's destructor: the thread is exiting. */
static void slot_exit(void *arg)
{
	(void)arg;
	int s = mm_malloc_self.slot_id;
	if (s < 0 || s == MM_MALLOC_LATE_SLOT)
		return;
	_Atomic unsigned long *held = mm_malloc_enter();
	spanheap_flush_cache(&mm_malloc_sh);
	mm_malloc_leave(held);
	/* fast first, and kept first: a signal handler's call in between
	 * must not take the fast path on this slot with the late slot's
	 * index (slot_set's order, reversed). */
	mm_malloc_self.fast = NULL;
	atomic_signal_fence(memory_order_seq_cst);
	mm_malloc_slot_used(MM_MALLOC_LATE_SLOT);
	mm_malloc_self.slot_id = MM_MALLOC_LATE_SLOT;
	/* Not to be reclaimed (this thread is alive until it drops its
	 * count): cleared before, and only if it is still this thread's. */
	mm_malloc_ids_clear(s);
	atomic_fetch_sub(&mm_malloc_slots[s].state, MM_SLOT_ONE);
}
