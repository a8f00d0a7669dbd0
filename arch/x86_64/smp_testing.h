/* smp.c's choice of the trampoline page, for tests that feed it crafted
 * memory maps; tests only. */
#ifndef ARCH_X86_64_SMP_TESTING_H
#define ARCH_X86_64_SMP_TESTING_H

#include "kernel/bootinfo.h"

/* The page smp_boot_aps copies the trampoline to: the highest page of
 * usable RAM in [4 KiB, 1 MiB) of b's regions outside b's kernel image,
 * or 0 when there is none. */
paddr_t smp_pick_trampoline_page(const struct boot_state *b);

#endif
