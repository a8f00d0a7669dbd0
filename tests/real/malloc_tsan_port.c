/*
 * tests/real/malloc_tsan_port.c: malloc-tsan-test's direct checks of the
 * production port's contexts, locks and events (malloc/port_sync.c).
 * mm/ calls them only as it should, so its misuse checks (a thread-only
 * call under a lock or a pin, a lock taken against the rank order) and
 * an event's wake of a thread asleep in it with no timeout are never
 * reached through the API; this file calls the port itself (the library
 * is linked in, not preloaded).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include "malloc_tsan_test.h"
#include "proc_read.h"
#include "seccomp_util.h"

#define KEXPECT_CMP_LE_(a, b) KTEST_CMP_(a, <=, b, (void)0)

/* mm_port_can_sleep is false while this thread holds an mm lock or a pin
 * outside an API call (the pin holds its slot), and true again after;
 * mm_lock_held names only the holder. */
static mm_lock_t held_lock;
static atomic_int other_saw_held = -1;

static void *check_held(void *arg)
{
	(void)arg;
	atomic_store(&other_saw_held, mm_lock_held(&held_lock));
	return NULL;
}

KTEST(malloc_port, can_sleep_and_held_follow_locks_and_pins)
{
	setup();
	mm_lock_init(&held_lock, "test", MM_RANK_HEAP);
	KEXPECT(mm_port_can_sleep());
	KEXPECT(!mm_lock_held(&held_lock));
	unsigned long irq = mm_lock_acquire(&held_lock);
	KEXPECT(!mm_port_can_sleep());
	KEXPECT(mm_lock_held(&held_lock));
	pthread_t t;
	KASSERT(pthread_create(&t, NULL, check_held, NULL) == 0);
	pthread_join(t, NULL);
	int other_held = atomic_load(&other_saw_held);
	KEXPECT_EQ(other_held, 0);
	mm_lock_release(&held_lock, irq);
	KEXPECT(mm_port_can_sleep());
	KEXPECT(!mm_lock_held(&held_lock));
	struct mm_pin p = mm_port_pin();
	KEXPECT_EQ(p.state, 1); /* outside a call: the slow pin */
	KEXPECT(!mm_port_can_sleep());
	mm_port_unpin(p);
	KEXPECT(mm_port_can_sleep());
}

/* Takes a lock of rank `second` while holding one of rank `first`, in a
 * child whose stderr is out; returns the child's wait status. */
