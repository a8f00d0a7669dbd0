/*
 * tests/real/malloc_api_errors.c: malloc-api-test's errors (errno, set on
 * failure and kept by free), alignment and sizes (malloc_api_test.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

/* ---- Errors ----------------------------------------------------------- */

/* Sizes the compiler cannot see, so that it does not warn about them. */
static volatile size_t size_max = SIZE_MAX;
static volatile size_t odd_align = 100;

const char *test_errno(void)
{
	const size_t smax = size_max;
	errno = 0;
	CHECK(!malloc(smax) && errno == ENOMEM, "malloc(SIZE_MAX)");
	errno = 0;
	CHECK(!malloc((size_t)1 << 62) && errno == ENOMEM, "malloc(2^62)");
	errno = 0;
	CHECK(!calloc(smax / 2, 3) && errno == ENOMEM, "calloc overflow");
	errno = 0;
	CHECK(!calloc((size_t)1 << 30, (size_t)1 << 20) && errno == ENOMEM,
	      "calloc 1 PiB");
	void *p = malloc(100);
	CHECK(p, "malloc(100)");
	memset(p, 7, 100);
	errno = 0;
	CHECK(!realloc(p, smax - 4096) && errno == ENOMEM, "realloc huge");
	CHECK(((unsigned char *)p)[99] == 7, "a failed realloc kept p");
	errno = 0;
	CHECK(!reallocarray(p, smax / 2, 4) && errno == ENOMEM,
	      "reallocarray overflow");
	free(p);
	errno = 0;
	CHECK(!memalign(smax / 2 + 2, 8) && errno == EINVAL,
	      "memalign(> SIZE_MAX / 2 + 1)");
	errno = 0;
	CHECK(!aligned_alloc(smax / 4 + 1, 8) && errno == ENOMEM,
	      "aligned_alloc(2^62) %d", errno);
	void *q = (void *)1;
	CHECK(posix_memalign(&q, 0, 8) == EINVAL && q == (void *)1,
	      "posix_memalign align 0");
	CHECK(posix_memalign(&q, 4, 8) == EINVAL, "posix_memalign align 4");
	CHECK(posix_memalign(&q, 24, 8) == EINVAL, "posix_memalign align 24");
	CHECK(posix_memalign(&q, 64, SIZE_MAX / 2) == ENOMEM && q == (void *)1,
	      "posix_memalign huge");
	errno = 0;
	CHECK(!pvalloc(SIZE_MAX - 10) && errno == ENOMEM, "pvalloc overflow");
	return NULL;
}

const char *test_malloc_zero(void)
{
	void *a = malloc(0), *b = malloc(0);
	CHECK(a && b && a != b, "malloc(0) gives unique objects: %p %p", a, b);
	CHECK(malloc_usable_size(a) >= 1, "usable size of malloc(0)");
	free(a);
	free(b);
	CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL)");
	free(NULL);
	return NULL;
}

/*
 * free() leaves errno alone (POSIX.1-2024; glibc since 2.33): a caller may
 * free a buffer between a failing call and reading its errno. Large
 * objects (40 to 140 KB) go from thread to thread through a shared array,
 * so that frees contend for the page heap's lock and wait for it: the
 * futex wait of a lock just released fails with EAGAIN, which free passed
 * on (3 to 70 frees in 800,000, in a review's runs). Each thread stops at
 * the first change.
 */
enum { ERRNO_POOL = 256, ERRNO_SENTINEL = 4242 };
static _Atomic(void *) errno_pool[ERRNO_POOL];
static atomic_uint errno_changed;
static atomic_int errno_seen;

static void *free_errno_worker(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 7919 + 1;
	for (long i = 0; i < 300000 && !errno_changed; i++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		size_t n = 40000 + (seed >> 20) % 100000;
		void *old = atomic_exchange(
		        &errno_pool[(seed >> 33) % ERRNO_POOL], malloc(n));
		errno = ERRNO_SENTINEL;
		free(old);
		if (errno != ERRNO_SENTINEL) {
			atomic_store(&errno_seen, errno);
			atomic_fetch_add(&errno_changed, 1);
		}
	}
	return NULL;
}

const char *test_free_keeps_errno(void)
{
	errno = ERRNO_SENTINEL;
	free(NULL);
	free(malloc(100));
	free(malloc(1 << 20));
	CHECK(errno == ERRNO_SENTINEL, "free changed errno to %d", errno);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, free_errno_worker,
		                     (void *)(uintptr_t)i) == 0,
		      "pthread_create");
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int k = 0; k < ERRNO_POOL; k++)
		free(atomic_exchange(&errno_pool[k], NULL));
	CHECK(errno_changed == 0, "free changed errno (to %d) under contention",
	      errno_seen);
	return NULL;
}

