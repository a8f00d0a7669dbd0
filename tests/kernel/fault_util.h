/* Helpers shared by the kernel tests that provoke faults on purpose. */
#ifndef TESTS_KERNEL_FAULT_UTIL_H
#define TESTS_KERNEL_FAULT_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "arch/x86_64/trap.h"
#include "kernel/kasan.h"

/* Reads *p under the expected-fault hook: true when that read took a page
 * fault at exactly p, false when it went through (or faulted elsewhere). */
/* Unchecked by KASAN: a probe of memory expected to fault, such as a
 * freed large object's pages. */
static inline KASAN_UNCHECKED bool read_faults_at(volatile const uint8_t *p)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		(void)*p;
		fault_catch_disarm(&fc);
		return false;
	}
	return fc.vector == VEC_PF && fc.cr2 == (uintptr_t)p;
}

/* Writes v to *p under the expected-fault hook: true when that write took
 * a page fault at exactly p, false when it went through (or faulted
 * elsewhere). */
static inline KASAN_UNCHECKED bool write_faults_at(volatile uint8_t *p,
                                                   uint8_t v)
{
	struct fault_catch fc;
	if (fault_catch_arm(&fc) == 0) {
		*p = v;
		fault_catch_disarm(&fc);
		return false;
	}
	return fc.vector == VEC_PF && fc.cr2 == (uintptr_t)p;
}

#endif
