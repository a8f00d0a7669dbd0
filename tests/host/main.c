/*
 * The host test binary: every test file under tests/host/ registers KTEST()s in
 * the "ktests" section; this runs the ones selected by argv[1] (a glob list,
 * comma-separated; more arguments are refused, status 2) and prints KTAP on
 * stdout for tools/ktap-check.
 *
 * Two environment variables narrow the set before selection:
 *   HOST_TEST_EXCLUDE=globs  leaves out the tests that match (make test-tsan
 *                            leaves out the slow single-threaded ones)
 *   HOST_TEST_FAIL_DEMO=1    lets in the suite "demo": tests that fail on
 *                            purpose, for tools/test-harness to show that
 *                            the checks catch them. Left out otherwise.
 * and in the ASan build one checks a claim about them
 * (tests/host/one_thread.c):
 *   HOST_TEST_ONE_THREAD=globs  the tests that match start no thread.
 * and one notes where the time goes:
 *   HOST_TEST_TIMES=file     each test's start, in CPU seconds of the
 *                            process (user plus system, every thread's),
 *                            and its name, one a line, then "(end)": the
 *                            format tools/slowest-tests reads (make
 *                            test-host writes $(BUILD)/host.times). CPU,
 *                            not the clock: other work loads the machine.
 */
#include "main.h"

#include "../../kernel/ktest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

extern const struct ktest __start_ktests[], __stop_ktests[];

/* When set, runner output goes here instead of stdout (see main.h). */
static char *capture_buf;
static size_t capture_size, capture_len;

void host_capture_begin(char *buf, size_t size)
{
	capture_buf = buf;
	capture_size = size;
	capture_len = 0;
	buf[0] = '\0';
}

void host_capture_end(void)
{
	capture_buf = NULL;
}

/* HOST_TEST_TIMES's file, if set and opened. */
static FILE *times_file;

static double cpu_seconds(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* A "# run SUITE.NAME" line of the outer run (a nested run's output is
 * captured, above) notes the CPU seconds at the test's start. */
static void note_time(const char *fmt, va_list ap)
{
	const char *p = fmt + strspn(fmt, " \t");
	if (strncmp(p, "# run ", 6) != 0)
		return;
	va_list copy;
	va_copy(copy, ap);
	fprintf(times_file, "%.3f ", cpu_seconds());
	vfprintf(times_file, p + 6, copy);
	va_end(copy);
}

void ktest_port_vprintf(const char *fmt, va_list ap)
{
	if (capture_buf) {
		size_t room = capture_size - capture_len;
		int n = vsnprintf(capture_buf + capture_len, room, fmt, ap);
		if (n > 0)
			capture_len += (size_t)n < room ? (size_t)n : room - 1;
		return;
	}
	if (times_file)
		note_time(fmt, ap);
	vprintf(fmt, ap);
	fflush(stdout);
}

/* Copies the registered tests that the environment lets in to a new
 * array; returns how many, or -1 if out of memory. */
static long admitted_tests(struct ktest **out)
{
	const char *exclude = getenv("HOST_TEST_EXCLUDE");
	const char *demo = getenv("HOST_TEST_FAIL_DEMO");
	bool demo_ok = demo && strcmp(demo, "1") == 0;
	size_t n = (size_t)(__stop_ktests - __start_ktests), kept = 0;
	size_t ndemo = 0, nexcluded = 0;
	struct ktest *t = malloc((n ? n : 1) * sizeof(*t));
	if (!t)
		return -1;
	for (const struct ktest *k = __start_ktests; k < __stop_ktests; k++) {
		char name[256];
		snprintf(name, sizeof(name), "%s.%s", k->suite, k->name);
		if (strcmp(k->suite, "demo") == 0 && !demo_ok)
			ndemo++;
		else if (exclude && *exclude &&
		         ktest_select_match(exclude, name))
			nexcluded++;
		else
			t[kept++] = *k;
	}
	if (ndemo)
		printf("host-test: %zu demo tests left out (they fail on "
		       "purpose: HOST_TEST_FAIL_DEMO=1 lets them in)\n",
		       ndemo);
	if (nexcluded)
		printf("host-test: %zu tests left out by "
		       "HOST_TEST_EXCLUDE='%s'\n",
		       nexcluded, exclude);
	*out = t;
	return (long)kept;
}

int main(int argc, char **argv)
{
	/* One selection only: a second glob (an unquoted list the shell
	 * split) would be left out without a word. */
	if (argc > 2) {
		fprintf(stderr,
		        "host-test: %d arguments, from '%s': give one glob "
		        "list, its globs joined by commas ('a.*,b.*')\n",
		        argc - 1, argv[2]);
		return 2;
	}
	const char *times = getenv("HOST_TEST_TIMES");
	if (times && *times) {
		times_file = fopen(times, "w");
		if (!times_file) {
			perror(times);
			return 2;
		}
		setvbuf(times_file, NULL, _IOLBF, 0);
	}
	struct ktest *tests;
	long n = admitted_tests(&tests);
	if (n < 0)
		return 1;
	enum ktest_result r =
	        ktest_run(tests, tests + n, argc > 1 ? argv[1] : "");
	free(tests);
	if (times_file) {
		fprintf(times_file, "%.3f (end)\n", cpu_seconds());
		fclose(times_file);
	}
	return r == KTEST_PASSED ? 0 : 1;
}
