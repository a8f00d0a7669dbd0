/*
 * tests/real/malloc_api_altstack.c: malloc-api-test's test that a signal
 * handler running on a sigaltstack of the platform's SIGSTKSZ
 * (sysconf(_SC_SIGSTKSZ)) can allocate and free through the slow paths:
 * the first call of each class in the handler's own slot (a refill from
 * the central lists), page-heap allocations up to the handler's 256 KiB,
 * calloc, realloc's growth and aligned allocations, then their frees.
 *
 * The alternate stack is mapped with a PROT_NONE page below it and
 * painted first, so an overflow ends the child with SIGSEGV, and what is
 * left of the paint gives the high-water mark. The handler notes its
 * depth on entry (the kernel's signal frame, its xsave area included);
 * the rest is malloc's. Checks: the child exits 0 (no overflow), and
 * malloc's part is at most ALTSTACK_MALLOC_MAX, the figure README.md
 * gives programs ("a signal handler's stack"). Then, as reports only
 * (they depend on the CPU's xsave area and the kernel), the same on
 * stacks of sysconf(_SC_MINSIGSTKSZ) and of the old constants SIGSTKSZ
 * (8192) and MINSIGSTKSZ (2048): one line each says how it ended.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"
#include "proc_read.h"

enum { ALTSTACK_MALLOC_MAX = 8192, PAINT = 0xa5, SIGNALS = 40 };

static const size_t sizes[] = {16, 100, 700, 3000, 12000, 50000, 90000, 200000};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static unsigned char *alt_lo;
static size_t alt_size, entry_depth, nonnull[NSIZES];
static unsigned serial;

static void altstack_handler(int sig)
{
	(void)sig;
	int saved = errno;
	volatile char here;
	size_t d = (size_t)(alt_lo + alt_size - (unsigned char *)&here);
	if (d > entry_depth)
		entry_depth = d;
	void *p[NSIZES];
	unsigned k = serial++;
	for (size_t i = 0; i < NSIZES; i++) {
		size_t n = sizes[i];
		if (k % 4 == 1)
			p[i] = calloc(1, n);
		else if (k % 4 == 2)
			p[i] = aligned_alloc(4096, n);
		else
			p[i] = malloc(n);
		if (p[i] && k % 4 == 3) { /* NULL allowed: MM_ATOMIC */
			void *q = realloc(p[i], n + n / 2);
			if (q)
				p[i] = q;
		}
		if (p[i]) {
			memset(p[i], 0x5a, n);
			nonnull[i]++;
		}
	}
	for (size_t i = 0; i < NSIZES; i++)
		free(p[i]);
	errno = saved;
}

/* In the child: the handler on a stack of alt_size bytes, SIGNALS times,
 * the main thread's allocations between them; writes "entry E mark M"
 * (bytes from the stack's top), the successes per size and the threads
 * before and after the first signal to stderr. The parent's background
 * threads run, so the child's first call, the handler's, starts its own
 * (malloc/fork.c: pthread_create on the alternate stack). */
static void run_on_altstack(void)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len =
	        (alt_size + (size_t)page - 1) / (size_t)page * (size_t)page;
	unsigned char *m =
	        mmap(NULL, len + (size_t)page, PROT_READ | PROT_WRITE,
	             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || mprotect(m, (size_t)page, PROT_NONE) != 0)
		_exit(6);
	alt_lo = m + (size_t)page + len - alt_size; /* the guard right below */
	memset(alt_lo, PAINT, alt_size);
	stack_t ss = {.ss_sp = alt_lo, .ss_size = alt_size};
	if (sigaltstack(&ss, NULL) != 0) {
		dprintf(2, "sigaltstack: %s\n", strerror(errno));
		_exit(7);
	}
	struct sigaction sa = {.sa_handler = altstack_handler,
	                       .sa_flags = SA_ONSTACK};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		_exit(6);
	int threads0 = proc_thread_count();
	raise(SIGUSR1); /* the child's first call */
	int threads1 = proc_thread_count();
	for (int s = 0; s < SIGNALS; s++) {
		void *keep[64];
		for (int i = 0; i < 64; i++)
			keep[i] =
			        malloc(sizes[(size_t)(i + s) % NSIZES] / 2 + 1);
		raise(SIGUSR1);
		for (int i = 0; i < 64; i++)
			free(keep[i]);
	}
	size_t low = 0;
	while (low < alt_size && alt_lo[low] == PAINT)
		low++;
	dprintf(2, "entry %zu mark %zu", entry_depth, alt_size - low);
	for (size_t i = 0; i < NSIZES; i++)
		dprintf(2, " %zu", nonnull[i]);
	dprintf(2, " threads %d %d\n", threads0, threads1);
	_exit(0);
}

const char *test_altstack_allocs(void)
{
	char out[512];
	long sig = sysconf(_SC_SIGSTKSZ), min = sysconf(_SC_MINSIGSTKSZ);
	alt_size = sig > 0 ? (size_t)sig : SIGSTKSZ;
	free(malloc((size_t)9 << 20)); /* past the background threads' 8 MiB */
	free(malloc(64));              /* the next call starts them */
	int st = in_child(run_on_altstack, out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "on a %zu-byte sigaltstack (SIGSTKSZ): status %#x (SIGSEGV: "
	      "overflowed), stderr: %s",
	      alt_size, st, out);
	size_t entry, mark, n[NSIZES];
	int t0, t1;
	CHECK(sscanf(out,
	             "entry %zu mark %zu %zu %zu %zu %zu %zu %zu %zu %zu "
	             "threads %d %d",
	             &entry, &mark, &n[0], &n[1], &n[2], &n[3], &n[4], &n[5],
	             &n[6], &n[7], &t0, &t1) == 12,
	      "the child's report: %s", out);
	printf("# altstack: SIGSTKSZ %zu: the kernel's frame %zu bytes, "
	       "malloc's %zu more (mark %zu); threads %d, %d after the "
	       "handler's first call\n",
	       alt_size, entry, mark - entry, mark, t0, t1);
	CHECK(mark - entry <= ALTSTACK_MALLOC_MAX,
	      "malloc used %zu bytes of the handler's stack, past the %d "
	      "README.md promises",
	      mark - entry, ALTSTACK_MALLOC_MAX);
	for (size_t i = 0; i < NSIZES; i++)
		CHECK(n[i] > 0, "the handler's %zu-byte allocations all failed",
		      sizes[i]);
	/* Reports only: what the smaller stacks do here. */
	const size_t others[] = {min > 0 ? (size_t)min : 0, 8192, 2048};
	const char *names[] = {"_SC_MINSIGSTKSZ", "the old SIGSTKSZ",
	                       "the old MINSIGSTKSZ"};
	for (size_t i = 0; i < 3; i++) {
		if (!others[i])
			continue;
		alt_size = others[i];
		st = in_child(run_on_altstack, out, sizeof(out));
		printf("# altstack: %s, %zu bytes: %s %d%s%.*s\n", names[i],
		       alt_size,
		       WIFSIGNALED(st) ? "killed by signal" : "exit status",
		       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
		       out[0] ? ": " : "", (int)strcspn(out, "\n"), out);
	}
	return NULL;
}
