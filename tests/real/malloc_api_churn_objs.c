/*
 * tests/real/malloc_api_churn_objs.c: what malloc_api_churn.c's threads
 * allocate and where it goes (malloc_api_churn.h): objects of every kind
 * the API makes, each with a pattern of its own that is checked before
 * it is freed or reallocated; three keeper threads that free what others
 * hand them; graves, where a thread leaves an object for a later thread
 * (or the checkpoint) to free; and the checkpoint's marks.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "malloc_api_churn.h"
#include "malloc_api_test.h"
#include "proc_read.h"

/* ---- Objects with a pattern of their own ----------------------------------
 */

atomic_ulong churn_bad, churn_nulls;

uint64_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005u + 1442695040888963407u;
	return *s >> 17;
}

/* The bytes of an object that carry its pattern: all of a small one; a
 * large one's first and last 2 KiB and one byte a page between, so that
 * its pages need not all be touched. */
static bool patterned(size_t i, size_t n)
{
	return n <= 8192 || i < 2048 || i >= n - 2048 || i % 4096 == 0;
}

static unsigned char pat(unsigned tag, size_t i)
{
	return (unsigned char)(tag * 7 + (i >> 6) + 1);
}

static void obj_fill(struct obj *o)
{
	for (size_t i = 0; i < o->n;
	     i += patterned(i, o->n) ? 1 : 4096 - i % 4096)
		o->p[i] = pat(o->tag, i);
}

/* Counts o bad unless its first keep bytes hold its pattern. */
static void obj_check(const struct obj *o, size_t keep)
{
	for (size_t i = 0; i < keep;
	     i += patterned(i, o->n) ? 1 : 4096 - i % 4096)
		if (o->p[i] != pat(o->tag, i)) {
			atomic_fetch_add(&churn_bad, 1);
			return;
		}
}

void obj_free(struct obj *o)
{
	if (!o->p)
		return;
	obj_check(o, o->n);
	free(o->p);
	o->p = NULL;
}

/* A fresh object of a random kind and size into o (NULL if refused). */
void obj_new(struct obj *o, uint64_t *s, unsigned tag)
{
	unsigned kind = (unsigned)(rnd(s) % 16);
	size_t align = 0;
	o->tag = tag;
	if (kind < 9)
		o->n = 1 + rnd(s) % 1024;
	else if (kind < 11)
		o->n = 1024 + rnd(s) % (63 << 10);
	else if (kind == 11)
		o->n = (64 << 10) + rnd(s) % (2 << 20);
	else
		o->n = 1 + rnd(s) % 20000;
	if (kind == 12) {
		align = (size_t)16 << rnd(s) % 13; /* up to 64 KiB */
		void *p = NULL;
		o->p = posix_memalign(&p, align, o->n) == 0 ? p : NULL;
	} else if (kind == 13) {
		align = (size_t)8 << rnd(s) % 10;
		o->n = (o->n + align - 1) & ~(align - 1);
		o->p = aligned_alloc(align, o->n);
	} else if (kind == 14) {
		o->p = calloc(1, o->n);
		for (size_t i = 0; o->p && i < o->n; i += 61)
			if (o->p[i]) {
				atomic_fetch_add(&churn_bad, 1);
				break;
			}
	} else {
		o->p = malloc(o->n);
	}
	if (!o->p) {
		atomic_fetch_add(&churn_nulls, 1);
		return;
	}
	if (align && (uintptr_t)o->p % align)
		atomic_fetch_add(&churn_bad, 1);
	obj_fill(o);
}

/* Reallocs o to a random size, up or down; what it kept must have kept
 * its pattern. */
void obj_realloc(struct obj *o, uint64_t *s)
{
	size_t n = rnd(s) % 4 == 0 ? (64 << 10) + rnd(s) % (1 << 20)
	                           : 1 + rnd(s) % 6000;
	unsigned char *q = realloc(o->p, n);
	if (!q) {
		atomic_fetch_add(&churn_nulls, 1);
		return;
	}
	struct obj was = {q, o->n, o->tag};
	obj_check(&was, n < o->n ? n : o->n);
	o->p = q;
	o->n = n;
	obj_fill(o);
}

/* ---- Long-lived threads that free what others allocated -------------------
 */

