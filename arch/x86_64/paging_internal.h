/* What paging.c shares with paging_direct.c; nothing else includes it. */
#ifndef ARCH_X86_64_PAGING_INTERNAL_H
#define ARCH_X86_64_PAGING_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"

#define PT_ENTRIES 512

/* One entry, read or written whole. Acquire/release: a table's contents,
 * zeroed before its entry is stored, are visible to whoever loads it. */
static inline uint64_t pte_load(const uint64_t *e)
{
	return __atomic_load_n(e, __ATOMIC_ACQUIRE);
}

static inline void pte_store(uint64_t *e, uint64_t v)
{
	__atomic_store_n(e, v, __ATOMIC_RELEASE);
}

static inline unsigned level_index(uintptr_t va, int level)
{
	return (va >> (PAGE_SHIFT + 9 * level)) & (PT_ENTRIES - 1);
}

/* paging.c's walk (see there): the table at stop_level for va, created
 * if create (vm lock held, or paging_init before other CPUs run). */
uint64_t *paging_walk(uintptr_t va, int stop_level, bool create, bool *large);

/* paging_direct.c: maps the direct map with pages of at most page_size
 * (paging_init, once), and prints what it mapped. */
void paging_map_direct(uint64_t page_size);
void paging_print_direct_map(void);

#endif
