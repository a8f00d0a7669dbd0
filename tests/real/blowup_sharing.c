/*
 * tests/real/blowup_sharing.c: false sharing by an allocator, Hoard's
 * cache-thrash and cache-scratch (Berger et al., 2000), for
 * tests/real/blowup.c (blowup.h).
 *
 * Two threads, on CPUs 0 and 1, each loop: malloc(8), 1000 writes to the
 * object, free. Active false sharing (thrash): the allocator hands the
 * two threads objects on one cache line by itself. Passive (scratch): the
 * main thread allocates two 8-byte objects one after the other (a line
 * apart at most in any size-class allocator) and gives one to each
 * thread, which frees it before its loop; an allocator that reuses a
 * freed object on the freeing thread hands each thread the line it was
 * given, and their writes thrash it. Reported: whether the two threads'
 * first objects shared a line, and ns per write against the same loop
 * over two objects of the program's own, a line apart (no sharing) and
 * on one line (the machine's cost of sharing, sharing_ratio).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "blowup.h"

enum { WRITES = 1000, LINE = 64 };

struct sharer {
	unsigned cpu, iters;
	volatile char *given; /* scratch: freed first; NULL: none */
	volatile char *own;   /* the baseline's object: no malloc */
	uintptr_t first_line; /* the line of its first object */
};

static pthread_barrier_t start;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *sharer_thread(void *arg)
{
	struct sharer *s = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(s->cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (s->given)
		free((void *)s->given);
	pthread_barrier_wait(&start);
	for (unsigned i = 0; i < s->iters; i++) {
		volatile char *p = s->own ? s->own : malloc(8);
		if (!p)
			abort();
		if (i == 0)
			s->first_line = (uintptr_t)p / LINE;
		for (unsigned k = 0; k < WRITES; k++)
			p[0]++;
		if (!s->own)
			free((void *)p);
	}
	return NULL;
}

/* Whose objects the loops write: the allocator's, or the program's own,
 * a line apart or on one line (the machine's cost of sharing). */
enum own { OWN_NONE, OWN_APART, OWN_TOGETHER };

/* Runs the two threads; returns ns per write (the slower thread's is in
 * the wall time); same_line says whether their first objects shared a
 * line. */
static double run_pair(bool passive, enum own own_mode, unsigned iters,
                       bool *same_line)
{
	static _Alignas(LINE) char own[2][LINE];
	struct sharer s[2] = {{0, iters, NULL, NULL, 0},
	                      {1, iters, NULL, NULL, 0}};
	for (int i = 0; i < 2; i++) {
		if (own_mode != OWN_NONE)
			s[i].own =
			        own_mode == OWN_APART ? own[i] : own[0] + 8 * i;
		else if (passive && !(s[i].given = malloc(8)))
			abort();
	}
	pthread_t t[2];
	pthread_barrier_init(&start, NULL, 3);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, sharer_thread, &s[i]);
	pthread_barrier_wait(&start);
	double t0 = now_s();
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	double ns = (now_s() - t0) * 1e9 / ((double)iters * WRITES);
	pthread_barrier_destroy(&start);
	*same_line = s[0].first_line == s[1].first_line;
	return ns;
}

void blowup_sharing(bool passive, unsigned iters)
{
	bool same, ignored;
	double apart = run_pair(false, OWN_APART, iters, &ignored);
	double together = run_pair(false, OWN_TOGETHER, iters, &ignored);
	double ns = run_pair(passive, OWN_NONE, iters, &same);
	printf("%s iters=%u same_line=%d ns_per_write=%.2f "
	       "apart_ns=%.2f together_ns=%.2f ratio=%.2f "
	       "sharing_ratio=%.2f\n",
	       passive ? "scratch" : "thrash", iters, same, ns, apart, together,
	       ns / apart, together / apart);
}
