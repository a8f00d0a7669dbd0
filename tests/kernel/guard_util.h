/*
 * tests/kernel/guard_util.h: what the guarded pool's kernel tests share
 * (kmalloc_guard_test.c, kmem_cache_guard_test.c).
 */
#ifndef TESTS_KERNEL_GUARD_UTIL_H
#define TESTS_KERNEL_GUARD_UTIL_H

#include "kernel/heap.h"
#include "kernel/ktest.h"

/* Skips the test unless the kernel was booted with a guarded pool
 * (mm.guard=N: make test's -smp 8 run). */
#define NEED_POOL()                                                           \
	do {                                                                  \
		if (!kspanheap.guard.base)                                    \
			KTEST_SKIP("needs mm.guard (the heap has no guarded " \
			           "pool)");                                  \
	} while (0)

#endif
