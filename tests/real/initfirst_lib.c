/*
 * tests/real/initfirst_lib.c: a library linked with -z initfirst, for
 * malloc-api-test's scenario background-initfirst
 * (malloc_api_background.c), which preloads it after libmm_malloc.so.
 * The dynamic loader runs the initialiser of one such object before all
 * others, the preinit_array's included: the last one it loaded. So this
 * one runs before ours, as another initfirst library's would. It grows
 * the heap past 8 MiB, then allocates on the slow path, where the
 * background threads start when they are allowed.
 */
#include <stdlib.h>

__attribute__((constructor)) static void grow_first(void)
{
	free(malloc((size_t)8 << 20));
	free(malloc(64 << 10));
}
