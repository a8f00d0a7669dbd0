/*
 * The physical frame pool: a second instance of mm/'s page allocator
 * (palloc), over physical addresses, without scavenged tracking.
 *
 * Representation: the arena is [0, ram_top rounded up to a 2 MiB chunk).
 * Every chunk is grown at boot; then every page that is not free RAM is
 * allocated out of it as a "hole": firmware and MMIO ranges, the first
 * MiB (the SMP trampoline and firmware quirks), the kernel image, loader
 * and boot-services memory (until frames_reclaim_boot_memory frees it into
 * the pool), and the pool's own metadata. The metadata (bitmaps and
 * summaries, palloc_metadata_bytes) is carved from the first conventional
 * region that holds it and reached through the direct map: it must exist
 * before any allocator does, so it cannot come from one.
 *
 * Locking: the pool lock (an mm lock, rank FRAMES) is taken inside every
 * call; any context but NMI. It sits above the vm lock because page-table
 * pages are allocated under that one.
 *
 * Debug fill (frames.debug_fill on the command line): every free frame is
 * filled with FRAMES_DEBUG_FILL at boot and at each free, so that a user
 * that takes a frame for zero (a page-table page, a heap page mapped
 * again) reads garbage, as it would on hardware whose RAM holds whatever
 * the firmware or the last owner left; QEMU's RAM starts zeroed and hides
 * that. Each allocation checks the fill is whole and panics naming the
 * frame and the word if not: a write to a free frame (Linux's page
 * poisoning). Set once by frames_init, before any other CPU runs.
 *
 * Failure injection (frames_fail.c): asked before the pool lock by
 * frame_alloc and frames_alloc_contig (frames_fail_now); it takes no
 * lock. Armed at run time only: the boot's page tables, stacks and heap
 * need their frames.
 */
#include "frames.h"

#include "kernel/bootinfo.h"
#include "kernel/printk.h"
#include "kernel/string.h"
#include "kernel/frames_internal.h"
#include "mm/mm.h"

/* The lasting blocks stay below it: the first is the PML4's, which the
 * SMP trampoline loads in 32-bit mode. */
#define DMA_BELOW_4G (1ull << 32)

/* The pool's lock: mm rank MM_RANK_PALLOC, which kernel/mm_port.c maps
 * to FRAMES; irqsave. The pool's owner lock (palloc's _locked calls
 * assert it): protects pool's bitmaps and summaries, and nmanaged. */
static mm_lock_t pool_lock;
/* The pool: its arena and its metadata's place fixed by frames_init, its
 * bitmaps and summaries changed under pool_lock only: */
static struct palloc pool;
/* Immutable after frames_init: */
static paddr_t meta_base, meta_limit;

/* Set once by frames_init (boot CPU, before SMP): frames.debug_fill. */
static bool debug_fill;

/* Fills [pa, pa + npages pages) with FRAMES_DEBUG_FILL under debug_fill. */
static void fill_if_debug(paddr_t pa, size_t npages)
{
	if (debug_fill)
		memset(phys_to_virt(pa), FRAMES_DEBUG_FILL, npages * PAGE_SIZE);
}

/* Under debug_fill, panics unless every byte of [pa, pa + npages pages)
 * still holds FRAMES_DEBUG_FILL: a frame written while free (a write
 * after its frame_free, or through a TLB entry a shootdown missed) is
 * named as it is handed out again. */
static void check_fill_if_debug(paddr_t pa, size_t npages)
{
	if (!debug_fill || !pa)
		return;
	const uint64_t want = 0x0101010101010101ull * FRAMES_DEBUG_FILL;
	const uint64_t *w = phys_to_virt(pa);
	for (size_t i = 0; i < npages * PAGE_SIZE / 8; i++) {
		if (w[i] == want)
			continue;
		paddr_t at = pa + i * 8;
		panic("frames: frame %#lx was written while free: the word at "
		      "%#lx holds %#lx, not the fill %#lx (frames.debug_fill: "
		      "a write after frame_free, or through a stale TLB "
		      "entry)",
		      (unsigned long)(at & ~(PAGE_SIZE - 1)), (unsigned long)at,
		      (unsigned long)w[i], (unsigned long)want);
	}
}

/* Set once by frames_reclaim_boot_memory (boot CPU, before SMP): */
static bool boot_memory_reclaimed;
static size_t nreclaimed;

