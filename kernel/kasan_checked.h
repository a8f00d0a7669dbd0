/*
 * Forced into every object built with KASAN's instrumentation (the
 * Makefile's KASAN_CFLAGS): gcc checks the loads and stores it emits, but
 * a call of memcpy, memset or memmove reaches the kernel's uninstrumented
 * string.c unchecked, so these calls go to kasan.c's versions, which
 * check both ranges first (Linux's KASAN does the same in mm/kasan).
 */
#ifndef KERNEL_KASAN_CHECKED_H
#define KERNEL_KASAN_CHECKED_H

#define memcpy  kasan_memcpy
#define memset  kasan_memset
#define memmove kasan_memmove

#endif