/*
 * A call that succeeds leaves errno as it was, even if the heap's set-up
 * met failing system calls on the way, as a process does under ulimit -v
 * (the arena's mmap fails until its size halves enough) or a seccomp
 * policy that refuses membarrier(2) (the slots fall back to exchanges),
 * or when the background threads cannot start (pthread_create fails).
 * posix_memalign must not touch errno on success. In a fresh process
 * whose address space the parent limited; the filter makes membarrier
 * fail with ENOSYS and clone and clone3 with EAGAIN, before the first
 * allocation (x86_64's numbers; the test runs nowhere else).
 */
static int refuse_syscalls(void)
{
	struct sock_filter f[] = {
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	                 offsetof(struct seccomp_data, nr)),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 3, 0),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 3, 0),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 2, 0),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int scenario_errno_setup(void)
{
	/* Without seccomp (a sandbox may refuse filters), the address
	 * limit alone makes the set-up's mmap fail. */
	if (refuse_syscalls() != 0)
		fprintf(stderr, "no seccomp filter: address limit only\n");
	errno = ERRNO_SENTINEL;
	void *p = NULL;
	int err = posix_memalign(&p, 64, 100);
	int seen = errno;
	if (err != 0 || !p)
		return 3;
	free(p);
	if (seen != ERRNO_SENTINEL) {
		fprintf(stderr, "first posix_memalign: errno %d\n", seen);
		return 4;
	}
	/* Past the size that starts the background threads (8 MiB). */
	void *v[256];
	for (int i = 0; i < 256; i++) {
		errno = ERRNO_SENTINEL;
		v[i] = malloc(64 << 10);
		seen = errno;
		if (!v[i])
			return 5;
		if (seen != ERRNO_SENTINEL) {
			fprintf(stderr, "malloc %d of 64 KiB: errno %d\n", i,
			        seen);
			return 6;
		}
	}
	for (int i = 0; i < 256; i++)
		free(v[i]);
	return 0;
}

const char *test_errno_setup(void)
{
	int st = run_scenario("errno-setup", NULL, NULL, (size_t)4 << 30);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "a set-up whose system calls failed changed errno: status %#x "
	      "(4: the first posix_memalign, 6: the malloc that starts the "
	      "background threads; the errno on stderr)",
	      st);
	return NULL;
}

/*
 * Under RLIMIT_DATA the heap's growth fails part way (making the arena's
 * pages writable counts against the limit, and a growth takes whole
 * 4 MiB chunks plus a reserve), while allocations still succeed from
 * what was grown: each success must leave errno as it was, and the
 * first failure set ENOMEM. Until this version the failed mprotect's
 * ENOMEM leaked out of about one success in a thousand near the limit
 * (malloc(5000): the 11677th of 11751 successes and 14 more). In a fresh
 * process, which sets the limit itself; sizes small, medium and large.
 */
