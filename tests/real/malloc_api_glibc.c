/*
 * tests/real/malloc_api_glibc.c: malloc-api-test's glibc-only entry
 * points (malloc_api_test.h): the __libc_ names of the allocation
 * functions, which glibc exports and programs call, must reach the same
 * heap as malloc and free, and glibc's statistics (mallinfo2, mallinfo,
 * malloc_stats, malloc_info) must count it.
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

enum { NOBJ = 1000, OBJSZ = 4000 };
#define MIB ((size_t)1 << 20)

/* mallinfo2 and mallinfo count this heap: 4 MB allocated and written
 * shows in uordblks (bytes in use), inside arena (bytes the heap holds),
 * and goes again when freed. They were glibc's, whose heap this library
 * never uses: uordblks stayed where it was. */
const char *test_mallinfo(void)
{
	static void *v[NOBJ];
	free(malloc(1));
	struct mallinfo2 before = mallinfo2();
	for (int i = 0; i < NOBJ; i++)
		CHECK((v[i] = malloc(OBJSZ)) && memset(v[i], 1, OBJSZ),
		      "malloc(%d)", OBJSZ);
	struct mallinfo2 full = mallinfo2();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	struct mallinfo old = mallinfo(); /* old programs still call it */
#pragma GCC diagnostic pop
	for (int i = 0; i < NOBJ; i++)
		free(v[i]);
	struct mallinfo2 after = mallinfo2();
	size_t want = (size_t)NOBJ * OBJSZ;
	CHECK(full.uordblks >= before.uordblks + want,
	      "mallinfo2: uordblks %zu before, %zu with %zu bytes more "
	      "allocated",
	      before.uordblks, full.uordblks, want);
	CHECK(full.arena >= full.uordblks &&
	              full.fordblks == full.arena - full.uordblks,
	      "mallinfo2: arena %zu, uordblks %zu, fordblks %zu", full.arena,
	      full.uordblks, full.fordblks);
	CHECK(after.uordblks + want - MIB <= full.uordblks,
	      "mallinfo2: uordblks %zu allocated, %zu after %zu bytes freed",
	      full.uordblks, after.uordblks, want);
	CHECK((size_t)old.uordblks >= before.uordblks + want,
	      "mallinfo: uordblks %d, mallinfo2's before %zu", old.uordblks,
	      before.uordblks);
	return NULL;
}

/* malloc_stats prints this heap's totals on stderr: glibc's format, a
 * line "in use bytes" at least what the child allocated. */
static void stats_child(void)
{
	for (int i = 0; i < NOBJ; i++)
		memset(malloc(OBJSZ), 1, OBJSZ);
	malloc_stats();
}

/* malloc_info(0, fp) writes this heap's numbers as glibc's XML (a
 * <malloc version="1"> element, a "current" system size at least what
 * is allocated) and returns 0; other options are EINVAL, as glibc's. */
const char *test_malloc_stats_info(void)
{
	char out[2048];
	int st = in_child(stats_child, out, sizeof(out));
	const char *in_use = strstr(out, "in use bytes");
	const char *num = in_use ? strchr(in_use, '=') : NULL;
	size_t n = num ? strtoul(num + 1, NULL, 10) : 0;
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              n >= (size_t)NOBJ * OBJSZ,
	      "malloc_stats: status %#x, in use %zu bytes of %d allocated; "
	      "stderr: %s",
	      st, n, NOBJ * OBJSZ, out);
	static void *v[NOBJ];
	for (int i = 0; i < NOBJ; i++)
		CHECK((v[i] = malloc(OBJSZ)), "malloc(%d)", OBJSZ);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	CHECK(f, "open_memstream");
	int r = malloc_info(0, f);
	fclose(f);
	for (int i = 0; i < NOBJ; i++)
		free(v[i]);
	const char *cur = strstr(buf, "<system type=\"current\" size=\"");
	size_t sys = cur ? strtoul(cur + 29, NULL, 10) : 0;
	bool ok = r == 0 && strncmp(buf, "<malloc version=\"1\">", 20) == 0 &&
	          strstr(buf, "</malloc>") && sys >= (size_t)NOBJ * OBJSZ;
	if (!ok)
		fprintf(stderr, "malloc_info wrote: %s\n", buf);
	free(buf);
	CHECK(ok,
	      "malloc_info(0) returned %d; current system size %zu with %d "
	      "bytes allocated (its XML on stderr)",
	      r, sys, NOBJ * OBJSZ);
	errno = 0;
	r = malloc_info(1, stderr);
	CHECK(r == -1 && errno == EINVAL, "malloc_info(1) = %d, errno %d", r,
	      errno);
	return NULL;
}
