/*
 * The kernel's own symbol table, linked into the image (see the Makefile's
 * two-pass link and tools/gen-ksyms), for backtraces with names.
 */
#ifndef KERNEL_KSYMS_H
#define KERNEL_KSYMS_H

#include <stddef.h>
#include <stdint.h>

/* Finds the text symbol containing addr: returns its name and stores the
 * offset into it in *offset, or returns NULL when none does. Any context. */
const char *ksyms_lookup(uint64_t addr, uint64_t *offset);

/* Writes "name+0xoff" (or "?") for addr into buf. Any context. */
void ksyms_format(uint64_t addr, char *buf, size_t size);

/* The same for a return address: named after the call before it, whose
 * function holds ret - 1 (a call to a function that does not return can
 * be its caller's last instruction, and ret then the next function's
 * first byte), with ret's own offset: "caller+0x1c". Any context. */
void ksyms_format_return(uint64_t ret, char *buf, size_t size);

/* The address of a symbol by name, or 0. */
uint64_t ksyms_address(const char *name);

#endif