int scenario_errno_data_limit(void)
{
	struct rlimit rl = {(size_t)64 << 20, (size_t)64 << 20};
	if (setrlimit(RLIMIT_DATA, &rl) != 0)
		return 2;
	static const size_t sizes[] = {5000, 100000, 1 << 20};
	for (int k = 0; k < 3; k++) {
		void **v = mmap(NULL, 100000 * sizeof(void *),
		                PROT_READ | PROT_WRITE,
		                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (v == MAP_FAILED)
			return 3;
		int n = 0;
		for (; n < 100000; n++) {
			errno = ERRNO_SENTINEL;
			v[n] = malloc(sizes[k]);
			int seen = errno;
			if (!v[n] && seen != ENOMEM) {
				fprintf(stderr,
				        "malloc(%zu) failed, errno %d\n",
				        sizes[k], seen);
				return 4;
			}
			if (!v[n])
				break;
			if (seen != ERRNO_SENTINEL) {
				fprintf(stderr,
				        "malloc(%zu) number %d succeeded but "
				        "set errno to %d\n",
				        sizes[k], n, seen);
				return 5;
			}
			memset(v[n], 1, sizes[k]);
		}
		if (n == 100000)
			return 6; /* the limit never bit */
		while (n-- > 0)
			free(v[n]);
		munmap(v, 100000 * sizeof(void *));
	}
	return 0;
}

const char *test_errno_data_limit(void)
{
	int st = run_scenario("errno-data-limit", "MM_MALLOC_BACKGROUND", "0",
	                      0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "allocations near RLIMIT_DATA: status %#x (4: a failure "
	      "without ENOMEM, 5: a success that changed errno; on stderr)",
	      st);
	return NULL;
}

/* ---- Alignment and sizes ---------------------------------------------- */

const char *test_alignment(void)
{
	static const size_t sizes[] = {0,    1,    15,    16,    100,    4095,
	                               4096, 5000, 32768, 40000, 1 << 20};
	for (size_t align = 1; align <= ((size_t)1 << 22); align <<= 1) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t n = sizes[i];
			void *p = memalign(align, n);
			CHECK(p && (uintptr_t)p % align == 0,
			      "memalign(%zu, %zu) = %p", align, n, p);
			memset(p, 0xab, n);
			CHECK(malloc_usable_size(p) >= n, "usable size");
			free(p);
			p = aligned_alloc(align, n);
			CHECK(p && (uintptr_t)p % align == 0,
			      "aligned_alloc(%zu, %zu) = %p", align, n, p);
			free(p);
			if (align >= sizeof(void *)) {
				CHECK(posix_memalign(&p, align, n) == 0 &&
				              (uintptr_t)p % align == 0,
				      "posix_memalign(%zu, %zu)", align, n);
				free(p);
			}
		}
	}
	/* glibc rounds an alignment that is not a power of two up. */
	void *p = memalign(odd_align, 10);
	CHECK(p && (uintptr_t)p % 128 == 0, "memalign(100) = %p", p);
	free(p);
	long page = sysconf(_SC_PAGESIZE);
	p = valloc(10);
	CHECK(p && (uintptr_t)p % (uintptr_t)page == 0, "valloc");
	free(p);
	p = pvalloc(page + 1);
	CHECK(p && (uintptr_t)p % (uintptr_t)page == 0 &&
	              malloc_usable_size(p) >= 2 * (size_t)page,
	      "pvalloc rounds up to pages");
	free(p);
	for (size_t n = 1; n < 70000; n = n * 5 / 4 + 1) {
		p = malloc(n);
		CHECK(p && (uintptr_t)p % 16 == 0, "malloc(%zu) = %p", n, p);
		size_t u = malloc_usable_size(p);
		CHECK(u >= n, "usable %zu < %zu", u, n);
		memset(p, 1, u); /* all of it is ours */
		free(p);
	}
	return NULL;
}

/* The byte at offset i of a block filled by fill_pattern: it changes
 * with i, so a copy that is short, shifted or stale shows. */
static unsigned char pattern_at(size_t i)
{
	return (unsigned char)(i * 7 + (i >> 8) * 13 + 1);
}

static void fill_pattern(unsigned char *p, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		p[i] = pattern_at(i);
}

/* The first offset in [0, n) whose byte is not the pattern's, or n. */
static size_t pattern_bad(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != pattern_at(i))
			return i;
	return n;
}

/* realloc keeps every byte of the old block that fits in the new one
 * (all of it, not a prefix), growing through every size class into
 * large objects and shrinking back; calloc zeroes every byte of a block
 * that reuses dirty memory, whether one count or many. */
const char *test_realloc_calloc(void)
{
	unsigned char *p = realloc(NULL, 10);
	CHECK(p, "realloc(NULL, 10)");
	fill_pattern(p, 0, 10);
	size_t had = 10, bad;
	for (size_t n = 15; n < (8u << 20); n = n * 3 / 2) {
		p = realloc(p, n);
		CHECK(p, "realloc to %zu", n);
		CHECK((bad = pattern_bad(p, had)) == had,
		      "realloc %zu -> %zu: byte %zu is %#x, not %#x", had, n,
		      bad, p[bad], pattern_at(bad));
		fill_pattern(p, had, n);
		had = n;
	}
	for (size_t n = had / 3; n >= 5; n = n / 3) {
		p = realloc(p, n);
		CHECK(p, "shrink to %zu", n);
		CHECK((bad = pattern_bad(p, n)) == n,
		      "shrink to %zu: byte %zu is %#x, not %#x", n, bad, p[bad],
		      pattern_at(bad));
	}
	errno = 0;
	CHECK(realloc(p, 0) == NULL, "realloc(p, 0) frees, returns NULL");
	for (int round = 0; round < 200; round++) {
		size_t n = 8 + (size_t)round * 97, count = round % 2 ? 8 : 1;
		unsigned char *d = malloc(n);
		CHECK(d, "malloc(%zu)", n);
		memset(d, 0xff, n);
		free(d);
		unsigned char *z = calloc(count, n / count);
		CHECK(z, "calloc(%zu, %zu)", count, n / count);
		for (size_t i = 0; i < n / count * count; i++)
			CHECK(z[i] == 0, "calloc(%zu, %zu) byte %zu is %#x",
			      count, n / count, i, z[i]);
		free(z);
	}
	return NULL;
}

