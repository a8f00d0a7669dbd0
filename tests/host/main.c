/*
 * The host test binary: every test file under tests/host/ registers KTEST()s in
 * the "ktests" section; this runs the ones selected by argv[1] (a glob list)
 * and prints KTAP on stdout for tools/ktap-check.
 */
#include "main.h"

#include "../../kernel/ktest.h"

#include <stdio.h>

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

void ktest_port_vprintf(const char *fmt, va_list ap)
{
	if (capture_buf) {
		size_t room = capture_size - capture_len;
		int n = vsnprintf(capture_buf + capture_len, room, fmt, ap);
		if (n > 0)
			capture_len += (size_t)n < room ? (size_t)n : room - 1;
		return;
	}
	vprintf(fmt, ap);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	enum ktest_result r = ktest_run(__start_ktests, __stop_ktests,
	                                argc > 1 ? argv[1] : "");
	return r == KTEST_PASSED ? 0 : 1;
}
