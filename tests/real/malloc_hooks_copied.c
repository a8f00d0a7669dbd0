/*
 * tests/real/malloc_hooks_copied.c: malloc-hooks-test's scenarios of
 * what fork copies from a thread that holds no slot, which fork's
 * prepare therefore does not wait for (malloc_hooks_test.h): the lock of
 * the fence that stands in for membarrier(2) (malloc/port_prod.c) and
 * the guarded pool's report (malloc/guard.c). The child has no thread to
 * give such a lock back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_hooks_test.h"
#include "seccomp_util.h"

/* The child, for the scenario's hang guard to end too: hung where the
 * library blocks every signal but SIGKILL (fork's prepare, the pool's
 * SIGSEGV handler), it outlived the scenario. */
static volatile pid_t child;

static void end_child_too(int sig)
{
	if (child > 0)
		kill(child, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Names the child for end_child_too, which the scenario's alarm (main)
 * runs from now on. */
static void guard_child(pid_t pid)
{
	child = pid;
	on_signal(SIGALRM, end_child_too);
}

/* ---- fork while a sharer's claim holds the shootdown's lock ------------ */

/*
 * A seccomp filter refuses membarrier's private expedited command with
 * EPERM and lets its registration through, as a sandbox that lists the
 * commands it allows may: every fence is then the shootdown, in the
 * parent and in a child, which registers again (malloc/fork.c).
 * MM_MALLOC_HOOK_SHOOTDOWN_HELD stops a fencing thread holding the
 * shootdown's lock.
 */

/* Installs on this thread (and the threads it starts later) a filter
 * that fails membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) with EPERM and
 * allows every other call, membarrier's other commands included; false
 * if the kernel or a sandbox refuses it. */
static bool refuse_expedited(void)
{
	struct sock_filter code[] = {
	        SECCOMP_X86_64_NR,
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 3),
	        /* The command's low word (x86_64 is little-endian). */
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	                 offsetof(struct seccomp_data, args[0])),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
	                 MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 1),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	return seccomp_install(code, sizeof(code) / sizeof(code[0]), 0) == 0;
}

/* The start of a scenario whose fences are all the shootdown: 0 with
 * refuse_expedited's filter on this thread, else the status to return
 * (fast_path_or_skip's, or 77, a skip, saying why, where no filter can be
 * installed). */
static int shootdown_fences_or_skip(void)
{
	int st = fast_path_or_skip();
	if (st)
		return st;
	if (!refuse_expedited()) {
		fprintf(stderr, "no seccomp filter (errno %d)", errno);
		return 77;
	}
	return 0;
}

static atomic_bool claim_armed, claim_fencing, fork_returned;
static _Thread_local volatile bool is_forker;

static void in_shootdown_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_FORK_TAKEN && is_forker) {
		/* fork's own fence is done: the sharer's claim fences now,
		 * and holds the lock while the process is copied. */
		atomic_store(&claim_armed, true);
		share_go();
		while (!atomic_load(&claim_fencing))
			sched_yield();
	} else if (where == MM_MALLOC_HOOK_SHOOTDOWN_HELD && !is_forker &&
	           atomic_exchange(&claim_armed, false)) {
		atomic_store(&claim_fencing, true);
		while (!atomic_load(&fork_returned))
			sched_yield();
	}
}

/* The child: one thread, membarrier registered again (the filter lets
 * that through), so its fences are shootdowns too. Its own fork fences
 * first thing. */
static int fork_again(void)
{
	is_forker = false;
	if (strcmp(mm_malloc_slot_mode(), "membarrier") != 0) {
		fprintf(stderr, "the child registered no membarrier: it "
		                "fences nothing");
		return 2;
	}
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	int st = -1;
	return pid > 0 && waitpid(pid, &st, 0) == pid && st == 0 ? 0 : 3;
}

/*
 * A claim that shares a slot fences (invariant 2) holding no slot, so
 * fork's prepare does not wait for it: the process may be copied while
 * it holds the shootdown's lock. The child has no thread to give the
 * lock back, and until a review its first fence (here its own fork's
 * prepare) waited for it for ever: the scenario's alarm ends it, "status
 * 0xe". The fence's lock must be free in the child.
 */
int fork_beside_shootdown(void)
{
	int st = shootdown_fences_or_skip();
	if (st)
		return st;
	mm_malloc_test_hook = in_shootdown_window;
	if (share_prepare(false) != 0)
		return 2;
	is_forker = true;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(fork_again());
	is_forker = false;
	guard_child(pid);
	atomic_store(&fork_returned, true);
	fprintf(stderr, "waiting for the child, whose fork fences with the "
	                "shootdown's lock as fork copied it");
	st = -1;
	bool reaped = pid > 0 && waitpid(pid, &st, 0) == pid;
	share_end();
	if (!atomic_load(&claim_fencing)) {
		fprintf(stderr, "; the sharer's claim made no shootdown");
		return 2;
	}
	if (!reaped || st != 0) {
		fprintf(stderr, "; the child's status: %#x", st);
		return 1;
	}
	return 0;
}

/* ---- the shootdown's lock is held with every signal blocked ----------- */

static atomic_int shootdowns_seen;
static atomic_bool shootdown_open; /* a signal open while it was held */

