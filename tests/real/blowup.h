/*
 * tests/real/blowup.h: what tests/real/blowup.c (the measuring program of
 * tools/bench-blowup) and malloc-api-test's blowup tests share: the
 * producer/consumer rounds and the false-sharing loops. Each file calls
 * malloc and free and is built without the library, which LD_PRELOAD
 * supplies.
 */
#ifndef TESTS_REAL_BLOWUP_H
#define TESTS_REAL_BLOWUP_H

#include <stdbool.h>
#include <stdint.h>

/* The value of a line of /proc/self/status, in KiB ("VmRSS:", "VmHWM:"),
 * read without allocating; -1 if it cannot be read. */
long blowup_status_kib(const char *field);

/* The ring's slots, and the objects a round hands over. */
enum { RING = 4096, PER_ROUND = 65536 };

/* Allocates n objects of 16 to 512 bytes (sizes from seed) into the ring
 * of 4096 slots, waiting while it is full; blowup_consume frees n from
 * it. One producer and one consumer at a time. */
void blowup_produce(uint64_t n, uint64_t seed);
void blowup_consume(uint64_t n);
/* rounds of 65536 objects handed from one thread to another among n
 * threads (2 to 8), the producer of round r the thread r % n and its
 * consumer the next one. */
void blowup_rotate(unsigned n, unsigned rounds);
/* rounds of 65536 objects from the calling thread to a new thread each,
 * which exits after the round. */
void blowup_exitcons(unsigned rounds);

/* Larson's server: LARSON_THREADS threads, new each epoch, each replacing
 * LARSON_OPS random objects (16 to 512 bytes) of one array of
 * LARSON_SLOTS slots shared by all (so objects are freed by other
 * threads than their allocators, and by later threads). */
enum { LARSON_SLOTS = 16384, LARSON_OPS = 200000, LARSON_THREADS = 4 };
void blowup_larson_epoch(unsigned e);

/* Hoard's cache-scratch (passive, true) or cache-thrash (false) with two
 * threads on CPUs 0 and 1, iters rounds of malloc(8), 1000 writes and
 * free each; prints a line with the time per write and whether the two
 * threads' objects shared a cache line. */
void blowup_sharing(bool passive, unsigned iters);

#endif
