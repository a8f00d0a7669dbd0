/* bootinfo.c's reading of the memory map, for tests that feed it crafted
 * descriptors; tests only. */
#ifndef KERNEL_BOOTINFO_TESTING_H
#define KERNEL_BOOTINFO_TESTING_H

#include <stdbool.h>
#include <stdint.h>

#include "boot/boot_info.h"
#include "kernel/bootinfo.h"

/* Why a memory map is refused: the descriptor, and for an overlap the
 * range it overlaps (other_limit 0 when there is none); or, with
 * whole_map set, the map as a whole (no descriptor is named). */
struct mmap_diag {
	const char *why;
	uint64_t base, npages;
	uint32_t type;
	paddr_t other_base, other_limit;
	bool whole_map;
};

/*
 * Adds the descriptors of map[0, size), desc_size bytes apart, to b's
 * regions (sorted; zero-length ones skipped); b's kernel image fields must
 * be set. Returns false with *d saying why when one is unusable, or when
 * the map lists no free (conventional) memory at all.
 */
bool bootinfo_read_mmap(const void *map, uint64_t size, uint64_t desc_size,
                        struct boot_state *b, struct mmap_diag *d);

/* Why the loader's memory map or command line cannot be read through its
 * direct map, or its kernel image is not the kernel as linked, or NULL. */
const char *bootinfo_handoff_problem(const struct boot_info *bi);

/* cmdline_get on the command line cmdline instead of the loader's (an
 * over-long value is printed and refused the same way). */
bool cmdline_find(const char *cmdline, const char *key, char *buf, size_t size);

/* cmdline_get_uint on the command line cmdline. */
bool cmdline_find_uint(const char *cmdline, const char *key, uint64_t lo,
                       uint64_t hi, uint64_t *out);

/* cmdline_get_uint_or_flag on the command line cmdline. */
bool cmdline_find_uint_or_flag(const char *cmdline, const char *key,
                               uint64_t flag, uint64_t lo, uint64_t hi,
                               uint64_t *out);

/* cmdline_flag on the command line cmdline. */
bool cmdline_find_flag(const char *cmdline, const char *key);

/* cmdline_check_known on the command line cmdline (unknown and
 * repeated words). */
unsigned cmdline_find_unknown(const char *cmdline);

#endif
