/*
 * malloc/fork.c: fork() under the hosted malloc: the fork handlers, which
 * stop the background threads and take every thread slot so that no
 * thread is inside mm/ when the process is copied, and _Fork, which runs
 * them around glibc's while the background threads run.
 *
 * Algorithm: slots.c, "fork" (the slots this takes and gives back, and
 * the membarrier(2) handshake, invariant 3, that keeps their fast
 * holders out). prepare: stop and join the background threads, take
 * glibc's stdio list lock, set MM_SLOT_FORK in every slot, fence the
 * other threads, take every slot on the slow path. parent: clear every busy,
 * then every flag. child: this thread owns its slot alone, every other is free;
 * it registers for membarrier again.
 *
 * A call entering on the slow path while its slot's MM_SLOT_FORK is set
 * waits until it is cleared (mm_malloc_slot_take), so prepare waits for
 * each slot's holder once. Until this version the holder's next call
 * took busy again before prepare's spin saw it free: 100 forks beside
 * two threads calling mallinfo2 in a loop took 95 s, against 16 s
 * without them. The entry holds no slot while it waits, and prepare
 * waits for no such entry, so neither waits for ever.
 *
 * Locking: prepare takes mm_malloc_ctl_lock (slots.c), which serialises
 * fork with the background threads' start; parent releases it, child
 * initialises it anew. Then glibc's stdio list lock, before the slots
 * (as glibc takes its own malloc's locks after it); parent unlocks it,
 * child resets it. The slots are taken in index order, with this
 * thread's own calls meanwhile passing as nested. The shootdown's lock
 * (port_prod.c) is a leaf, taken after all these only for prepare's
 * fence and not held across the copy (a sharer's claim holds it holding
 * no slot, and the forking thread's nested calls may fence): the child
 * frees it. A fork from a signal handler that interrupted this thread's
 * own call, or its hold of ctl_lock (error-checking, so that this is
 * told), skips the handlers (fork_skipped).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <signal.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#include "malloc_internal.h"

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

/*
 * The fork handlers are registered before any other library's: from the
 * constructor, which the dynamic loader runs before every other object's
 * (libc's included: the library is linked with -z initfirst, malloc.mk),
 * or at the first allocation if that comes first. glibc runs prepare
 * handlers newest first, so ours, which holds every slot, runs after
 * every other (as glibc takes its own malloc locks after all of them).
 * Run before such a handler, it held the slots while the handler waited
 * for its library's mutex, whose holder waited in malloc for its slot:
 * fork never returned. Until this version that was so for every library
 * the program links: the loader runs their constructors before an
 * LD_PRELOAD library's, and they allocate nothing first. glibc honours
 * one initfirst object: another one, mapped after this library, would
 * take its place (none of the system's libraries here is one).
 */
static atomic_bool fork_handlers;

/*
 * Registering fails only for want of memory (pthread_atfork's ENOMEM:
 * glibc's keeps its first 48 registrations in the list itself, and ours
 * comes first). Without the handlers a fork while another thread is
 * inside the heap, or holds one of its locks, copies the heap locked into
 * the child. Until a review the failure was ignored and never retried.
 * Now the heap's set-up does not finish without them (slots.c's
 * heap_init: the call fails with ENOMEM, and the next tries again), and
 * the first failure says so on stderr. Called by the constructor, alone,
 * and by the set-up, one at a time (slots.c's init_state). A set-up
 * nested in the constructor's registration (an allocation
 * pthread_atfork would make) finds it under way and leaves it to that
 * call: glibc's lock around the list is not recursive.
 */
static atomic_bool fork_registering, fork_told;

bool mm_malloc_register_fork_handlers(void)
{
	if (atomic_load(&fork_handlers) ||
	    atomic_exchange(&fork_registering, true))
		return true;
	int err = pthread_atfork(fork_prepare, fork_parent, fork_child);
	if (err == 0)
		atomic_store(&fork_handlers, true);
	atomic_store(&fork_registering, false);
	if (err && !atomic_exchange(&fork_told, true)) {
		/* Said even when MM_MALLOC_VERBOSE is off; no strerror,
		 * which may allocate. */
		mm_malloc_log_here(true);
		mm_log("cannot register the fork handlers (pthread_atfork "
		       "failed with error %d%s): the heap is not set up "
		       "without them; allocations fail with ENOMEM, and each "
		       "tries again",
		       err, err == ENOMEM ? ", ENOMEM" : "");
		mm_malloc_log_here(false);
	}
	return err == 0;
}

/* glibc's _Fork, which ours wraps (below); found by mm_malloc_fork_init. */
static pid_t (*real_Fork)(void);

void mm_malloc_fork_init(void)
{
	mm_malloc_register_fork_handlers();
	real_Fork = (pid_t(*)(void))dlsym(RTLD_NEXT, "_Fork");
}

/* The forking thread's held from prepare to parent or child: its calls
 * meanwhile pass as nested (it holds every slot). Never written. */
_Atomic unsigned long mm_malloc_fork_nested;

