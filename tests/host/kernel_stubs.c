/*
 * tests/host/kernel_stubs.c: what kernel/bootinfo.c (and acpi_mem.c,
 * its printk) needs of the kernel, for the host tests and the fuzz
 * target that build it on the host (tests/host/bootinfo_test.c,
 * fuzz/bootinfo_fuzz.c): printk formats into a buffer (so a bad format or
 * argument shows under the sanitizers, and the target can read the last line),
 * panic aborts, and the linker script's bounds of the image that bootinfo.c
 * reads
 * (__text_start, __bss_end) are small arrays.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernel_stubs.h"

char kstub_last_line[512];
unsigned long kstub_lines;

char __text_start[64], __bss_end[1];

void vprintk(const char *fmt, va_list ap)
{
	vsnprintf(kstub_last_line, sizeof(kstub_last_line), fmt, ap);
	kstub_lines++;
}

void printk(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintk(fmt, ap);
	va_end(ap);
}

void panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "panic: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	abort();
}
