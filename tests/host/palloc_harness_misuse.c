/*
 * tests/host/palloc_harness_misuse.c: the palloc harness's bad calls
 * (palloc_model.h): frees of ranges that are not allocated, misaligned or
 * outside the arena, double frees into a page cache, and refused
 * allocations and grows. Each must be refused (a panic, or a logged line
 * naming the call) and leave the allocator word for word as it was.
 */
#include <stdio.h>
#include <string.h>

#include "../../mm/palloc_testing.h"
#include "mm_port_posix.h"
#include "palloc_harness_internal.h"
#include "palloc_model.h"

/* True if freeing [base, +n pages) under the lock panicked. */
static bool free_panics(struct harness *h, uintptr_t base, size_t n)
{
	bool fired = MM_PORT_PANICS({
		unsigned long irq = harness_lock(h);
		palloc_free_locked(&h->p, base, n);
		harness_unlock(h, irq);
	});
	harness_unlock_after_panic(h);
	return fired;
}

/* A free that must be refused with a panic and change nothing. */
static bool op_bad_free(struct harness *h, uint64_t a, uint64_t b)
{
	size_t pi = a % (h->m.npages + 64), n = (b >> 3) % 40, len0;
	uintptr_t base = harness_addr(h, pi);
	unsigned kind = b % 8;
	if (kind == 1)
		base += 8; /* misaligned */
	else if (kind == 2 && h->cfg.base >= MM_PAGE_SIZE)
		base = h->cfg.base - MM_PAGE_SIZE * (1 + n); /* below */
	else if (kind == 3 && h->nlive) {
		struct harness_run r = h->live[a % h->nlive];
		base = harness_addr(h, r.pi); /* a live run and one page more */
		n = r.npages + 1;
	}
	if (base % MM_PAGE_SIZE == 0 && base >= h->cfg.base &&
	    model_range_allocated(&h->m, (base - h->cfg.base) / MM_PAGE_SIZE,
	                          n))
		return true; /* that would be a good free */
	if (!harness_snap(h, 0, &len0))
		return false;
	if (!free_panics(h, base, n))
		return harness_fail(h,
		                    "bad free [0x%lx, +%zu pages) was accepted",
		                    base, n);
	char want[64];
	snprintf(want, sizeof(want), "palloc: free [0x%lx, ", base);
	if (strncmp(mm_port_last_panic(), want, strlen(want)) != 0)
		return harness_fail(
		        h, "bad free message does not name the range: %s",
		        mm_port_last_panic());
	return harness_unchanged(h, len0, "a bad free");
}

/* A double free into a page cache: panic, nothing changed. */
static bool op_bad_cache_free(struct harness *h, uint64_t b)
{
	unsigned k = (b >> 3) % HARNESS_CACHES;
	struct pagecache before = h->pc[k];
	if (before.cache == 0)
		return true;
	uintptr_t page = before.base + ((uintptr_t)__builtin_ctzll(before.cache)
	                                << MM_PAGE_SHIFT);
	if (!MM_PORT_PANICS(pagecache_free(&h->pc[k], page, 1)))
		return harness_fail(
		        h, "double free of 0x%lx into cache %u accepted", page,
		        k);
	if (memcmp(&before, &h->pc[k], sizeof(before)) != 0)
		return harness_fail(h, "a double free changed cache %u", k);
	return true;
}

/* Refused calls: zero-page and oversized allocs, bad grows. */
bool harness_bad_call(struct harness *h, uint64_t a, uint64_t b)
{
	size_t len0;
	uintptr_t g = 0;
	if (!harness_snap(h, 0, &len0))
		return false;
	unsigned long logs = mm_port_log_count();
	const char *want = NULL;
	switch (b % 4) {
	case 0:
		if (palloc_alloc(&h->p, 0, NULL) != 0)
			return harness_fail(h, "alloc of 0 pages succeeded");
		want = "palloc: alloc of 0 pages refused";
		break;
	case 1:
		if (palloc_alloc(&h->p, h->m.npages + 1 + a % 7, NULL) != 0)
			return harness_fail(
			        h, "alloc larger than the arena succeeded");
		want = "larger than the arena";
		break;
	case 2:
		g = harness_addr(h, (a % h->m.npages) | 1);
		if (palloc_grow(&h->p, g, PALLOC_CHUNK_BYTES))
			return harness_fail(
			        h, "misaligned grow at 0x%lx succeeded", g);
		want = "base not chunk aligned";
		break;
	default:
		g = a & 1 && h->cfg.base >= PALLOC_CHUNK_BYTES
		            ? h->cfg.base - PALLOC_CHUNK_BYTES
		            : harness_addr(h, h->m.npages);
		if (palloc_grow(&h->p, g, PALLOC_CHUNK_BYTES))
			return harness_fail(h,
			                    "grow outside the arena at 0x%lx "
			                    "succeeded",
			                    g);
		want = "outside the arena";
	}
	if (mm_port_log_count() != logs + 1 ||
	    !strstr(mm_port_last_log(), want))
		return harness_fail(
		        h,
		        "refusal logged %lu lines, last \"%s\", want "
		        "\"%s\"",
		        mm_port_log_count() - logs, mm_port_last_log(), want);
	if (g) {
		char range[64];
		snprintf(range, sizeof(range), "grow [0x%lx, 0x%lx)", g,
		         g + PALLOC_CHUNK_BYTES);
		if (!strstr(mm_port_last_log(), range))
			return harness_fail(
			        h, "refusal does not name the range: %s",
			        mm_port_last_log());
	}
	return harness_unchanged(h, len0, "a refused call");
}

/* A free that must be refused with a panic: into the allocator, or a
 * double free into a page cache (b & 4). */
bool harness_bad_free(struct harness *h, uint64_t a, uint64_t b)
{
	return b & 4 ? op_bad_cache_free(h, b) : op_bad_free(h, a, b);
}
