/*
 * tests/host/fuzz/palloc_fuzz.c: libFuzzer target for the page allocator.
 *
 * Input: one byte choosing the arena (size 1, 3, 9 or 70 chunks; scavenged
 * tracking or not; based at 0 or not; reserved or supplied metadata; owner
 * lock or not; grown whole or piecemeal), then 5-byte operations: an op
 * byte, a 3-byte argument and a 1-byte argument, run through the harness of
 * palloc_model.c against the naive model, with a full comparison and
 * palloc_check after every operation. A divergence prints the step and
 * aborts, which libFuzzer reports with the input that caused it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../mm_port_posix.h"
#include "../palloc_model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	mm_port_set_quiet(true);
	return 0;
}

static struct harness h;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = {1, 3, 9, 70};
	if (size < 1)
		return 0;
	uint8_t c = data[0];
	struct harness_config cfg = {
	        .base = c & 8 ? 0 : (uintptr_t)1 << 33,
	        .chunks = chunks[c & 3],
	        .flags = c & 4 ? PALLOC_NO_SCAV : 0,
	        .supplied = c & 16,
	        .use_lock = c & 32,
	        .grow_all = c & 64,
	};
	bool ok = harness_init(&h, &cfg);
	for (size_t i = 1; ok && i + 5 <= size && h.steps < 4000; i += 5) {
		uint64_t a = data[i + 1] | data[i + 2] << 8 |
		             (uint64_t)data[i + 3] << 16;
		ok = harness_step(&h, (enum harness_op)(data[i] % H_NOPS), a,
		                  data[i + 4]) &&
		     harness_compare(&h);
	}
	ok = ok && harness_drain(&h);
	if (!ok) {
		fprintf(stderr, "palloc_fuzz: config 0x%02x: %s\n", c, h.err);
		abort();
	}
	harness_destroy(&h);
	return 0;
}
