/* Test hooks in paging.c (see kernel/testhook.h); tests only. */
#ifndef ARCH_X86_64_PAGING_TESTING_H
#define ARCH_X86_64_PAGING_TESTING_H

#include "kernel/testhook.h"

/* Called by vm_pte_set and vm_pte_clear with the page's address, after
 * they found the entry and before they change it. */
extern _Atomic test_hook_fn paging_testing_pte_change;

#endif