static int rank_child(enum mm_lock_rank first, enum mm_lock_rank second,
                      char *out, size_t outsz)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 2);
		mm_lock_t a, b;
		mm_lock_init(&a, "rank-a", first);
		mm_lock_init(&b, "rank-b", second);
		unsigned long ia = mm_lock_acquire(&a);
		unsigned long ib = mm_lock_acquire(&b);
		mm_lock_release(&b, ib);
		mm_lock_release(&a, ia);
		_exit(0);
	}
	close(fd[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < outsz && (r = read(fd[0], out + n, outsz - n - 1)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(fd[0]);
	int st = -1;
	waitpid(pid, &st, 0);
	return st;
}

/* A lock taken at a rank no higher than one this thread holds mm_panics
 * (the port's rank check), naming both (the held one by its rank: the
 * report said "a lock of rank N or above" with the taken lock's rank
 * until the library's own locks joined the check, malloc/locks.c); a
 * higher one is taken. */
KTEST(malloc_port, lock_rank_order_is_enforced)
{
	setup();
	static const struct {
		enum mm_lock_rank first, second;
		bool ok;
	} cases[] = {
	        {MM_RANK_CENTRAL, MM_RANK_HEAP, true},
	        {MM_RANK_HEAP, MM_RANK_CENTRAL, false},
	        {MM_RANK_HEAP, MM_RANK_HEAP, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[512];
		int st = rank_child(cases[i].first, cases[i].second, out,
		                    sizeof(out));
		char want[128];
		snprintf(want, sizeof(want),
		         "mm_malloc: mm lock rank-b (rank %d) taken while "
		         "holding an mm lock of rank %d (MM_RANK_HEAP)",
		         cases[i].second, cases[i].first);
		if (cases[i].ok) {
			KEXPECT_EQ(st, 0);
			continue;
		}
		KEXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
		if (!strstr(out, want))
			ktest_diag("rank %d then %d: stderr: %s",
			           cases[i].first, cases[i].second, out);
		KEXPECT(strstr(out, want) != NULL);
	}
}

/* Whether thread tid sleeps (state S in its /proc stat): the waiter is
 * in its futex wait. */
static bool task_sleeping(pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	if (proc_read(path, buf, sizeof(buf)) <= 0)
		return false;
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

static mm_event_t event;
static atomic_int waiter_tid;
static atomic_int waiter_moved = -1;

static void *event_waiter(void *arg)
{
	(void)arg;
	uint64_t seen = mm_event_prepare(&event);
	atomic_store(&waiter_tid, (int)syscall(SYS_gettid));
	/* No timeout: only the wake ends this wait. */
	atomic_store(&waiter_moved, mm_event_wait(&event, seen, UINT64_MAX));
	return NULL;
}

/* A wake reaches a thread asleep in mm_event_wait with no timeout
 * (UINT64_MAX: the deadline must not wrap into the past), which returns
 * true; a wake it missed would leave it asleep, and the test would hang
 * until make test-malloc-tsan's timeout. A wait with nothing to wake it
 * returns false at its deadline. */
KTEST(malloc_port, event_wake_reaches_a_sleeping_waiter)
{
	setup();
	mm_event_init(&event, "test");
	pthread_t t;
	KASSERT(pthread_create(&t, NULL, event_waiter, NULL) == 0);
	int tid;
	while ((tid = atomic_load(&waiter_tid)) == 0)
		sched_yield();
	while (!task_sleeping(tid) && atomic_load(&waiter_moved) < 0)
		sched_yield();
	mm_event_wake(&event);
	pthread_join(t, NULL);
	int moved = atomic_load(&waiter_moved);
	KEXPECT_EQ(moved, 1);
	uint64_t seen = mm_event_prepare(&event);
	KEXPECT(!mm_event_wait(&event, seen, 1000000));
}

/*
 * The port's clocks under a seccomp filter that refuses clock_gettime of
 * CLOCK_THREAD_CPUTIME_ID with EPERM (a sandbox's filter traced from a
 * program's own calls omits it: the vDSO serves the program's wall clocks
 * without a system call, never that one). The thread clock then reads
 * the monotonic one: a plausible CPU time (never past the monotonic
 * clock, never decreasing), and errno as it was. Until a review its
 * timespec was left unset, and the stack's earlier contents (filled here
 * with 0x5a) came back as the time.
 */
struct refused_clock {
	int installed;
	uint64_t before, a, now, b; /* before: the monotonic clock */
	int err;
};

static __attribute__((noinline)) void dirty_stack(void)
{
	volatile unsigned char junk[4096];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = 0x5a;
}

static void *refused_clock_thread(void *arg)
{
	struct refused_clock *r = arg;
	struct sock_filter code[] = {
	        SECCOMP_X86_64_NR,
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clock_gettime, 0, 3),
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	                 offsetof(struct seccomp_data, args[0])),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, CLOCK_THREAD_CPUTIME_ID, 0,
	                 1),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct timespec ts;
	r->installed =
	        seccomp_install(code, sizeof(code) / sizeof(code[0]), 0) == 0 &&
	        syscall(SYS_clock_gettime, CLOCK_THREAD_CPUTIME_ID, &ts) ==
	                -1 &&
	        errno == EPERM;
	if (!r->installed)
		return NULL;
	dirty_stack();
	errno = EDOM;
	r->before = mm_port_now_ns();
	r->a = mm_port_thread_cpu_ns();
	r->now = mm_port_now_ns();
	dirty_stack();
	r->b = mm_port_thread_cpu_ns();
	r->err = errno;
	return NULL;
}

KTEST(malloc_port, clocks_survive_a_refused_clock_gettime)
{
	struct refused_clock r = {0};
	pthread_t t;
	KASSERT(pthread_create(&t, NULL, refused_clock_thread, &r) == 0);
	pthread_join(t, NULL);
	if (!r.installed)
		KTEST_SKIP("no seccomp filter here");
	ktest_diag("thread clock %llu then %llu, monotonic %llu",
	           (unsigned long long)r.a, (unsigned long long)r.b,
	           (unsigned long long)r.now);
	/* The monotonic clock's reading, not one standing still (at 0, a
	 * background thread's pacing would charge it nothing). */
	KEXPECT_CMP_LE_(r.before, r.a);
	KEXPECT_CMP_LE_(r.a, r.now);
	KEXPECT_CMP_LE_(r.a, r.b);
	KEXPECT_CMP_LE_(r.b, mm_port_now_ns());
	KEXPECT_EQ(r.err, EDOM);
}
