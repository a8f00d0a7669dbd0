/*
 * tests/real/malloc_api_diff_shadow.c: the differential test's shadow
 * table (malloc_api_diff.c says what the test is). It holds every live
 * object's bytes, of all threads and queues, and checks each object the
 * operations make or touch: alignment, usable size, no overlap with any
 * live object, its fill pattern, errno after free. It also moves objects
 * between a thread's tables and other threads' queues, and frees what a
 * thread holds at the end. Each check returns NULL or what went wrong.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "malloc_api_diff.h"

/* glibc's second name for free (malloc.c), used now and then; exported,
 * not declared. */
extern void __libc_free(void *p);

/* Every live object's bytes [lo, hi), of all threads and queues. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uintptr_t lo, hi;
} reg[MAX_THREADS * (2 * MAXLIVE + QCAP + BURST) + 16];
static size_t nreg;

/* The pattern's word j (bytes 8j to 8j + 7, little-endian): written and
 * checked a word at a time, as a byte loop took seconds over the large
 * objects. */
static uint64_t pattern_word(uint32_t tag, size_t j)
{
	return ((uint64_t)tag << 32 | tag) ^ (j * 0x9e3779b97f4a7c15ull);
}

unsigned char diff_pattern(uint32_t tag, size_t i)
{
	return (unsigned char)(pattern_word(tag, i / 8) >> (8 * (i % 8)));
}

static void fill(unsigned char *p, uint32_t tag, size_t n)
{
	uint64_t *w = (uint64_t *)p; /* p is 16-byte aligned */
	for (size_t j = 0; j < n / 8; j++)
		w[j] = pattern_word(tag, j);
	for (size_t i = n & ~(size_t)7; i < n; i++)
		p[i] = diff_pattern(tag, i);
}

/* The first byte of p's first n that is not its pattern (the zero
 * pattern if zero), or n. */
static size_t first_wrong(const unsigned char *p, uint32_t tag, size_t n,
                          bool zero)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t j = 0;
	while (j < n / 8 && w[j] == (zero ? 0 : pattern_word(tag, j)))
		j++;
	for (size_t i = 8 * j; i < n; i++)
		if (p[i] != (zero ? 0 : diff_pattern(tag, i)))
			return i;
	return n;
}

/* Swaps in the other table and generator (diff_thread). */
void diff_swap(struct diff_thread *t)
{
	struct diff_obj *live = t->live;
	int nlive = t->nlive;
	uint64_t rng = t->rng;
	t->live = t->other, t->nlive = t->nother, t->rng = t->rng_other;
	t->other = live, t->nother = nlive, t->rng_other = rng;
}

uint64_t diff_rand(struct diff_thread *t)
{
	/* xorshift64* */
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->rng * 2685821657736338717ull;
}

/* Adds [p, p + n) to the live objects; what it overlaps, or NULL. */
static const char *reg_add(struct diff_thread *t, void *p, size_t n)
{
	uintptr_t lo = (uintptr_t)p, hi = lo + (n ? n : 1);
	const char *e = NULL;
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < nreg && !e; i++)
		if (lo < reg[i].hi && reg[i].lo < hi) {
			snprintf(t->why, sizeof(t->why),
			         "%p (%zu usable) overlaps live object "
			         "[%#lx, %#lx)",
			         p, n, (unsigned long)reg[i].lo,
			         (unsigned long)reg[i].hi);
			e = t->why;
		}
	if (!e && nreg < sizeof(reg) / sizeof(reg[0]))
		reg[nreg++].lo = lo, reg[nreg - 1].hi = hi;
	else if (!e)
		e = "the live-object table is full (a test bug)";
	pthread_mutex_unlock(&reg_lock);
	return e;
}

/* Drops p from the live objects: before it is freed, so that an
 * allocation that returns it meanwhile is not taken for an overlap. */
static void reg_del(void *p)
{
	pthread_mutex_lock(&reg_lock);
	for (size_t i = 0; i < nreg; i++)
		if (reg[i].lo == (uintptr_t)p) {
			reg[i] = reg[--nreg];
			break;
		}
	pthread_mutex_unlock(&reg_lock);
}

/* Checks a new object o (o->p not NULL) and fills its usable bytes with
 * its pattern: alignment, usable size, overlap, zeros if zeroed. */
const char *diff_adopt(struct diff_thread *t, struct diff_obj *o, bool zeroed)
{
	size_t usable = malloc_usable_size(o->p);
	DCHECK(t, (uintptr_t)o->p % o->align == 0,
	       "%p not aligned to %zu (size %zu)", (void *)o->p, o->align,
	       o->size);
	DCHECK(t, usable >= o->size, "%p: usable size %zu < size %zu",
	       (void *)o->p, usable, o->size);
	size_t i = zeroed ? first_wrong(o->p, 0, o->size, true) : o->size;
	DCHECK(t, i == o->size, "%p (size %zu): byte %zu is %#x, not 0",
	       (void *)o->p, o->size, i, o->p[i]);
	const char *e = reg_add(t, o->p, usable);
	if (e)
		return e;
	o->usable = usable;
	o->tag = (uint32_t)diff_rand(t);
	fill(o->p, o->tag, usable);
	return NULL;
}