/*
 * glibc's stdio list lock (exported since 2.2.5, undeclared in its
 * headers). Its fork takes that lock after every prepare handler, ours
 * included, and its own malloc's locks after it, because a thread may
 * allocate holding it, or holding a stream's lock that a holder of the
 * list lock waits for (getline allocates under its stream's lock, and
 * fflush(NULL) locks every stream under the list's). Until this version
 * our handler took every slot first: such a thread then waited for its
 * slot, and fork for the list lock, for ever. So the fork handlers take
 * it before the slots, once the background threads (which may print)
 * are stopped: glibc's own take of it then nests (the lock is
 * recursive). Weak: a C library without it forks as before.
 */
extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));
extern void _IO_list_resetlock(void) __attribute__((weak));

/* Blocks every signal of this thread, the old mask into *old: from held
 * set until every slot is taken, and from the slots given back until
 * held is cleared, this thread's calls pass as nested (slots.c) without
 * its slot's busy word, and a handler's call there ran beside the slot's
 * other holder (a review's program aborted on a double free, 3 runs of
 * 5). Blocked, a signal waits until the window is over. */
static void block_signals(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
}

/* fork_prepare with ctl_lock already held; stdio: take glibc's stdio
 * list lock too (fork's handlers; not _Fork's, which runs none of
 * glibc's fork and takes no lock of its). */
static void fork_prepare_locked(bool stdio)
{
	if (atomic_load(&mm_malloc_bg_state) == MM_BG_RUNNING) {
		if (getpid() == mm_malloc_bg_pid) {
			spanheap_sweeper_stop(&mm_malloc_sh);
			mheap_scavenger_stop(&mm_malloc_heap);
		} else {
			/* A child made without the handlers (_Fork, clone):
			 * the threads are its parent's; joining them hung. */
			mm_malloc_sh.sweeper.thread = NULL;
			mm_malloc_heap.scav.thread = NULL;
			mm_malloc_threads_forget();
		}
	}
	/* This thread's own calls until parent/child pass as nested
	 * (prepare handlers registered before ours run after it), so it
	 * needs a slot for them. */
	if (mm_malloc_self.slot_id < 0)
		mm_malloc_first_use();
	sigset_t old;
	block_signals(&old);
	mm_malloc_self.held = &mm_malloc_fork_nested;
	mm_malloc_hook(MM_MALLOC_HOOK_FORK_HELD);
	if (stdio && _IO_list_lock)
		_IO_list_lock();
	for (int s = 0; s < MM_MAX_CPUS; s++)
		atomic_fetch_or(&mm_malloc_slots[s].state, MM_SLOT_FORK);
	if (mm_malloc_fences)
		mm_malloc_fence_others(); /* invariant 3 */
	for (int s = 0; s < MM_MAX_CPUS; s++)
		mm_malloc_slot_take(s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	mm_malloc_hook(MM_MALLOC_HOOK_FORK_TAKEN);
}

/*
 * fork() from a signal handler that interrupted this thread inside a
 * call (its slot held, or being left on the fast path), or inside the
 * background threads' start or a fork's handlers (ctl_lock its own):
 * the handlers would wait for this thread, for ever. glibc's fork skips
 * its own locks in a single-threaded process so that a handler may fork
 * there (its child to exec or _exit), and until this version ours hung
 * it. The handlers then do nothing, as _Fork does in that case (below):
 * the child may only do what an async-signal-safe fork's child may.
 * Counted per thread, for the parent or child handler to match: such a
 * fork may come between another's prepare and parent in this thread.
 */
static _Thread_local unsigned fork_skipped;

/* This thread's slot's busy holds its token (slots.c, invariant 5): it
 * is between taking busy and leaving the call, held set or not. */
static bool own_busy(void)
{
	int s = mm_malloc_self.slot_id;
	return s >= 0 && s < MM_MAX_CPUS && mm_malloc_self.token != 0 &&
	       atomic_load_explicit(&mm_malloc_slots[s].busy,
	                            memory_order_relaxed) ==
	               mm_malloc_self.token;
}

static bool own_call_interrupted(void)
{
	struct mm_malloc_thread *t = &mm_malloc_self;
	/* Only this thread writes its fast slot's in, and its token in
	 * busy: held alone missed the slow path's windows (busy taken, held
	 * not yet set; held cleared, busy not yet), where this waited for
	 * its own busy (every run of handler_fork without membarrier). */
	return t->held || (t->fast && atomic_load(&t->fast->in)) || own_busy();
}

static void fork_prepare(void)
{
	if (own_call_interrupted() || mm_malloc_ctl_take() == EDEADLK) {
		fork_skipped++;
		return;
	}
	fork_prepare_locked(true);
}

/* Lets this thread's calls and the background threads start again. */
static void fork_resume(void)
{
	mm_malloc_self.held = NULL;
	if (atomic_load(&mm_malloc_bg_state) == MM_BG_RUNNING)
		atomic_store(&mm_malloc_bg_state, MM_BG_ALLOWED);
}

/* The parent's side: gives back what fork_prepare_locked(stdio) took. */
static void release_parent(bool stdio)
{
	/* busy first: a fast entry that sees the flag gone finds the slot
	 * free; a slow one waits for busy either way. */
	sigset_t old;
	block_signals(&old);
	for (int s = 0; s < MM_MAX_CPUS; s++)
		atomic_store_explicit(&mm_malloc_slots[s].busy, 0,
		                      memory_order_release);
	for (int s = 0; s < MM_MAX_CPUS; s++)
		atomic_fetch_and(&mm_malloc_slots[s].state, ~MM_SLOT_FORK);
	mm_malloc_hook(MM_MALLOC_HOOK_FORK_RELEASED);
	fork_resume();
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (stdio && _IO_list_unlock)
		_IO_list_unlock();
	mm_malloc_ctl_give();
}

static void fork_parent(void)
{
	if (fork_skipped)
		fork_skipped--;
	else
		release_parent(true);
}

/* The child's side of fork_prepare_locked(stdio). */
static void release_child(bool stdio)
{
	/* The other threads are gone, their slots and shares with them: this
	 * thread owns its slot alone (unless it is past its exit). */
	int me = mm_malloc_self.slot_id;
	bool own = me >= 0 && me != MM_MALLOC_LATE_SLOT;
	for (int s = 0; s < MM_MAX_CPUS; s++) {
		struct mm_malloc_slot *sl = &mm_malloc_slots[s];
		atomic_store(&sl->state, own && s == me ? MM_SLOT_ONE : 0);
		atomic_store(&sl->in, 0);
		atomic_store(&sl->busy, 0);
		atomic_store(&sl->owner, 0);
		for (unsigned k = 0; k < MM_SLOT_SHARERS; k++)
			atomic_store(&sl->sharers[k], 0);
	}
	/* Its ids are the child's now (the parent's would pass for a
	 * thread gone, whose slot a claim takes over). */
	if (own)
		mm_malloc_owner_set(me);
	/* Held by a thread with no slot, which fork does not wait for: a
	 * sharer's claim (the shootdown's lock), a fault's report. */
	mm_malloc_shootdown_reset();
	mm_malloc_guard_fork_child();
	/* Registration is the process's: say it again for this one. */
	if (mm_malloc_fences &&
	    mm_malloc_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) !=
	            0)
		mm_malloc_fences = false;
	mm_malloc_self.fast =
	        own && mm_malloc_fences ? &mm_malloc_slots[me] : NULL;
	fork_resume();
	/* glibc reset the list lock already if the parent had threads; if
	 * not, it never took it, and ours is this thread's alone. */
	if (stdio && _IO_list_resetlock)
		_IO_list_resetlock();
	mm_malloc_ctl_reset();
}

