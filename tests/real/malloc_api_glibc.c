/*
 * tests/real/malloc_api_glibc.c: malloc-api-test's glibc-only entry
 * points (malloc_api_test.h): the __libc_ names of the allocation
 * functions, which glibc exports and programs call, must reach the same
 * heap as malloc and free (their frees, and cfree, glibc's old name for
 * free, give the object back), and glibc's statistics (mallinfo2, mallinfo,
 * malloc_stats, malloc_info) must count it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
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

/* True if release, called on an 8 MiB object of malloc's, gives its
 * bytes back: mallinfo2's bytes in use (exact here: the child of
 * in_child runs no other thread) drop by its size. */
static bool gives_back(void (*release)(void *))
{
	enum { BIG = 8 << 20 };
	size_t before = mallinfo2().uordblks;
	char *p = malloc(BIG);
	if (!p)
		return false;
	memset(p, 3, BIG);
	size_t held = mallinfo2().uordblks;
	release(p);
	size_t after = mallinfo2().uordblks;
	return held >= before + BIG && after + BIG <= held;
}

/* Each object crosses between the two names: one allocates, the other
 * frees or resizes; then free, __libc_free and cfree each give an
 * object back (found by name: glibc keeps its cfree only for old
 * binaries, and declares none). Exits 0, or 3 (naming the free that
 * kept its object; an abort says "foreign pointer" itself). */
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
	static const char *const frees[] = {"free", "__libc_free", "cfree"};
	for (int i = 0; i < 3; i++) {
		void (*f)(void *) =
		        (void (*)(void *))dlsym(RTLD_DEFAULT, frees[i]);
		if (!f || !gives_back(f)) {
			fprintf(stderr, "%s: %s", frees[i],
			        f ? "an 8 MiB object not given back"
			          : "not found");
			_exit(3);
		}
	}
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
	/* arena holds the heap's own pages too (poison mode's side tables:
	 * as many as the objects'), apart from the object heap's. */
	char out[512];
	int st = run_with("mallinfo-meta", "MM_MALLOC_POISON", "1", out,
	                  sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "MM_MALLOC_POISON=1, 2^18 15-byte objects: status %#x (3: arena "
	      "grew by less than 3/4 of VmRSS), stderr: %s",
	      st, out);
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

/* The process's totals after the last </heap>, in glibc 2.36's order
 * (tools read them by position): true if xml has them so. */
static bool totals_in_glibc_order(const char *xml)
{
	static const char *const want[] = {
	        "<total type=\"fast\"",      "<total type=\"rest\"",
	        "<total type=\"mmap\"",      "<system type=\"current\"",
	        "<system type=\"max\"",      "<aspace type=\"total\"",
	        "<aspace type=\"mprotect\"", "</malloc>",
	};
	const char *at = strstr(xml, "</heap>\n");
	if (!at)
		return false;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		at = strchr(at, '\n');
		if (!at || strncmp(++at, want[i], strlen(want[i])) != 0)
			return false;
	}
	return true;
}

/* malloc_info(0, fp) writes this heap's numbers as glibc's XML (a
 * <malloc version="1"> element, a "current" system size at least what
 * is allocated, the process's totals in glibc's order) and returns 0; other
 * options return EINVAL with errno untouched, as glibc 2.36's do (its manual
 * page says -1 and errno; until a review this did that). */
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
	          totals_in_glibc_order(buf) && sys >= (size_t)NOBJ * OBJSZ;
	if (!ok)
		fprintf(stderr, "malloc_info wrote: %s\n", buf);
	free(buf);
	CHECK(ok,
	      "malloc_info(0) returned %d; current system size %zu with %d "
	      "bytes allocated (its XML on stderr)",
	      r, sys, NOBJ * OBJSZ);
	errno = 0;
	r = malloc_info(1, stderr);
	CHECK(r == EINVAL && errno == 0, "malloc_info(1) = %d, errno %d", r,
	      errno);
	return NULL;
}

/* ---- The statistics agree ----------------------------------------------- */

enum { NSMALL = 600 }; /* 16-byte objects: more than a span of them */

/* The number after "label" in text (after its '=' or size=/count=
 * quote), or SIZE_MAX if text lacks it. */
static size_t number_after(const char *text, const char *label)
{
	const char *at = strstr(text, label);
	if (!at)
		return SIZE_MAX;
	at += strlen(label);
	while (*at == ' ' || *at == '=' || *at == '"')
		at++;
	return strtoul(at, NULL, 10);
}

