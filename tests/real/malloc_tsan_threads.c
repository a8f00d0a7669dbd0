/*
 * tests/real/malloc_tsan_threads.c: the threads of make test-malloc-tsan
 * beside its workers (malloc_tsan_test.c): malloc_trim and mallinfo2 in
 * a loop, forks under load, short-lived threads that free after giving
 * their slot back; and a test of more threads than slots, all alive at
 * once, so that the later ones share (malloc/slots.c, "claim").
 */
#define _GNU_SOURCE
#include "malloc_tsan_test.h"

/* malloc_trim and mallinfo2 in a loop while the workers run. */
void *trimmer_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop_side)) {
		mmt_malloc_trim(0);
		struct mallinfo2 mi = mmt_mallinfo2();
		if (mi.uordblks > mi.arena)
			side_failed("mallinfo2: more in use than arena", NULL);
		sched_yield();
	}
	return NULL;
}

/* The child of a fork under load: its heap must work. It must start no
 * thread (TSan's die_after_fork), so the background threads stay
 * off. */
static void fork_child_check(struct obj *o)
{
	atomic_store(&mm_malloc_bg_state, MM_BG_NOT_YET);
	struct stress_failures f = {0};
	uint64_t rng = (uint64_t)getpid() * 2654435761u + 1;
	unsigned next_class = 0;
	struct obj mine[8];
	for (int i = 0; i < 8; i++)
		obj_new(&mine[i], &rng, &next_class, &f);
	for (int i = 0; i < 8; i++)
		obj_free(&mine[i], &f);
	obj_free(o, &f);
	_exit(f.n == 0 ? 0 : 1);
}

/* Forks FORKS times while the others run, each time with an object
 * live, which the child checks and frees (and the parent, its copy). */
void *forker_main(void *arg)
{
	(void)arg;
	uint64_t rng = 77;
	unsigned next_class = 5;
	struct stress_failures f = {0};
	for (int i = 0; i < FORKS; i++) {
		struct obj o;
		obj_new(&o, &rng, &next_class, &f);
		pid_t pid = fork();
		if (pid == 0)
			fork_child_check(&o);
		int status = 0;
		if (pid < 0 || waitpid(pid, &status, 0) != pid ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			side_failed("fork's child failed", NULL);
		obj_free(&o, &f);
		usleep(20000);
	}
	if (f.n)
		side_failed(f.first, NULL);
	return NULL;
}

void late_free(void *p)
{
	void *q = mmt_malloc(48);
	mmt_free(q);
	mmt_free(p);
}

/* A short-lived thread: a few allocations, one left to its late
 * destructor, one handed to a worker, then exit. */
static void *short_main(void *arg)
{
	uint64_t rng = (uintptr_t)arg * 7919 + 3;
	unsigned next_class = (unsigned)(uintptr_t)arg;
	struct stress_failures f = {0};
	struct obj o[6];
	for (int i = 0; i < 6; i++)
		obj_new(&o[i], &rng, &next_class, &f);
	for (int i = 0; i < 4; i++)
		obj_free(&o[i], &f);
	if (!stress_inbox_put(&inboxes[(uintptr_t)arg % WORKERS], &o[4]))
		obj_free(&o[4], &f);
	pthread_setspecific(late_key, o[5].p);
	if (f.n)
		side_failed(f.first, NULL);
	return NULL;
}

void *short_spawner_main(void *arg)
{
	(void)arg;
	for (uintptr_t i = 0; i < SHORT_THREADS; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, short_main, (void *)i) == 0)
			pthread_join(t, NULL);
		else
			side_failed("pthread_create", NULL);
	}
	return NULL;
}

/* ---- More threads than slots -------------------------------------------- */

enum { CROWD = MM_MAX_CPUS + 8, CROWD_OPS = 300 };

static pthread_barrier_t crowd_barrier;
static _Atomic(struct obj *) crowd_handoff[CROWD];
static atomic_uint crowd_owners;

/* One of CROWD threads, all alive at once: the later ones share slots
 * (slots.c, "claim"). Each frees what its neighbour handed it. */
static void *crowd_main(void *arg)
{
	uintptr_t me = (uintptr_t)arg;
	uint64_t rng = me * 104729 + 11;
	unsigned next_class = (unsigned)me;
	struct stress_failures f = {0};
	static struct obj handed[CROWD];
	obj_new(&handed[me], &rng, &next_class, &f);
	pthread_barrier_wait(&crowd_barrier);
	if (me == 0)
		atomic_store(&crowd_owners, mm_malloc_threads());
	atomic_store(&crowd_handoff[(me + 1) % CROWD], &handed[me]);
	for (int i = 0; i < CROWD_OPS; i++) {
		struct obj o;
		obj_new(&o, &rng, &next_class, &f);
		obj_free(&o, &f);
	}
	pthread_barrier_wait(&crowd_barrier);
	obj_free(atomic_load(&crowd_handoff[me]), &f);
	if (f.n)
		side_failed(f.first, NULL);
	return NULL;
}

KTEST(malloc_tsan, threads_share_slots_when_they_outnumber_them)
{
	setup();
	pthread_t t[CROWD];
	pthread_barrier_init(&crowd_barrier, NULL, CROWD);
	for (uintptr_t i = 0; i < CROWD; i++)
		KASSERT_EQ(pthread_create(&t[i], NULL, crowd_main, (void *)i),
		           0);
	for (int i = 0; i < CROWD; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&crowd_barrier);
	KEXPECT(atomic_load(&crowd_owners) >= CROWD);
	if (side_fail.n)
		ktest_fail_at(__FILE__, __LINE__, "%lu failures, first: %s",
		              side_fail.n, side_fail.first);
}