/* Checks o's first n bytes hold its pattern. */
const char *diff_check_prefix(struct diff_thread *t, const struct diff_obj *o,
                              size_t n)
{
	size_t i = first_wrong(o->p, o->tag, n, false);
	DCHECK(t, i == n,
	       "%p (size %zu, usable %zu, align %zu): byte %zu is %#x, not "
	       "%#x",
	       (void *)o->p, o->size, o->usable, o->align, i, o->p[i],
	       diff_pattern(o->tag, i));
	return NULL;
}

/* Checks o whole (pattern, usable size unchanged). */
const char *diff_check(struct diff_thread *t, const struct diff_obj *o)
{
	size_t usable = malloc_usable_size(o->p);
	DCHECK(t, usable == o->usable, "%p: usable size %zu, was %zu",
	       (void *)o->p, usable, o->usable);
	return diff_check_prefix(t, o, o->usable);
}

/* Checks o and frees it (it leaves the live objects first), by
 * __libc_free if libc. */
const char *diff_free_as(struct diff_thread *t, struct diff_obj *o, bool libc)
{
	const char *e = diff_check(t, o);
	if (e)
		return e;
	reg_del(o->p);
	errno = ERRNO_MARK;
	if (libc)
		__libc_free(o->p);
	else
		free(o->p);
	DCHECK(t, errno == ERRNO_MARK, "free(%p) set errno to %d", (void *)o->p,
	       errno);
	return NULL;
}

const char *diff_free(struct diff_thread *t, struct diff_obj *o)
{
	return diff_free_as(t, o, diff_rand(t) % 8 == 0);
}

/* Drops o from the live objects before a call that may move or free it;
 * diff_adopt (it moved, or was resized) or diff_keep (it failed) after. */
void diff_release(struct diff_obj *o)
{
	reg_del(o->p);
}

const char *diff_keep(struct diff_thread *t, struct diff_obj *o)
{
	const char *e = diff_check(t, o);
	return e ? e : reg_add(t, o->p, o->usable);
}

/* Puts o into t's table, or frees it if the table is full. */
const char *diff_hold(struct diff_thread *t, struct diff_obj *o)
{
	if (t->nlive == MAXLIVE)
		return diff_free(t, o);
	t->live[t->nlive++] = *o;
	return NULL;
}

/* Removes and returns object i of t's table. */
struct diff_obj diff_take(struct diff_thread *t, int i)
{
	struct diff_obj o = t->live[i];
	t->live[i] = t->live[--t->nlive];
	return o;
}

/* Hands a random object of t to another thread's queue; frees it if the
 * queue is full (kept, it would make t's table hold what the
 * interleaving decided). */
const char *diff_send(struct diff_thread *t)
{
	if (!t->nlive)
		return NULL;
	int i = (int)(diff_rand(t) % (uint64_t)t->nlive);
	unsigned n = diff_nthreads;
	unsigned to = (t->id + 1 + (unsigned)(diff_rand(t) % (n - 1))) % n;
	bool libc = diff_rand(t) % 8 == 0; /* drawn whether used or not */
	struct diff_thread *d = &diff_threads[to];
	struct diff_obj o = diff_take(t, i);
	pthread_mutex_lock(&d->qlock);
	bool sent = d->nq < QCAP;
	if (sent)
		d->q[d->nq++] = o;
	pthread_mutex_unlock(&d->qlock);
	return sent ? NULL : diff_free_as(t, &o, libc);
}

/* Takes what other threads handed t: each checked, held in t's table of
 * received objects, and followed by one operation on that table. */
const char *diff_receive(struct diff_thread *t)
{
	struct diff_obj got[QCAP];
	const char *e = NULL;
	pthread_mutex_lock(&t->qlock);
	int n = t->nq;
	memcpy(got, t->q, (size_t)n * sizeof(got[0]));
	t->nq = 0;
	pthread_mutex_unlock(&t->qlock);
	if (!n)
		return NULL;
	diff_swap(t);
	for (int i = 0; i < n && !e; i++) {
		e = diff_check(t, &got[i]);
		if (!e)
			e = diff_hold(t, &got[i]);
		if (!e)
			e = diff_op_received(t);
	}
	diff_swap(t);
	return e;
}

/* Frees every object of t: its tables and its queue. */
const char *diff_free_all(struct diff_thread *t)
{
	const char *e = diff_receive(t);
	for (int side = 0; side < 2; side++, diff_swap(t))
		while (!e && t->nlive) {
			struct diff_obj o = diff_take(t, t->nlive - 1);
			e = diff_free(t, &o);
		}
	return e;
}
