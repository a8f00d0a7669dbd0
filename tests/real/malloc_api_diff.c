/*
 * tests/real/malloc_api_diff.c: a randomized differential test of the
 * whole allocation API against glibc 2.36's documented conventions.
 *
 * NTHREADS threads each run a seeded random sequence of malloc, calloc,
 * realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign,
 * valloc, pvalloc and malloc_usable_size (diff_ops.c), with sizes at the
 * edges (0, 1, each size class and one either side, pages, impossible
 * sizes, n * size overflows) and alignments from 0 to many pages (powers
 * of two or not). A thread hands objects to another through its queue,
 * which frees, resizes or keeps them, in a table of their own
 * (diff_thread says why). A shadow table (this file) holds
 * every live object (address, requested size, alignment, fill pattern);
 * after each operation the object it made or touched is checked: its
 * alignment, usable size >= size, no overlap with any live object, its
 * whole pattern (the old prefix after a realloc, zeros after calloc),
 * and errno and the return value as glibc documents them. Each thread's
 * objects are all checked every CHECK_EVERY operations. At the end all is
 * freed and mallinfo2 must show the objects gone: read after malloc_trim
 * (with no background thread, before it too), once, with no time bound.
 *
 * It runs in fresh processes (run_scenario), once as is, once with
 * MM_MALLOC_MEMBARRIER=0, once with MM_MALLOC_BACKGROUND=0 and once under
 * a memory limit (MALLOC_DIFF_DATA_MB=48: RLIMIT_DATA 48 MiB above what
 * the process has at the start), where any allocation may fail with
 * ENOMEM, a failed realloc must leave its object intact, some must fail,
 * and nothing may leak. The
 * operations run in ROUNDS rounds, each of new threads that take over
 * the objects (and queues) the last round's threads left.
 * MALLOC_DIFF_OPS (operations a thread, default DEFAULT_OPS: a few
 * seconds in all), MALLOC_DIFF_THREADS (default NTHREADS; up to
 * MAX_THREADS, past the 63 slots, so that threads share one) and
 * MALLOC_DIFF_SEED (default 1) choose the run; a failure names the seed,
 * the thread and the operation, and the same seed and thread count run
 * that thread's own operations again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "malloc_api_diff.h"
#include "proc_read.h"

/* glibc's second name for free (malloc.c), used now and then; exported,
 * not declared. */
extern void __libc_free(void *p);

struct diff_thread diff_threads[MAX_THREADS];
unsigned diff_nthreads;
bool diff_data_limited;
static atomic_bool stop;

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
static const char *receive(struct diff_thread *t)
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
static const char *free_all(struct diff_thread *t)
{
	const char *e = receive(t);
	for (int side = 0; side < 2; side++, diff_swap(t))
		while (!e && t->nlive) {
			struct diff_obj o = diff_take(t, t->nlive - 1);
			e = diff_free(t, &o);
		}
	return e;
}

static pthread_barrier_t done_sending;
static bool last_round;

/* A round of t's operations; in the last round it frees all it holds
 * once no thread sends any more. Its objects and queue are left to the
 * next round's thread otherwise: objects of a thread that exited. */
static void *worker(void *arg)
{
	struct diff_thread *t = arg;
	const char *e = NULL;
	long end = t->op + t->nops / ROUNDS;
	for (; t->op < end && !e && !atomic_load(&stop); t->op++) {
		e = receive(t);
		if (!e)
			e = diff_op(t);
		for (int i = 0; !e && t->op % CHECK_EVERY == 0 && i < t->nlive;
		     i++)
			e = diff_check(t, &t->live[i]);
		for (int i = 0; !e && t->op % CHECK_EVERY == 0 && i < t->nother;
		     i++)
			e = diff_check(t, &t->other[i]);
	}
	if (e)
		atomic_store(&stop, true);
	pthread_barrier_wait(&done_sending);
	if (!e && last_round)
		e = free_all(t);
	if (e && e != t->why)
		snprintf(t->why, sizeof(t->why), "%s", e);
	return (void *)e;
}

static unsigned long env_num(const char *name, unsigned long dflt)
{
	const char *v = getenv(name);
	return v && *v ? strtoul(v, NULL, 0) : dflt;
}

/* Starts the threads of a round. */
static void start_round(unsigned long seed, unsigned long nops, int round)
{
	unsigned n = diff_nthreads;
	last_round = round == ROUNDS - 1;
	pthread_barrier_init(&done_sending, NULL, n);
	for (unsigned i = 0; i < n; i++) {
		struct diff_thread *t = &diff_threads[i];
		if (round == 0) {
			t->id = i;
			t->nops = (long)nops;
			t->rng = (seed + 1) * 0x9e3779b97f4a7c15ull ^ (i + 1);
			t->rng_other = t->rng ^ 0xd1b54a32d192ed03ull;
			t->live = t->own, t->other = t->got;
			t->nlive = t->nother = 0;
			pthread_mutex_init(&t->qlock, NULL);
		}
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstack(&attr, t->stack, STACK_BYTES);
		int err = pthread_create(&t->th, &attr, worker, t);
		pthread_attr_destroy(&attr);
		if (err) { /* the others would wait for it for ever */
			fprintf(stderr, "diff: pthread_create: %s\n",
			        strerror(err));
			exit(1);
		}
	}
}

/* Each thread's stack, mapped before the memory limit (glibc maps a
 * thread's stack at its creation, which the limit would refuse). */