/* What malloc_stats printed, read back through a pipe put on stderr
 * (which it writes unbuffered, allocating nothing); NUL-terminated. */
static bool stats_text(char *out, size_t outsz)
{
	int fd[2], saved = dup(2);
	if (saved < 0 || pipe(fd) != 0 || dup2(fd[1], 2) < 0)
		return false;
	malloc_stats();
	dup2(saved, 2);
	close(saved);
	close(fd[1]);
	ssize_t n = read(fd[0], out, outsz - 1);
	close(fd[0]);
	out[n > 0 ? n : 0] = 0;
	return n > 0;
}

/* A number a report gave (got), and what mallinfo2 says it is (want). */
struct stats_pair {
	const char *what;
	size_t got, want;
};

/* 0 if malloc_stats was read (stats_ok) and each of the n pairs agrees;
 * else 3, naming the first pair and printing both reports' text. */
static int stats_pairs_agree(const struct stats_pair *pairs, size_t n,
                             bool stats_ok, const char *when, const char *stats,
                             const char *xml)
{
	for (size_t i = 0; i < n; i++)
		if (!stats_ok || pairs[i].got != pairs[i].want) {
			fprintf(stderr,
			        "%s: %s is %zu, mallinfo2 says %zu; "
			        "malloc_stats "
			        "printed:\n%s\nmalloc_info wrote:\n%s\n",
			        when, pairs[i].what, pairs[i].got,
			        pairs[i].want, stats, xml);
			return 3;
		}
	return 0;
}

/* mallinfo, malloc_stats and malloc_info against mallinfo2, read with
 * nothing allocated in between; exits 0, or 3 naming the first number
 * that differs. */
static int stats_agree_now(const char *when)
{
	static char xml[4096], stats[1024];
	FILE *f = fmemopen(xml, sizeof(xml) - 1, "w");
	if (!f || setvbuf(f, NULL, _IONBF, 0) != 0)
		return 2;
	struct mallinfo2 m2 = mallinfo2();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	struct mallinfo m = mallinfo();
#pragma GCC diagnostic pop
	int r = malloc_info(0, f);
	bool stats_ok = stats_text(stats, sizeof(stats));
	fclose(f);
	const char *heap = strstr(xml, "<heap nr=\"0\">");
	const char *all = heap ? strstr(heap, "</heap>") : NULL;
	const struct stats_pair pairs[] = {
	        {"mallinfo arena", (size_t)m.arena, m2.arena},
	        {"mallinfo ordblks", (size_t)m.ordblks, m2.ordblks},
	        {"mallinfo smblks", (size_t)m.smblks, m2.smblks},
	        {"mallinfo fsmblks", (size_t)m.fsmblks, m2.fsmblks},
	        {"mallinfo uordblks", (size_t)m.uordblks, m2.uordblks},
	        {"mallinfo fordblks", (size_t)m.fordblks, m2.fordblks},
	        {"mallinfo2 fordblks", m2.fordblks, m2.arena - m2.uordblks},
	        {"malloc_info's return", (size_t)r, 0},
	        {"malloc_stats system bytes",
	         number_after(stats, "system bytes"), m2.arena},
	        {"malloc_stats in use bytes",
	         number_after(stats, "in use bytes"), m2.uordblks},
	        {"malloc_stats total system bytes",
	         number_after(strstr(stats, "Total") ?: "", "system bytes"),
	         m2.arena},
	        {"malloc_stats total in use bytes",
	         number_after(strstr(stats, "Total") ?: "", "in use bytes"),
	         m2.uordblks},
	        {"malloc_info fast count",
	         number_after(heap ?: "", "type=\"fast\" count"), m2.smblks},
	        {"malloc_info fast size",
	         number_after(strstr(heap ?: "", "type=\"fast\"") ?: "",
	                      "size"),
	         m2.fsmblks},
	        {"malloc_info rest count",
	         number_after(heap ?: "", "type=\"rest\" count"), m2.ordblks},
	        {"malloc_info rest size",
	         number_after(strstr(heap ?: "", "type=\"rest\"") ?: "",
	                      "size"),
	         m2.fordblks - m2.fsmblks},
	        {"malloc_info current",
	         number_after(heap ?: "", "type=\"current\" size"), m2.arena},
	        {"malloc_info aspace total",
	         number_after(heap ?: "", "type=\"total\" size"), m2.arena},
	        {"malloc_info aspace mprotect",
	         number_after(heap ?: "", "type=\"mprotect\" size"), m2.arena},
	        {"malloc_info process current",
	         number_after(all ?: "", "type=\"current\" size"), m2.arena},
	        {"malloc_info process rest count",
	         number_after(all ?: "", "type=\"rest\" count"), m2.ordblks},
	};
	return stats_pairs_agree(pairs, sizeof(pairs) / sizeof(pairs[0]),
	                         stats_ok, when, stats, xml);
}

