/*
 * tests/real/malloc_api_churn.h: what the thread churn of malloc-api-test
 * (malloc_api_churn.c) shares with its objects, keepers and checkpoints
 * (malloc_api_churn_objs.c).
 */
#ifndef TESTS_REAL_MALLOC_API_CHURN_H
#define TESTS_REAL_MALLOC_API_CHURN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An object and the tag its pattern is made from; p NULL: none. */
struct obj {
	unsigned char *p;
	size_t n;
	unsigned tag;
};

/* Objects whose bytes changed (or misaligned, or calloc's not zero), and
 * allocations refused, since the run began. */
extern atomic_ulong churn_bad, churn_nulls;

/* The next number of the generator *s. */
uint64_t rnd(uint64_t *s);
/* A fresh object of a random kind and size into o (p NULL if refused). */
void obj_new(struct obj *o, uint64_t *s, unsigned tag);
/* Checks o's pattern and frees it; nothing if it is none. */
void obj_free(struct obj *o);
/* Reallocs o to a random size; what it kept must have kept its pattern. */
void obj_realloc(struct obj *o, uint64_t *s);
/* Gives o to keeper k (any number; taken modulo the keepers) to free,
 * waiting for room in its inbox; o is none after. */
void hand_to(unsigned k, struct obj *o);
/* Leaves o in a random grave, freeing the object it displaces. */
void bury(struct obj *o, uint64_t *s);
/* Starts the keepers: false if one could not start. */
bool keepers_start(void);
/* Ends and joins them, once each freed what it was handed. */
void keepers_stop(void);

/* What a checkpoint reads. */
struct mark {
	size_t in_use, rss;
	unsigned owned;
};

/* Frees every grave, waits until the keepers freed all they were handed
 * and reads the marks. No short thread may run. */
struct mark checkpoint(void);

#endif
