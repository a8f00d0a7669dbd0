/*
 * tests/real/malloc_api_glibc.c: malloc-api-test's glibc-only entry
 * points (malloc_api_test.h): the __libc_ names of the allocation
 * functions, which glibc exports and programs call, must reach the same
 * heap as malloc and free.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

/* glibc exports these (GLIBC_2.2.5) but declares none of them. */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

/* Each object crosses between the two names: one allocates, the other
 * frees or resizes. Exits 0, or 3 naming the pair that went wrong (an
 * abort says "foreign pointer" itself). */
static void cross_names(void)
{
	char *p = __libc_malloc(100);
	memset(p, 1, 100);
	if (malloc_usable_size(p) < 100)
		_exit(3);
	p = realloc(p, 5000);
	if (!p || p[99] != 1)
		_exit(3);
	free(p);
	p = malloc(200);
	memset(p, 2, 200);
	p = __libc_realloc(p, 9000);
	if (!p || p[199] != 2)
		_exit(3);
	__libc_free(p);
	p = __libc_calloc(10, 10);
	if (!p || p[99] != 0)
		_exit(3);
	free(p);
	p = __libc_memalign(256, 100);
	if (!p || (uintptr_t)p % 256)
		_exit(3);
	free(p);
	p = __libc_valloc(10);
	if (!p || (uintptr_t)p % 4096)
		_exit(3);
	free(p);
	p = __libc_pvalloc(10);
	if (!p || (uintptr_t)p % 4096 || malloc_usable_size(p) < 4096)
		_exit(3);
	free(p);
	errno = 0;
	if (__libc_malloc(SIZE_MAX / 2) || errno != ENOMEM)
		_exit(3);
}

/* glibc's __libc_malloc family: an object from one name is freed or
 * resized by the other (they were glibc's own heap's: free aborted on a
 * "foreign pointer"). */
const char *test_libc_names(void)
{
	char out[1024];
	int st = in_child(cross_names, out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && !out[0],
	      "__libc_ names mixed with malloc's: status %#x, stderr: %s", st,
	      out);
	return NULL;
}
