/*
 * Forced into every object built with KASAN's instrumentation (the
 * Makefile's KASAN_CFLAGS): gcc checks the loads and stores it emits, but
 * a call of memcpy, memset or memmove reaches the kernel's uninstrumented
 * string.c unchecked, so these calls go to kasan.c's versions, which
 * check both ranges first (Linux's KASAN does the same in mm/kasan).
 */
#ifndef KERNEL_KASAN_CHECKED_H
#define KERNEL_KASAN_CHECKED_H

#include <stddef.h>

/* string.c's own, declared before the names are taken (kernel/string.h's
 * declarations, read after this, declare the kasan_ versions), and the
 * macros function-like: (memset)(...) still calls string.c's, for a
 * KASAN_UNCHECKED function (kernel/kasan.h). */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
#define memcpy(d, s, n)  kasan_memcpy(d, s, n)
#define memset(d, c, n)  kasan_memset(d, c, n)
#define memmove(d, s, n) kasan_memmove(d, s, n)

#endif