static void fork_child(void)
{
	if (fork_skipped)
		fork_skipped--;
	else
		release_child(true);
}

/*
 * _Fork (glibc 2.34) forks without the fork handlers. A program that
 * thinks itself single-threaded may call malloc in its child; but our
 * background threads make it multi-threaded, and the child inherited any
 * lock one of them held (the heap's, a class's) with no thread to release
 * it: its first malloc could hang (2 of 300 children, in a review's
 * test). So in a process that has had a second thread (ours or the
 * program's: glibc's __libc_single_threaded is clear), this _Fork, which
 * the program's calls reach (glibc's fork calls its own internally),
 * runs our handlers around the real one. In a single-threaded process it
 * is the real one alone, async-signal-safe as documented: no other thread
 * can be inside mm/. With them it takes our locks, as fork does, waiting
 * for another thread's hold of ctl_lock (a malloc_trim: until this
 * version it only tried the lock, and ran without the handlers while
 * another thread trimmed or while the background threads were stopped,
 * so its child inherited a trim half done and hung in its own), but
 * never for this thread's: called from a signal handler that
 * interrupted this thread inside a call (its slot held, even while it
 * leaves) or inside bg_start (ctl_lock held: EDEADLK), the handlers
 * would wait for ever (a review's test hung 3 runs of 3), so it is the
 * real one alone then, and its child may only do what an
 * async-signal-safe _Fork's child may.
 */
__attribute__((visibility("default"))) pid_t _Fork(void)
{
	if (!real_Fork) /* called before our constructor ran */
		real_Fork = (pid_t(*)(void))dlsym(RTLD_NEXT, "_Fork");
	if (!real_Fork) {
		errno = ENOSYS;
		return -1;
	}
	/* This thread's own call, interrupted, only: another thread's
	 * hold of the slot (a sharer's) is waited for. Until this version
	 * any hold of it skipped the handlers, and the child inherited a
	 * sharer's busy with no thread to give it back. */
	if (own_call_interrupted() || mm_malloc_ctl_take() != 0)
		return real_Fork();
	if (__libc_single_threaded) {
		mm_malloc_ctl_give();
		return real_Fork();
	}
	fork_prepare_locked(false);
	pid_t pid = real_Fork();
	if (pid == 0)
		release_child(false);
	else
		release_parent(false);
	return pid;
}