enum { KEEPERS = 3, INBOX = 256, GRAVES = 512 };

struct keeper {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct obj box[INBOX];
	unsigned head, count;
	bool stop;
	pthread_t thread;
};

static struct keeper keepers[KEEPERS];
static atomic_ulong handed; /* objects handed and not yet freed */

/* Objects left by threads for later threads (or the checkpoint) to free:
 * most of them a thread gone allocated. */
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static struct obj graves[GRAVES];

static void *keeper_main(void *arg)
{
	struct keeper *k = arg;
	uint64_t s = (uintptr_t)arg;
	pthread_mutex_lock(&k->lock);
	for (;;) {
		while (!k->count && !k->stop)
			pthread_cond_wait(&k->cond, &k->lock);
		if (!k->count)
			break;
		struct obj o = k->box[k->head];
		k->head = (k->head + 1) % INBOX;
		k->count--;
		pthread_cond_broadcast(&k->cond);
		pthread_mutex_unlock(&k->lock);
		if (rnd(&s) % 4 == 0)
			obj_realloc(&o, &s);
		obj_free(&o);
		atomic_fetch_sub(&handed, 1);
		pthread_mutex_lock(&k->lock);
	}
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

/* Gives o to keeper k, waiting for room. */
void hand_to(unsigned k, struct obj *o)
{
	struct keeper *kp = &keepers[k % KEEPERS];
	if (!o->p)
		return;
	atomic_fetch_add(&handed, 1);
	pthread_mutex_lock(&kp->lock);
	while (kp->count == INBOX)
		pthread_cond_wait(&kp->cond, &kp->lock);
	kp->box[(kp->head + kp->count) % INBOX] = *o;
	kp->count++;
	pthread_cond_broadcast(&kp->cond);
	pthread_mutex_unlock(&kp->lock);
	o->p = NULL;
}

/* Puts o in a random grave and frees the object it displaces. */
void bury(struct obj *o, uint64_t *s)
{
	unsigned g = (unsigned)(rnd(s) % GRAVES);
	pthread_mutex_lock(&grave_lock);
	struct obj old = graves[g];
	graves[g] = *o;
	pthread_mutex_unlock(&grave_lock);
	o->p = NULL;
	obj_free(&old);
}

static unsigned nkeepers; /* started */

bool keepers_start(void)
{
	for (nkeepers = 0; nkeepers < KEEPERS; nkeepers++) {
		struct keeper *k = &keepers[nkeepers];
		pthread_mutex_init(&k->lock, NULL);
		pthread_cond_init(&k->cond, NULL);
		k->head = k->count = 0;
		k->stop = false;
		if (pthread_create(&k->thread, NULL, keeper_main, k) != 0) {
			keepers_stop(); /* those started */
			return false;
		}
	}
	return true;
}

void keepers_stop(void)
{
	for (unsigned k = 0; k < nkeepers; k++) {
		pthread_mutex_lock(&keepers[k].lock);
		keepers[k].stop = true;
		pthread_cond_broadcast(&keepers[k].cond);
		pthread_mutex_unlock(&keepers[k].lock);
		pthread_join(keepers[k].thread, NULL);
	}
	nkeepers = 0;
}

/* ---- Checkpoints ----------------------------------------------------------
 */

static size_t rss_bytes(void)
{
	char buf[128];
	unsigned long pages = 0, res = 0;
	if (proc_read("/proc/self/statm", buf, sizeof(buf)) <= 0 ||
	    sscanf(buf, "%lu %lu", &pages, &res) != 2)
		return 0;
	return res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Frees every grave (checking it) and waits until the keepers freed all
 * they were handed; then reads the marks, the resident set once every
 * free page went back (malloc_trim: else it is the heap's free pages the
 * scavenger has not yet reached, 90 to 130 MiB here, whatever the
 * scavenger's pace made it). No short thread runs. */
struct mark checkpoint(void)
{
	for (unsigned g = 0; g < GRAVES; g++)
		obj_free(&graves[g]);
	while (atomic_load(&handed))
		sched_yield();
	size_t in_use = mallinfo2().uordblks;
	malloc_trim(0);
	return (struct mark){in_use, rss_bytes(), threads_owned()};
}