static bool map_stacks(void)
{
	for (unsigned i = 0; i < diff_nthreads; i++) {
		void *st = mmap(NULL, STACK_BYTES, PROT_READ | PROT_WRITE,
		                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (st == MAP_FAILED)
			return false;
		diff_threads[i].stack = st;
	}
	return true;
}

/* Runs the rounds; 0, or 1 with what went wrong on stderr. */
static int run_threads(unsigned long seed, unsigned long nops)
{
	int failed = 0;
	for (int round = 0; round < ROUNDS && !failed; round++) {
		start_round(seed, nops, round);
		for (unsigned i = 0; i < diff_nthreads; i++) {
			void *e;
			pthread_join(diff_threads[i].th, &e);
			if (!e)
				continue;
			fprintf(stderr,
			        "diff: seed %lu, %u threads, thread %u, "
			        "operation %ld: %s\n",
			        seed, diff_nthreads, i, diff_threads[i].op,
			        (const char *)e);
			failed = 1;
		}
		pthread_barrier_destroy(&done_sending);
	}
	return failed;
}

/* This process's data size (VmData), in bytes; 0 if unknown. */
static size_t data_size(void)
{
	char buf[4096];
	if (proc_read("/proc/self/status", buf, sizeof(buf)) <= 0)
		return 0;
	const char *p = strstr(buf, "\nVmData:");
	return p ? strtoul(p + 8, NULL, 10) << 10 : 0;
}

/* MALLOC_DIFF_DATA_MB=n: RLIMIT_DATA n MiB above what the process has
 * now (the threads' stacks count too), so that the heap's growth fails
 * and allocations of every kind meet ENOMEM. 0 or -1 (setrlimit). */
static int limit_data(void)
{
	unsigned long mb = env_num("MALLOC_DIFF_DATA_MB", 0);
	if (!mb)
		return 0;
	size_t now = data_size(), lim = now + (mb << 20);
	struct rlimit rl = {lim, lim};
	diff_data_limited = true;
	return now && setrlimit(RLIMIT_DATA, &rl) == 0 ? 0 : -1;
}

/* 1, with a line on stderr, if mallinfo2 shows more bytes in use than
 * before (and INFO_SLACK) now that all was freed; else 0. */
static int leaked(unsigned long seed, const struct mallinfo2 *before,
                  const char *when)
{
	struct mallinfo2 after = mallinfo2();
	if (after.uordblks <= before->uordblks + INFO_SLACK)
		return 0;
	fprintf(stderr,
	        "diff: seed %lu: mallinfo2 uordblks %zu %s, all freed, %zu "
	        "before the run\n",
	        seed, after.uordblks, when, before->uordblks);
	return 1;
}

/* The scenario: the run, then mallinfo2 against what it said before. */
int scenario_diff(void)
{
	unsigned long seed = env_num("MALLOC_DIFF_SEED", 1);
	unsigned long nops = env_num("MALLOC_DIFF_OPS", DEFAULT_OPS);
	diff_nthreads = (unsigned)env_num("MALLOC_DIFF_THREADS", NTHREADS);
	if (diff_nthreads < 2 || diff_nthreads > MAX_THREADS) {
		fprintf(stderr, "diff: MALLOC_DIFF_THREADS=%u: not 2 to %d\n",
		        diff_nthreads, MAX_THREADS);
		return 1;
	}
	diff_sizes_init();
	free(malloc(1));
	if (!map_stacks() || limit_data() != 0) {
		fprintf(stderr, "diff: no stacks or no RLIMIT_DATA: %s\n",
		        strerror(errno));
		return 1;
	}
	struct mallinfo2 before = mallinfo2();
	if (run_threads(seed, nops))
		return 1;
	long ooms = 0;
	for (unsigned i = 0; i < diff_nthreads; i++)
		ooms += diff_threads[i].ooms;
	if (diff_data_limited && ooms == 0) {
		fprintf(stderr, "diff: under the memory limit no allocation "
		                "failed: the limit was too high to test\n");
		return 1;
	}
	/* Without background threads nothing changes the heap now: exact
	 * as it is, the exited threads' caches (given back at their exit)
	 * and this thread's counted. */
	const char *bg = getenv("MM_MALLOC_BACKGROUND");
	if (bg && strcmp(bg, "0") == 0 && leaked(seed, &before, "untrimmed"))
		return 1;
	/* Else the sweeper may fold a span while mallinfo2 reads it (its
	 * counts are exact only when nothing changes meanwhile): a read
	 * mid-fold once counted 33344 bytes in use. malloc_trim flushes
	 * this thread's cache and runs a whole sweep cycle, after the
	 * sweeper's if one runs: every free is folded once it returns, and
	 * a later cycle of the sweeper finds nothing to fold. A leak stays
	 * counted. The alarm ends a trim that never returns. */
	hang_guard();
	malloc_trim(0);
	alarm(0);
	return leaked(seed, &before, "after malloc_trim");
}

const char *test_diff(void)
{
	static const struct {
		const char *env, *val;
	} runs[] = {
	        {NULL, NULL},
	        {"MM_MALLOC_MEMBARRIER", "0"},
	        {"MM_MALLOC_BACKGROUND", "0"},
	        {"MALLOC_DIFF_DATA_MB", "48"},
	};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		int st = run_scenario("diff", runs[i].env, runs[i].val, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "%s%s%s: status %#x (its reason on stderr; SIGALRM: "
		      "malloc_trim hung)",
		      runs[i].env ? runs[i].env : "defaults",
		      runs[i].env ? "=" : "", runs[i].env ? runs[i].val : "",
		      st);
	}
	return NULL;
}