static void note_shootdown_mask(enum mm_malloc_hook_point where)
{
	if (where != MM_MALLOC_HOOK_SHOOTDOWN_HELD)
		return;
	sigset_t cur;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	if (!sigismember(&cur, SIGUSR1) || !sigismember(&cur, SIGALRM))
		atomic_store(&shootdown_open, true);
	atomic_fetch_add(&shootdowns_seen, 1);
}

/*
 * A fence by shootdown (membarrier's expedited command refused, as
 * above; here a malloc_trim's visit from a thread that owns a slot,
 * which blocks no signal itself, unlike fork and a claim) holds the shootdown's
 * lock with every signal blocked, so that no handler's call takes a lock under
 * it (malloc/port_prod.c, malloc/locks.c). A mutation audit found that
 * unpinned: without the blocking no test failed.
 */
static void *claim_and_go(void *arg)
{
	free(malloc(16)); /* a slot, ever used: the visit flags it */
	return arg;
}

int shootdown_blocks_signals(void)
{
	int st = shootdown_fences_or_skip();
	if (st)
		return st;
	free(malloc(16)); /* this thread's slot */
	pthread_t t;
	if (pthread_create(&t, NULL, claim_and_go, NULL) != 0 ||
	    pthread_join(t, NULL) != 0)
		return 2;
	mm_malloc_test_hook = note_shootdown_mask;
	malloc_trim(0);
	mm_malloc_test_hook = NULL;
	if (atomic_load(&shootdowns_seen) == 0) {
		fprintf(stderr, "malloc_trim's visit made no shootdown");
		return 2;
	}
	if (atomic_load(&shootdown_open)) {
		fprintf(stderr, "SIGUSR1 or SIGALRM open while a thread held "
		                "the shootdown's lock");
		return 1;
	}
	return 0;
}

/* ---- fork while another thread reports a fault in the guarded pool ----- */

/* MM_MALLOC_GUARD=1 (the parent sets it). A guarded object's size is the
 * bytes asked, where the heap's class gives ROUNDED (as in
 * malloc_api_guard.c); one that ends at its page's end has the guard
 * page right after it. */
enum { ASK = 40, ROUNDED = 48, PAGE = 4096 };

/* A live guarded object of ASK bytes at its page's end, or NULL if none
 * came in KEEP allocations (kept, so that none is handed out twice). */
static char *guarded(void)
{
	enum { KEEP = 20000 };
	static void *kept[KEEP];
	for (size_t i = 0; i < KEEP; i++) {
		char *p = kept[i] = malloc(ASK);
		if (p && malloc_usable_size(p) == ASK &&
		    ((uintptr_t)p + ROUNDED) % PAGE == 0)
			return p;
	}
	return NULL;
}

/* The program's own SIGSEGV handler, set before the heap's set-up: the
 * pool's handler calls it after its report; it leaves the fault. */
static _Thread_local sigjmp_buf overrun_back;

static void leave_fault(int sig)
{
	(void)sig;
	siglongjmp(overrun_back, 1);
}

/* Overruns p onto its guard page; true once the fault was handled. */
static bool overrun(char *p)
{
	if (sigsetjmp(overrun_back, 1))
		return true;
	((volatile char *)p)[ROUNDED] = 1;
	return false;
}

static atomic_bool report_armed, reporting, fork_done;

static void in_report_window(enum mm_malloc_hook_point where)
{
	if (where == MM_MALLOC_HOOK_GUARD_REPORTING &&
	    atomic_exchange(&report_armed, false)) {
		atomic_store(&reporting, true);
		while (!atomic_load(&fork_done))
			sched_yield();
	}
}

static void *faults(void *p)
{
	return overrun(p) ? p : NULL;
}

/*
 * A fault in the guarded pool outside an API call holds no slot, so
 * fork does not wait for its report: the child may be copied while
 * another thread reports. Until a review it inherited the report's turn
 * taken, and its own fault in the pool spun for it for ever, every
 * signal blocked: the scenario's alarm ends it, "status 0xe". The
 * child's report must go through to the program's handler.
 */
int fork_beside_guard_report(void)
{
	if (!on_signal(SIGSEGV, leave_fault))
		return 2;
	char *victim = guarded();
	if (!victim) {
		fprintf(stderr, "no guarded object (no pool?)");
		return 2;
	}
	/* The reports (a few hundred bytes each) would fill the driver's
	 * pipe, which it stops reading past a line's worth (SIGPIPE). */
	int err = dup(2), quiet = open("/dev/null", O_WRONLY);
	if (err < 0 || quiet < 0 || dup2(quiet, 2) < 0)
		return 2;
	mm_malloc_test_hook = in_report_window;
	atomic_store(&report_armed, true);
	pthread_t t;
	if (pthread_create(&t, NULL, faults, victim) != 0)
		return 2;
	while (!atomic_load(&reporting))
		sched_yield();
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		char *p = guarded();
		_exit(!p ? 2 : overrun(p) ? 0 : 3);
	}
	atomic_store(&fork_done, true);
	guard_child(pid);
	void *r = NULL;
	pthread_join(t, &r);
	dup2(err, 2);
	if (!r) {
		fprintf(stderr, "the overrun did not fault");
		return 2;
	}
	fprintf(stderr, "waiting for the child, whose fault in the pool "
	                "is reported with the report's turn as fork copied "
	                "it");
	int st = -1;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0) {
		fprintf(stderr, "; the child's status: %#x", st);
		return 1;
	}
	return 0;
}
