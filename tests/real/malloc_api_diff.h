/*
 * tests/real/malloc_api_diff.h: what the randomized differential test's
 * three files share: malloc_api_diff.c (the threads, their rounds, the
 * memory limit and the leak check), malloc_api_diff_shadow.c (the shadow
 * table of live objects and its checks) and malloc_api_diff_ops.c (the
 * sizes, the alignments and the operations with glibc 2.36's expected
 * results).
 */
#ifndef MALLOC_API_DIFF_H
#define MALLOC_API_DIFF_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "malloc_api_test.h"

#define NTHREADS    4   /* threads by default */
#define MAX_THREADS 72  /* more than the 63 slots: some share one */
#define ROUNDS      3   /* new threads a round, taking the last ones' objects */
#define MAXLIVE     128 /* objects a thread holds */
#define QCAP        32  /* a thread's hand-off queue */
#define BURST       64  /* objects a fast-path burst holds at once */
#define CHECK_EVERY 64  /* a thread checks all it holds this often */
/* Operations a thread by default. 6000 until make test's CPU was cut
 * (2.6 s of it a run, four runs): its recorded mutants (calloc's fast
 * path without its memset, a realloc copy 8 bytes short) fail within 50
 * operations of a thread at either count, and under the memory limit
 * 32 to 64 calls still fail with ENOMEM (5 seeds; 289 at 6000). */
#define DEFAULT_OPS 2000
/* errno before each call: a call that succeeds, and free, keep it. */
#define ERRNO_MARK  12345
#define PAGE        4096ul
#define STACK_BYTES (1ul << 20)
/* Bytes of objects in use mallinfo2 may show after all was freed, more
 * than before the run: what the C library allocates meanwhile. */
#define INFO_SLACK (16ul << 10)

/* A live object, as the test knows it. */
struct diff_obj {
	unsigned char *p;
	size_t size;   /* requested */
	size_t usable; /* malloc_usable_size's, when it was made */
	size_t align;  /* that p must have */
	uint32_t tag;  /* its pattern's seed (diff_pattern) */
};

/*
 * A thread's own operations draw from rng and work on its own objects;
 * those other threads hand it are held and worked on apart, in got with
 * their own generator (receive swaps the two in, diff_swap), so that
 * what arrives, and when, which the threads' interleaving decides, leaves
 * the thread's own sequence alone: the seed replays it, and a failure's
 * operation is the same one in the rerun. (Until a review the objects
 * that arrived joined the thread's own, moving every later pick.)
 */
struct diff_thread {
	unsigned id;
	pthread_t th;
	long op, nops;
	long ooms;     /* allocations that failed for want of memory */
	char why[512]; /* what went wrong */
	void *stack;   /* STACK_BYTES, each round's thread's */
	/* Only this thread's: the table and generator the operations use
	 * (its own: own and the seed's stream; or, swapped in, got's) and
	 * the other pair. */
	struct diff_obj *live, *other;
	int nlive, nother;
	uint64_t rng, rng_other;
	struct diff_obj own[MAXLIVE], got[MAXLIVE];
	/* Protected by qlock: what other threads handed it. */
	pthread_mutex_t qlock;
	struct diff_obj q[QCAP];
	int nq;
};

extern struct diff_thread diff_threads[MAX_THREADS];
extern unsigned diff_nthreads;
/* Set for a run under RLIMIT_DATA: any allocation may fail (ENOMEM). */
extern bool diff_data_limited;

/* Returns from the caller with t->why set if cond is false. */
#define DCHECK(t, cond, ...)                                               \
	do {                                                               \
		if (!(cond)) {                                             \
			snprintf((t)->why, sizeof((t)->why), __VA_ARGS__); \
			return (t)->why;                                   \
		}                                                          \
	} while (0)

uint64_t diff_rand(struct diff_thread *t);
void diff_swap(struct diff_thread *t);
unsigned char diff_pattern(uint32_t tag, size_t i);

/* The shadow table's checks (malloc_api_diff_shadow.c); each returns
 * NULL or what went wrong. */
const char *diff_adopt(struct diff_thread *t, struct diff_obj *o, bool zeroed);
const char *diff_check(struct diff_thread *t, const struct diff_obj *o);
const char *diff_check_prefix(struct diff_thread *t, const struct diff_obj *o,
                              size_t n);
const char *diff_free(struct diff_thread *t, struct diff_obj *o);
const char *diff_free_as(struct diff_thread *t, struct diff_obj *o, bool libc);
void diff_release(struct diff_obj *o);
const char *diff_keep(struct diff_thread *t, struct diff_obj *o);
const char *diff_hold(struct diff_thread *t, struct diff_obj *o);
struct diff_obj diff_take(struct diff_thread *t, int i);
const char *diff_send(struct diff_thread *t);
/* Takes what other threads handed t: each checked, held in t's table of
 * received objects, and followed by one operation on that table. */
const char *diff_receive(struct diff_thread *t);
/* Frees every object of t: its tables and its queue. */
const char *diff_free_all(struct diff_thread *t);

/* The operations (malloc_api_diff_ops.c). */
void diff_sizes_init(void);
const char *diff_op(struct diff_thread *t);
const char *diff_op_received(struct diff_thread *t);

#endif