/* Protected by pool_lock: */
static size_t nmanaged;

static paddr_t max_pa(paddr_t a, paddr_t b)
{
	return a > b ? a : b;
}

/* Allocates the hole [base, limit) out of the pool (boot, one CPU). */
static void carve(paddr_t base, paddr_t limit)
{
	base = align_down(base, PAGE_SIZE);
	limit = align_up(limit, PAGE_SIZE);
	if (base == 0)
		base = PAGE_SIZE; /* palloc keeps page 0 allocated itself */
	if (limit <= base)
		return;
	unsigned long irq = mm_lock_acquire(&pool_lock);
	bool ok = palloc_alloc_range_locked(&pool, base,
	                                    (limit - base) / PAGE_SIZE, NULL);
	mm_lock_release(&pool_lock, irq);
	if (!ok)
		panic("frames: cannot reserve [%#lx, %#lx)", base, limit);
}

/* Carves [from, to) minus the pool metadata. */
static void carve_hole(paddr_t from, paddr_t to)
{
	if (meta_limit <= from || meta_base >= to) {
		carve(from, to);
		return;
	}
	carve(from, meta_base);
	carve(meta_limit, to);
}

static void place_metadata(size_t bytes)
{
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		paddr_t base = max_pa(r->base, FRAMES_LOW_LIMIT);
		if (r->type == EFI_CONVENTIONAL_MEMORY && r->limit > base &&
		    r->limit - base >= bytes) {
			meta_base = base;
			meta_limit = base + bytes;
			return;
		}
	}
	panic("frames: no conventional region holds the pool's %zu bytes of "
	      "metadata",
	      bytes);
}

/* Under frames.debug_fill, fills every frame the pool starts with free
 * (conventional memory over 1 MiB, less the pool's metadata). */
static void fill_free_frames(void)
{
	debug_fill = cmdline_flag("frames.debug_fill");
	if (!debug_fill)
		return;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		paddr_t base = max_pa(r->base, FRAMES_LOW_LIMIT);
		if (r->type != EFI_CONVENTIONAL_MEMORY || r->limit <= base)
			continue;
		for (paddr_t pa = base; pa < r->limit; pa += PAGE_SIZE)
			if (pa < meta_base || pa >= meta_limit)
				fill_if_debug(pa, 1);
	}
	printk("frames: debug_fill: free frames hold %#x until used\n",
	       FRAMES_DEBUG_FILL);
}

void frames_init(void)
{
	size_t arena = align_up(boot_state.ram_top, PALLOC_CHUNK_BYTES);
	size_t meta = align_up(palloc_metadata_bytes(arena, PALLOC_NO_SCAV),
	                       PAGE_SIZE);
	if (meta == 0)
		panic("frames: RAM top %#lx is beyond what palloc can manage",
		      boot_state.ram_top);
	place_metadata(meta);
	mm_lock_init(&pool_lock, "frames", MM_RANK_PALLOC);
	struct palloc_config cfg = {
	        .arena_base = 0,
	        .arena_bytes = arena,
	        .flags = PALLOC_NO_SCAV,
	        .owner_lock = &pool_lock,
	        .metadata = phys_to_virt(meta_base),
	};
	if (!palloc_init(&pool, &cfg) || !palloc_grow(&pool, 0, arena))
		panic("frames: cannot set up the pool over [0, %#zx)", arena);
	/* Everything between usable conventional ranges is a hole; so is the
	 * first MiB. Regions are sorted and disjoint (bootinfo.c). */
	paddr_t cursor = 0;
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		paddr_t base = max_pa(r->base, FRAMES_LOW_LIMIT);
		/* Not free RAM, or wholly below 1 MiB or the cursor: it stays
		 * inside the next hole. */
		if (r->type != EFI_CONVENTIONAL_MEMORY || r->limit <= base ||
		    r->limit <= cursor)
			continue;
		if (base > cursor)
			carve_hole(cursor, base);
		cursor = max_pa(cursor, r->limit);
	}
	if (cursor < arena)
		carve_hole(cursor, arena);
	carve(meta_base, meta_limit);
	fill_free_frames();
	struct palloc_stats st;
	unsigned long irq = mm_lock_acquire(&pool_lock);
	palloc_stats_locked(&pool, &st);
	nmanaged = st.free_pages;
	mm_lock_release(&pool_lock, irq);
}

