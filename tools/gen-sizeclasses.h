/*
 * tools/gen-sizeclasses.h: what the size class generator's two halves
 * share: gen-sizeclasses.c computes and checks the table (the classes,
 * their spans and division constants, the lookup table), and
 * gen-sizeclasses-emit.c prints it as mm/sizeclasses.h or .c. The
 * search's limits are here because both the search and the printed
 * header name them.
 */
#ifndef TOOLS_GEN_SIZECLASSES_H
#define TOOLS_GEN_SIZECLASSES_H

#include <stdint.h>

#define PAGE_SIZE   4096u  /* MM_PAGE_SIZE; the header asserts they agree */
#define ALIGN       16u    /* every object's alignment */
#define SMALL_MAX   1024u  /* classes above are multiples of 128 */
#define LINEAR_MAX  256u   /* class k is 16 * k bytes up to this */
#define MAX_SIZE    32768u /* the largest class */
#define MAX_NELEMS  512u   /* per-span bitmaps: at most 8 words */
#define MAX_NPAGES  64u    /* MHEAP_ATOMIC_MAX_PAGES */
#define MIN_SPAN    32768u /* a span holds this many bytes, or MAX_NELEMS */
#define MAX_CLASSES 256u   /* classes are stored in uint8_t */

#define BY16_LEN (MAX_SIZE / 16 + 1)

struct sizeclass {
	unsigned size;
	unsigned npages;
	unsigned nelems;
	uint32_t divmul;
	uint32_t dinv;
	unsigned dshift;
};

/* The table, complete and checked before anything is printed.
 * classes[0] is the reserved "large object" class, all zero. */
extern struct sizeclass classes[MAX_CLASSES];
extern unsigned nclasses;
extern uint8_t by16[BY16_LEN];

/* Prints what broke, prefixed with the program's name, and exits 1. */
_Noreturn void die(const char *fmt, ...);

/* The bytes of a span of npages pages after its last object of size. */
unsigned tail_bytes(unsigned size, unsigned npages);

/* Print mm/sizeclasses.h and mm/sizeclasses.c (gen-sizeclasses-emit.c). */
void emit_h(void);
void emit_c(void);

#endif
