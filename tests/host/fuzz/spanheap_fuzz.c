/*
 * tests/host/fuzz/spanheap_fuzz.c: libFuzzer target for the span heap.
 *
 * Input: one byte choosing the number of simulated CPUs (1 to 4), the
 * arena (a quarter of the values: 4 MiB, which runs out), the page heaps'
 * scavenger thread (bit 4: it serves the metadata heap too), a guarded
 * pool (bit 5: spanheap_guard.h), every freed page scavenged at once
 * (bit 6: MHEAP_DEBUG_SCAV_ON_FREE, a freed metadata block's page
 * unmapped) and poison mode (spanheap_config.h; its top bit), then
 * 5-byte operations: an op byte (enum shh_op, modulo), a 3-byte argument
 * (the size, decoded by the harness) and a 1-byte argument (flags,
 * alignment, which object, which CPU), run on a fresh span heap over a
 * 64 MiB arena through spanheap_harness.c against its model of the live
 * objects, named caches made and destroyed (merged ones, and ones with
 * slabs of their own: a ctor, OBJCACHE_TYPESAFE_BY_RCU over the POSIX
 * port's fake grace periods), pools (spanheap_harness_pool.h) and
 * batches (the bulk calls). Every CHECK_EVERY steps and at the end of each
 * input, spanheap_check and the statistics are checked (and, at the op
 * SHH_CHECK, every live object's contents and usable size); at the end
 * everything is freed and the heap must hold nothing but its
 * bookkeeping. Expected panics (bad and double frees) are caught by the
 * harness and must name the pointer. A divergence or an unexpected mm_panic
 * prints the step and aborts, which libFuzzer reports with the input that
 * caused it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../mm_port_posix.h"
#include "../spanheap_harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	mm_port_set_quiet(true);
	return 0;
}

static struct spanheap_harness h; /* large: not on the stack */

/* Steps between two runs of the checker (the op SHH_CHECK runs it too). */
enum { CHECK_EVERY = 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* A quarter of the inputs run in an arena of 4 MiB, smaller than
	 * what they may hold: out of memory, reclaims and refusals. */
	bool tight = data[0] / 4 % 4 == 0;
	struct shh_config cfg = {
	        .arena_bytes = tight ? (size_t)4 << 20 : (size_t)64 << 20,
	        .may_run_out = tight,
	        .ncpus = 1 + data[0] % 4,
	        .max_live = 512,
	        .max_live_bytes = (size_t)16 << 20,
	        .max_large = (size_t)1 << 20,
	        .poison = data[0] >= 0x80,
	        .guard = (data[0] & 0x20) != 0,
	        .scav_on_free = (data[0] & 0x40) != 0,
	        .scavenger = (data[0] & 0x10) != 0,
	};
	bool ok = shh_init(&h, &cfg);
	unsigned steps = 0;
	for (size_t i = 1; ok && i + 5 <= size; i += 5) {
		uint64_t a = data[i + 1] | data[i + 2] << 8 |
		             (uint64_t)data[i + 3] << 16;
		ok = shh_step(&h, (enum shh_op)(data[i] % SHH_NOPS), a,
		              data[i + 4]);
		if (ok && ++steps % CHECK_EVERY == 0)
			ok = shh_check(&h);
	}
	ok = ok && shh_check(&h) && shh_drain(&h);
	mm_port_set_cpu(0);
	if (!ok) {
		fprintf(stderr, "spanheap_fuzz: %u CPUs, %zu MiB%s%s%s%s: %s\n",
		        cfg.ncpus, cfg.arena_bytes >> 20,
		        cfg.poison ? ", poison mode" : "",
		        cfg.guard ? ", guarded pool" : "",
		        cfg.scav_on_free ? ", scavenge on free" : "",
		        cfg.scavenger ? ", scavenger thread" : "", h.err);
		abort();
	}
	shh_destroy(&h);
	return 0;
}