void frames_reclaim_boot_memory(void)
{
	for (size_t i = 0; i < boot_state.nregions; i++) {
		const struct mem_region *r = &boot_state.regions[i];
		if (!mem_type_usable(r->type) ||
		    r->type == EFI_CONVENTIONAL_MEMORY)
			continue;
		paddr_t base = max_pa(r->base, FRAMES_LOW_LIMIT);
		for (paddr_t pa = base; pa < r->limit; pa += PAGE_SIZE) {
			if (pa >= boot_state.kernel_phys_base &&
			    pa < boot_state.kernel_phys_limit)
				continue;
			fill_if_debug(pa, 1);
			unsigned long irq = mm_lock_acquire(&pool_lock);
			palloc_free_locked(&pool, pa, 1);
			nmanaged++;
			mm_lock_release(&pool_lock, irq);
			nreclaimed++;
		}
	}
	boot_memory_reclaimed = true;
}

size_t frames_reclaimed_count(void)
{
	return nreclaimed;
}

bool frames_boot_memory_reclaimed(void)
{
	return boot_memory_reclaimed;
}

const char *frames_not_managed(paddr_t pa)
{
	if (pa % PAGE_SIZE)
		return "not page-aligned";
	if (pa < FRAMES_LOW_LIMIT)
		return "below 1 MiB, which the pool never hands out";
	if (pa >= meta_base && pa < meta_limit)
		return "the pool's own metadata";
	if (pa >= boot_state.kernel_phys_base &&
	    pa < boot_state.kernel_phys_limit)
		return "the kernel image";
	const struct mem_region *r = mem_region_of(pa);
	if (!r)
		return "in no region of the memory map";
	if (r->type == EFI_CONVENTIONAL_MEMORY)
		return NULL;
	if (!mem_type_usable(r->type))
		return "firmware or device memory (see the memory map)";
	return boot_memory_reclaimed ? NULL
	                             : "loader or boot-services memory, "
	                               "not reclaimed yet";
}

/* Panics unless [pa, pa + npages pages) are frames the pool hands out. */
static void check_managed(const char *fn, paddr_t pa, size_t npages)
{
	for (size_t i = 0; i < npages; i++) {
		paddr_t at = pa + i * PAGE_SIZE;
		const char *why = frames_not_managed(at);
		if (why) {
			const struct mem_region *r = mem_region_of(at);
			panic("%s: %#lx is not a frame of the pool: %s "
			      "(memory map: %s)",
			      fn, at, why, r ? mem_type_name(r->type) : "none");
		}
	}
}

paddr_t frame_alloc(void)
{
	if (frames_fail_now())
		return 0;
	paddr_t pa = palloc_alloc(&pool, 1, NULL);
	check_fill_if_debug(pa, 1);
	return pa;
}

/* Lasting frames (frame_alloc_lasting) come from one 2 MiB block at a
 * time, the highest wholly free one below 4 GiB when the last is used
 * up; protected by pool_lock. lasting_none_free: the free count when a
 * search last found no block (no new search until a block more is
 * free), or SIZE_MAX. */
#define LASTING_BLOCK_PAGES (PALLOC_CHUNK_BYTES / PAGE_SIZE)
static paddr_t lasting_block;
static size_t lasting_next = LASTING_BLOCK_PAGES;
static size_t lasting_none_free = SIZE_MAX;

/* Takes [pa, pa + npages pages) if it is all free, quietly. */
static bool take_if_free_locked(paddr_t pa, size_t npages)
{
	if (palloc_alloc_range_locked(&pool, pa, npages, NULL))
		return true;
	struct palloc_refusal r;
	palloc_take_refusal_locked(&pool, &r); /* expected: not logged */
	return false;
}

static paddr_t lasting_find_block_locked(void)
{
	size_t nfree = pool.stats.free_pages;
	if (lasting_none_free != SIZE_MAX &&
	    nfree < lasting_none_free + LASTING_BLOCK_PAGES)
		return 0;
	paddr_t top = pool.arena_limit < DMA_BELOW_4G ? pool.arena_limit
	                                              : DMA_BELOW_4G;
	for (paddr_t b = top - PALLOC_CHUNK_BYTES; b >= PALLOC_CHUNK_BYTES;
	     b -= PALLOC_CHUNK_BYTES) {
		if (take_if_free_locked(b, LASTING_BLOCK_PAGES)) {
			palloc_free_locked(&pool, b, LASTING_BLOCK_PAGES);
			lasting_none_free = SIZE_MAX;
			return b;
		}
	}
	lasting_none_free = nfree;
	return 0;
}