/* calloc of a large block of fresh memory writes none of it: it stays
 * out of memory until used (it was all written: 4 GiB took 11.6 s and
 * 4 GiB of memory). In a fresh process, whose heap holds no freed (dirty)
 * pages that the block could reuse. */
int scenario_calloc_untouched(void)
{
	const size_t n = (size_t)1 << 30;
	unsigned char *p = calloc(1, n);
	if (!p)
		return 2;
	size_t np = n / 4096, resident = 0;
	unsigned char *v = malloc(np);
	if (!v || mincore(p, n, v) != 0)
		return 3;
	for (size_t i = 0; i < np; i++)
		resident += v[i] & 1;
	free(v);
	bool zero = p[0] == 0 && p[n / 2] == 0 && p[n - 1] == 0;
	free(p);
	if (!zero)
		return 4;
	if (resident >= np / 100) {
		fprintf(stderr, "%zu of %zu pages resident after calloc\n",
		        resident, np);
		return 5;
	}
	return 0;
}

const char *test_calloc_large_untouched(void)
{
	int st = run_scenario("calloc-untouched", NULL, NULL, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "calloc of 1 GiB: status %#x (5: written)", st);
	return NULL;
}

/* calloc of memory the scavenger gave back while the program held it
 * locked (mlock, mlockall's MCL_FUTURE) reads zero. madvise(MADV_DONTNEED)
 * refuses locked pages, so they keep what they held, and the heap took
 * them for zero (scavenged): calloc handed back the freed object's bytes.
 * In a fresh process: the 32 MiB object starts the background threads;
 * the scavenger gives it back once freed, the pages still locked (an
 * mlock outlives the free). Until a sampled page of it reads zero (it was
 * given back, and zeroed), or 20 s, whichever first: 0xab stays there
 * otherwise, as nothing reuses the pages. Exits 10 if mlock is refused
 * (RLIMIT_MEMLOCK without the privilege to raise it). */
int scenario_calloc_locked(void)
{
	hang_guard();
	const size_t n = (size_t)32 << 20, page = 4096;
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	setrlimit(RLIMIT_MEMLOCK, &rl);
	unsigned char *p = malloc(n);
	if (!p)
		return 2;
	if (mlock(p, n) != 0) {
		free(p);
		return 10;
	}
	memset(p, 0xab, n);
	free(p);
	/* Reads the freed pages: they stay mapped (the heap's arena). */
	volatile unsigned char *v = p;
	bool given_back = false;
	for (int tries = 0; tries < 200 && !given_back; tries++) {
		usleep(100 * 1000);
		for (size_t off = 0; off < n && !given_back; off += page)
			given_back = v[off] == 0;
	}
	/* Its pages refuse madvise (EINVAL): calloc keeps errno still. */
	errno = ERANGE;
	unsigned char *c = calloc(1, n);
	if (!c)
		return 3;
	if (errno != ERANGE) {
		fprintf(stderr, "calloc(%zu) of locked pages: errno %d\n", n,
		        errno);
		return 6;
	}
	size_t nonzero = 0;
	for (size_t i = 0; i < n; i++)
		nonzero += c[i] != 0;
	free(c);
	if (nonzero) {
		fprintf(stderr,
		        "calloc(%zu) at %p (the freed object at %p): "
		        "%zu bytes not zero\n",
		        n, (void *)c, (void *)p, nonzero);
		return 5;
	}
	return 0;
}

const char *test_calloc_locked(void)
{
	int st = run_scenario("calloc-locked", NULL, NULL, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 10) {
		printf("# calloc_locked: mlock refused (RLIMIT_MEMLOCK), "
		       "not run\n");
		return NULL;
	}
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "calloc of pages given back while locked: status %#x (5: "
	      "the freed object's stale bytes; 6: errno changed)",
	      st);
	return NULL;
}
