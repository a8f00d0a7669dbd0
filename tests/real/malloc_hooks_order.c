/*
 * tests/real/malloc_hooks_order.c: the library's lock order (malloc/locks.c)
 * is checked at run time, its own three locks with mm's: a wrong nesting
 * of any two panics naming both, a right one passes. The test variant's
 * mm_malloc_test_lock_nest takes the real locks, in a fork child each.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_hooks_test.h"

extern int mm_malloc_test_lock_nest(const char *outer, const char *inner)
        __attribute__((weak));

static const char *nest_outer, *nest_inner; /* nest_child's, for its child */

static void nest_in_child(int fd)
{
	dup2(fd, 2);
	alarm(60); /* a wrong order that deadlocks dies of SIGALRM */
	_exit(mm_malloc_test_lock_nest(nest_outer, nest_inner) == 0 ? 0 : 3);
}

/* Runs mm_malloc_test_lock_nest(outer, inner) in a fork child whose
 * stderr goes into out (NUL-ended); returns its wait status, -1 if it
 * could not run. The child exits 0 if the nest returned 0, else 3. */
static int nest_child(const char *outer, const char *inner, char *out,
                      size_t outsz)
{
	nest_outer = outer;
	nest_inner = inner;
	return hooks_child(nest_in_child, out, outsz); /* the heap lock made */
}

static const struct {
	const char *outer, *inner;
	const char *panic; /* in the report; NULL: a right order */
} nests[] = {
        {"heap", "ctl",
         "lock order: ctl_lock taken while holding an mm lock of rank 4 "
         "(MM_RANK_HEAP)"},
        {"heap", "visit",
         "lock order: visit_lock taken while holding an mm lock of rank 4 "
         "(MM_RANK_HEAP)"},
        {"heap", "shootdown",
         "lock order: shootdown_lock taken while holding an mm lock of "
         "rank 4 (MM_RANK_HEAP)"},
        {"visit", "ctl", "lock order: ctl_lock taken while holding visit_lock"},
        {"shootdown", "ctl",
         "lock order: ctl_lock taken while holding shootdown_lock"},
        {"shootdown", "visit",
         "lock order: visit_lock taken while holding shootdown_lock"},
        {"shootdown", "heap",
         "mm lock heap (rank 4) taken while holding shootdown_lock"},
        {"ctl", "visit", NULL},
        {"ctl", "heap", NULL},
        {"ctl", "shootdown", NULL},
        {"visit", "heap", NULL},
        {"visit", "shootdown", NULL},
};

/*
 * Each nest of the table in a child: a wrong one dies of SIGABRT with a
 * report naming both locks, a right one exits 0. Until this version the
 * library's own locks were ordered in comments only: every wrong nest
 * here but none of mm's passed unseen (exit 0), and shootdown_lock,
 * which is not mm's, let an mm lock be taken under it.
 */
int lock_order_checked(void)
{
	if (!mm_malloc_test_lock_nest) {
		fprintf(stderr, "mm_malloc_test_lock_nest not found");
		return 1;
	}
	int failed = 0;
	for (size_t i = 0; i < sizeof(nests) / sizeof(nests[0]); i++) {
		char out[1024];
		int st = nest_child(nests[i].outer, nests[i].inner, out,
		                    sizeof(out));
		bool ok = nests[i].panic
		                  ? WIFSIGNALED(st) &&
		                            WTERMSIG(st) == SIGABRT &&
		                            strstr(out, nests[i].panic)
		                  : WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
		                            !strstr(out, "lock order");
		if (!ok) {
			fprintf(stderr,
			        "%s then %s: status %#x, want %s; stderr: %s\n",
			        nests[i].outer, nests[i].inner, st,
			        nests[i].panic ? nests[i].panic : "exit 0",
			        out);
			failed = 1;
		}
	}
	return failed;
}
