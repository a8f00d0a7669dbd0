/* Helpers shared by the kernel tests of mm/ and its port. */
#ifndef TESTS_KERNEL_MM_TEST_UTIL_H
#define TESTS_KERNEL_MM_TEST_UTIL_H

#include "mm/mm.h"

/* Gives back [addr, addr + nbytes) (mapped or not) the way mm/ does: in
 * batches, each shot down before its frames go back. Thread context. */
static inline void test_port_unused(void *addr, size_t nbytes)
{
	struct mm_unused_batch b;
	mm_unused_batch_init(&b);
	for (size_t off = 0; off < nbytes;) {
		size_t n = nbytes - off;
		if (n > MM_UNUSED_BATCH_PAGES * MM_PAGE_SIZE)
			n = MM_UNUSED_BATCH_PAGES * MM_PAGE_SIZE;
		mm_port_unused_begin((char *)addr + off, n, &b);
		mm_port_unused_finish(&b);
		off += n;
	}
}

#endif
