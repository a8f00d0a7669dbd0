/*
 * The API test's scenarios of a heap whose set-up fails: a process started
 * under a data limit (ulimit -d) below what the heap's first pages take.
 * Each entry point then fails as it does when memory runs out (NULL and
 * ENOMEM), or reports a pointer it cannot own, as glibc's malloc would
 * let the program go on; a later call sets the heap up once memory
 * allows. Until this version the first malloc of such a process ended it
 * with a panic: under ulimit -d 2048 every program aborted, where glibc's
 * echo and sort ran. And, last, a scenario of mallinfo2 in poison mode
 * (test_mallinfo): its arena counts the heap's own metadata.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_scenarios.h"
#include "malloc_api_test.h"
#include "proc_read.h"

/* The data limit the scenarios set before their first allocation, above
 * what the process has (VmData): room for what the program maps
 * meanwhile (its stdio buffers), not for the heap's first pages (the
 * span array). */
#define SETUP_DATA_ROOM ((size_t)256 << 10)

enum { SENTINEL = 4242 };

/* Sets RLIMIT_DATA (its soft limit: the hard one kept, so that the
 * process may raise it again) SETUP_DATA_ROOM above what the process has
 * now; false if it cannot. Allocates nothing. */
static bool limit_data(void)
{
	char buf[4096];
	if (proc_read("/proc/self/status", buf, sizeof(buf)) <= 0)
		return false;
	const char *p = strstr(buf, "\nVmData:");
	struct rlimit rl;
	if (!p || getrlimit(RLIMIT_DATA, &rl) != 0)
		return false;
	rl.rlim_cur = (strtoul(p + 8, NULL, 10) << 10) + SETUP_DATA_ROOM;
	return setrlimit(RLIMIT_DATA, &rl) == 0;
}

/* 0 if every allocating entry point fails as out of memory does: NULL
 * (posix_memalign's ENOMEM) with errno ENOMEM (posix_memalign's kept);
 * else the number of the first that did not. */
static int allocations_fail(void)
{
	void *(*const one[])(size_t) = {malloc, valloc, pvalloc};
	for (int i = 0; i < 3; i++) {
		errno = SENTINEL;
		if (one[i](100) || errno != ENOMEM)
			return 10 + i;
	}
	errno = SENTINEL;
	if (calloc(10, 10) || errno != ENOMEM)
		return 13;
	errno = SENTINEL;
	if (realloc(NULL, 100) || errno != ENOMEM)
		return 14;
	errno = SENTINEL;
	if (memalign(64, 100) || errno != ENOMEM)
		return 15;
	errno = SENTINEL;
	if (aligned_alloc(4096, 4096) || errno != ENOMEM)
		return 16;
	void *p = &p;
	errno = SENTINEL;
	if (posix_memalign(&p, 64, 100) != ENOMEM || p != &p ||
	    errno != SENTINEL)
		return 17;
	return 0;
}

/* The lines of /proc/self/maps (the mappings), 0 if unreadable. Allocates
 * nothing. */
static size_t mappings(void)
{
	static char buf[1 << 20];
	size_t n = 0;
	if (proc_read("/proc/self/maps", buf, sizeof(buf)) > 0)
		for (const char *c = buf; *c; c++)
			n += *c == '\n';
	return n;
}

/*
 * Under the limit every allocation fails (its set-up said why once, on
 * stderr, which the test counts), the statistics read an empty heap and
 * malloc_trim has nothing to give; then, the limit raised, the next
 * malloc sets the heap up and the heap works.
 */
int scenario_setup_fails(void)
{
	if (!limit_data())
		return 2;
	errno = SENTINEL;
	void *p = malloc(100);
	if (p)
		return 3; /* set up under the limit: too high to test */
	if (errno != ENOMEM)
		return 4;
	size_t maps = mappings();
	int r = allocations_fail();
	if (r)
		return r;
	/* Each entry point's set-up failed again: none may keep more
	 * address space than the first did (until a review each kept the
	 * span heap's metadata heap it made, three mappings a call). */
	size_t after = mappings();
	if (after > maps + 2) {
		fprintf(stderr,
		        "mappings: %zu, then %zu after 10 more failed "
		        "set-ups\n",
		        maps, after);
		return 9;
	}
	free(NULL);
	if (mallinfo2().arena != 0 || malloc_trim(0) != 0)
		return 5;
	struct rlimit rl;
	if (getrlimit(RLIMIT_DATA, &rl) != 0)
		return 2;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_DATA, &rl) != 0)
		return 2;
	errno = SENTINEL;
	char *q = malloc(100);
	if (!q || errno != SENTINEL)
		return 6;
	memset(q, 7, 100);
	char *big = malloc(1 << 20);
	if (!big)
		return 7;
	memset(big, 1, 1 << 20);
	free(big);
	free(q);
	return mallinfo2().arena != 0 ? 0 : 8;
}