paddr_t frame_alloc_lasting(void)
{
	if (frames_fail_now())
		return 0;
	struct palloc_refusal r;
	paddr_t pa = 0;
	unsigned long irq = mm_lock_acquire(&pool_lock);
	while (!pa) {
		if (lasting_next == LASTING_BLOCK_PAGES) {
			lasting_block = lasting_find_block_locked();
			lasting_next = 0;
			if (!lasting_block) {
				lasting_next = LASTING_BLOCK_PAGES;
				break;
			}
		}
		paddr_t at = lasting_block + lasting_next++ * PAGE_SIZE;
		if (take_if_free_locked(at, 1))
			pa = at;
	}
	if (!pa) /* no whole free block: the lowest free frame */
		pa = palloc_alloc_locked(&pool, 1, NULL);
	bool refused = palloc_take_refusal_locked(&pool, &r);
	mm_lock_release(&pool_lock, irq);
	if (refused)
		palloc_log_refusal(&r);
	check_fill_if_debug(pa, 1);
	return pa;
}

size_t frames_longest_free_run(void)
{
	unsigned long irq = mm_lock_acquire(&pool_lock);
	size_t n = palloc_longest_free_locked(&pool);
	mm_lock_release(&pool_lock, irq);
	return n;
}

paddr_t frames_alloc_contig(size_t npages)
{
	/* 0 pages is refused below (logged), not an eligible call. */
	if (npages && frames_fail_now())
		return 0;
	paddr_t pa = palloc_alloc(&pool, npages, NULL);
	check_fill_if_debug(pa, npages);
	return pa;
}

paddr_t frames_alloc_contig_within(size_t npages, size_t align_pages,
                                   paddr_t limit, bool *injected)
{
	*injected = false;
	if (!npages || !align_pages || (align_pages & (align_pages - 1)) ||
	    npages > SIZE_MAX - (align_pages - 1))
		return 0;
	*injected = frames_fail_now();
	if (*injected)
		return 0;
	size_t slack = align_pages - 1;
	struct palloc_refusal r;
	unsigned long irq = mm_lock_acquire(&pool_lock);
	paddr_t run = palloc_alloc_locked(&pool, npages + slack, NULL);
	bool refused = palloc_take_refusal_locked(&pool, &r);
	paddr_t base = 0;
	if (run) {
		base = align_up(run, (uint64_t)align_pages * PAGE_SIZE);
		size_t head = (base - run) / PAGE_SIZE;
		/* base + npages pages cannot wrap: the run lies in RAM. */
		if (base + npages * PAGE_SIZE > limit) {
			palloc_free_locked(&pool, run, npages + slack);
			base = 0;
		} else {
			if (head)
				palloc_free_locked(&pool, run, head);
			if (slack - head)
				palloc_free_locked(&pool,
				                   base + npages * PAGE_SIZE,
				                   slack - head);
		}
	}
	mm_lock_release(&pool_lock, irq);
	if (refused)
		palloc_log_refusal(&r);
	return base;
}

void frame_free(paddr_t pa)
{
	check_managed("frame_free", pa, 1);
	fill_if_debug(pa, 1);
	palloc_free(&pool, pa, 1);
}

void frames_free_contig(paddr_t pa, size_t npages)
{
	check_managed("frames_free_contig", pa, npages);
	fill_if_debug(pa, npages);
	palloc_free(&pool, pa, npages);
}

size_t frames_free_count(void)
{
	struct palloc_stats st;
	unsigned long irq = mm_lock_acquire(&pool_lock);
	palloc_stats_locked(&pool, &st);
	mm_lock_release(&pool_lock, irq);
	return st.free_pages;
}

size_t frames_free_hint(void)
{
	/* A racy read of a word the pool lock protects: a hint only. */
	return palloc_free_pages_hint(&pool);
}

size_t frames_managed_count(void)
{
	unsigned long irq = mm_lock_acquire(&pool_lock);
	size_t n = nmanaged;
	mm_lock_release(&pool_lock, irq);
	return n;
}

size_t frames_metadata_bytes(void)
{
	return meta_limit - meta_base;
}

void frames_check(void)
{
	palloc_check(&pool);
}