/* malloc_stats on a closed stderr (its write fails with EBADF) keeps
 * errno; true if it did. */
static bool stats_keep_errno(void)
{
	int saved = dup(2);
	if (saved < 0)
		return false;
	close(2);
	errno = ERANGE;
	malloc_stats();
	int e = errno;
	dup2(saved, 2);
	close(saved);
	return e == ERANGE;
}

/* malloc_info's "max" still counts a 16 MiB burst given back; exits 0,
 * or 3 saying what it read. */
static int max_kept_after_trim(void)
{
	static char xml[4096];
	FILE *f = fmemopen(xml, sizeof(xml) - 1, "w");
	if (!f || setvbuf(f, NULL, _IONBF, 0) != 0 || malloc_info(0, f) != 0)
		return 2;
	fclose(f);
	size_t max = number_after(xml, "type=\"max\" size");
	size_t cur = number_after(xml, "type=\"current\" size");
	if (max < (size_t)16 * MIB || max <= cur) {
		fprintf(stderr,
		        "malloc_info: system max %zu, current %zu after a "
		        "16 MiB burst given back:\n%s\n",
		        max, cur, xml);
		return 3;
	}
	return 0;
}

/*
 * In a process without background threads (nothing moves but what it
 * does): after a 16 MiB burst given back by malloc_trim, malloc_info's
 * "max" still counts it; NSMALL 16-byte objects show in uordblks
 * exactly, and freed, in ordblks (free objects in spans) and smblks
 * (those in the magazines); each report agrees with mallinfo2 at every
 * step (stats_agree_now); malloc_stats keeps errno. Exits 0, or 3
 * naming the number that was wrong.
 */
int scenario_stats_agree(void)
{
	static void *v[64 + NSMALL];
	free(malloc(1));
	for (int i = 0; i < 64; i++)
		if (!(v[i] = malloc(256 << 10)) || !memset(v[i], 1, 256 << 10))
			return 2;
	for (int i = 0; i < 64; i++)
		free(v[i]);
	(void)malloc_trim(0);
	int st = stats_agree_now("after the trim");
	if (st)
		return st;
	if ((st = max_kept_after_trim()) != 0)
		return st;
	struct mallinfo2 a = mallinfo2();
	for (int i = 0; i < NSMALL; i++)
		if (!(v[i] = malloc(16)))
			return 2;
	struct mallinfo2 b = mallinfo2();
	if ((st = stats_agree_now("with the small objects")) != 0)
		return st;
	for (int i = 0; i < NSMALL; i++)
		free(v[i]);
	struct mallinfo2 c = mallinfo2();
	/* Free objects in spans (ordblks) and in the CPUs' caches
	 * (smblks, their bytes fsmblks) are apart: each freed object is
	 * in one of them. */
	if (b.uordblks != a.uordblks + NSMALL * 16 ||
	    c.uordblks != b.uordblks - NSMALL * 16 ||
	    c.ordblks + c.smblks != b.ordblks + b.smblks + NSMALL ||
	    c.smblks == 0 || c.fsmblks < c.smblks * 16) {
		fprintf(stderr,
		        "mallinfo2 around %d 16-byte objects: uordblks %zu "
		        "before, %zu with them, %zu freed; ordblks %zu with "
		        "them, %zu freed; smblks %zu with them, %zu (%zu "
		        "bytes) freed\n",
		        NSMALL, a.uordblks, b.uordblks, c.uordblks, b.ordblks,
		        c.ordblks, b.smblks, c.smblks, c.fsmblks);
		return 3;
	}
	if ((st = stats_agree_now("after the frees")) != 0)
		return st;
	if (!stats_keep_errno()) {
		fprintf(stderr, "malloc_stats on a closed stderr changed "
		                "errno\n");
		return 3;
	}
	return 0;
}

/* The reports agree with mallinfo2 and with what the program did
 * (scenario_stats_agree), in a fresh process without background
 * threads. */
const char *test_stats_agree(void)
{
	int st = run_scenario("stats-agree", "MM_MALLOC_BACKGROUND", "0", 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "stats-agree: status %#x (its reason on stderr)", st);
	return NULL;
}
