/*
 * tests/host/fuzz/spanheap_fuzz.c: libFuzzer target for the span heap.
 *
 * Input: one byte choosing the number of simulated CPUs (1 to 4), then
 * 5-byte operations: an op byte (enum shh_op, modulo), a 3-byte argument
 * (the size, decoded by the harness) and a 1-byte argument (flags,
 * alignment, which object, which CPU), run on a fresh span heap over a
 * 64 MiB arena through spanheap_harness.c against its model of the live
 * objects. At the end of each input spanheap_check and the statistics
 * are checked, then everything is freed and the heap must hold nothing
 * but its bookkeeping. A divergence or an unexpected mm_panic prints the
 * step and aborts, which libFuzzer reports with the input that caused it.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct shh_config cfg = {
	        .arena_bytes = (size_t)64 << 20,
	        .ncpus = 1 + data[0] % 4,
	        .max_live = 512,
	        .max_live_bytes = (size_t)16 << 20,
	        .max_large = (size_t)1 << 20,
	};
	bool ok = shh_init(&h, &cfg);
	for (size_t i = 1; ok && i + 5 <= size; i += 5) {
		uint64_t a = data[i + 1] | data[i + 2] << 8 |
		             (uint64_t)data[i + 3] << 16;
		ok = shh_step(&h, (enum shh_op)(data[i] % SHH_NOPS), a,
		              data[i + 4]);
	}
	ok = ok && shh_check(&h) && shh_drain(&h);
	mm_port_set_cpu(0);
	if (!ok) {
		fprintf(stderr, "spanheap_fuzz: %u CPUs: %s\n", cfg.ncpus,
		        h.err);
		abort();
	}
	shh_destroy(&h);
	return 0;
}
