/* tests/host/kernel_stubs.h: the kernel's printk and panic for the host
 * tests and fuzz targets that build kernel/bootinfo.c (kernel_stubs.c). */
#ifndef TESTS_HOST_KERNEL_STUBS_H
#define TESTS_HOST_KERNEL_STUBS_H

#include "../../kernel/printk.h"

/* The last line printk formatted, and how many it has. */
extern char kstub_last_line[512];
extern unsigned long kstub_lines;

#endif
