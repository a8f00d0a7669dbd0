/*
 * tests/real/malloc_api_env.c: malloc-api-test's environment switches
 * (malloc_api_test.h): MM_MALLOC_BACKGROUND, MM_MALLOC_MEMBARRIER and
 * MM_MALLOC_VERBOSE take 0 or 1, and any other value is reported on
 * stderr, naming the variable and the value, and ignored.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"

/* The scenario: the heap set up and grown past 8 MiB (the background
 * threads' start, and a log line if verbose), and the slot mode read
 * (MM_MALLOC_MEMBARRIER). */
int scenario_env(void)
{
	void *v[64];
	for (int i = 0; i < 64; i++)
		memset(v[i] = malloc(256 << 10), 1, 256 << 10);
	for (int i = 0; i < 64; i++)
		free(v[i]);
	if (find_extensions())
		(void)slot_mode();
	free(malloc(100));
	return 0;
}

/* Runs scenario "env" in a fresh process with name=val, its stderr into
 * out (NUL-terminated); returns its wait status. */
static int run_env(const char *name, const char *val, char *out, size_t outsz)
{
	int fd[2];
	if (pipe(fd) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		setenv(name, val, 1);
		execl(self_exe, self_exe, "env", (char *)NULL);
		_exit(127);
	}
	return collect_child(pid, fd, out, outsz);
}

static const char *const switches[] = {
        "MM_MALLOC_BACKGROUND",
        "MM_MALLOC_MEMBARRIER",
        "MM_MALLOC_VERBOSE",
};

/* A value other than 0 or 1 is named on stderr, once, and the program
 * runs on with the default; 0 and 1 say nothing of the sort. */
const char *test_env_switches(void)
{
	static const char *const bad[] = {"no", "00", "true"};
	static const char *const good[] = {"0", "1"};
	char out[4096], want[128];
	for (size_t i = 0; i < sizeof(switches) / sizeof(switches[0]); i++) {
		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			int st = run_env(switches[i], bad[b], out, sizeof(out));
			snprintf(want, sizeof(want),
			         "mm_malloc: %s=%s: not 0 or 1; ignored",
			         switches[i], bad[b]);
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "%s=%s: status %#x, stderr '%s'", switches[i],
			      bad[b], st, out);
			char *at = strstr(out, want);
			CHECK(at && at[strlen(want)] == '\n',
			      "%s=%s: stderr '%s', no line '%s'", switches[i],
			      bad[b], out, want);
			CHECK(!strstr(at + 1, want),
			      "%s=%s: reported more than once: '%s'",
			      switches[i], bad[b], out);
		}
		for (size_t g = 0; g < sizeof(good) / sizeof(good[0]); g++) {
			int st =
			        run_env(switches[i], good[g], out, sizeof(out));
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
			              !strstr(out, "not 0 or 1"),
			      "%s=%s: status %#x, stderr '%s'", switches[i],
			      good[g], st, out);
		}
	}
	return NULL;
}