/* A free while there is no heap: the pointer cannot be from it. */
int scenario_setup_fails_free(void)
{
	static int not_ours;
	if (!limit_data())
		return 2;
	if (malloc(100))
		return 3;
	free(&not_ours);
	return 4; /* must not return */
}

/* How many times needle occurs in hay. */
static int occurrences(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *s = hay; (s = strstr(s, needle)) != NULL; s++)
		n++;
	return n;
}

const char *test_setup_fails(void)
{
	static char out[4096];
	int st = run_with("setup-fails", "MM_MALLOC_VERBOSE", "0", out,
	                  sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "a heap whose set-up fails (RLIMIT_DATA %zu KiB past VmData): "
	      "status %#x (SIGABRT: the set-up's failure a panic; 3: set up "
	      "under the limit; 4, 10-17: an entry point not failing with "
	      "ENOMEM; 9: their failed set-ups kept mappings; 6-8: the limit "
	      "raised, no heap); stderr: %.300s",
	      SETUP_DATA_ROOM >> 10, st, out);
	CHECK(occurrences(out, "cannot set up the") == 1,
	      "the set-up's failure said %d times, not once, in: %.300s",
	      occurrences(out, "cannot set up the"), out);
	/* With the guarded pool asked for: a failure for want of memory is
	 * not blamed on the pool (until a review its fallback said the
	 * pool could not be set up, the span array's line before it). The
	 * set-up's first growth is the object heap's, to its reserve (since
	 * a review; before it, the span array's). */
	st = run_with("setup-fails", "MM_MALLOC_GUARD", "1", out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              (strstr(out, "no memory for the span array") ||
	               strstr(out, "no memory to grow the page heap")) &&
	              !strstr(out, "guarded pool cannot be set up"),
	      "a set-up that fails with MM_MALLOC_GUARD=1: status %#x, "
	      "stderr: %.400s",
	      st, out);
	st = run_with("setup-fails-free", "MM_MALLOC_VERBOSE", "0", out,
	              sizeof(out));
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
	              strstr(out, "free of a foreign pointer") &&
	              strstr(out, "there is no heap"),
	      "a free with no heap set up: status %#x (want SIGABRT, the "
	      "pointer named foreign), stderr: %.300s",
	      st, out);
	return NULL;
}

/* This process's resident bytes (VmRSS); 0 if unknown. Allocates
 * nothing. */
static size_t resident_bytes(void)
{
	char buf[4096];
	if (proc_read("/proc/self/status", buf, sizeof(buf)) <= 0)
		return 0;
	const char *p = strstr(buf, "\nVmRSS:");
	return p ? strtoul(p + 7, NULL, 10) << 10 : 0;
}

/*
 * Run with MM_MALLOC_POISON=1 (test_mallinfo): mallinfo2's arena, what
 * the heap holds backed, covers the memory its allocations made resident,
 * poison mode's side tables (a page beside each page of 16-byte objects)
 * with them. Until a review it counted the object heap alone: the span
 * heap's own pages had moved to its metadata heap, and arena grew by half
 * what the process's resident set did. 3: arena grew by less than three
 * quarters of it; 2: an allocation failed or VmRSS unreadable.
 */
int scenario_mallinfo_meta(void)
{
	enum { N = 1 << 18 };
	static void *v[N];
	memset(v, 1, sizeof(v)); /* resident before the first reading */
	free(malloc(15));
	size_t rss0 = resident_bytes();
	size_t arena0 = mallinfo2().arena;
	for (size_t i = 0; i < N; i++)
		if (!(v[i] = malloc(15)))
			return 2;
	size_t rss = resident_bytes() - rss0;
	size_t arena = mallinfo2().arena - arena0;
	if (!rss0 || arena < rss / 4 * 3) {
		fprintf(stderr, "resident +%zu KiB, mallinfo2 arena +%zu KiB\n",
		        rss >> 10, arena >> 10);
		return rss0 ? 3 : 2;
	}
	for (size_t i = 0; i < N; i++)
		free(v[i]);
	return 0;
}
