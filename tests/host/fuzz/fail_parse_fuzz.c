/*
 * tests/host/fuzz/fail_parse_fuzz.c: libFuzzer target for the failure
 * injection switch's parser (mm/spanheap_fail.c, spanheap_fail_parse),
 * which reads what an operator types: the kernel's mm.fail= and mmfail,
 * the hosted malloc's MM_MALLOC_FAIL.
 *
 * Input: the bytes up to the first NUL, as a C string. Checked against a
 * reference written here with libc, from the syntax spanheap_fail.h
 * states (interval,probability,times[,what[,seed]]): the parser accepts
 * exactly what the reference accepts, with the same values; a refusal
 * logs one mm_log line naming the switch; an acceptance logs nothing.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../mm/spanheap_fail.h"
#include "../mm_port_posix.h"

#define WHO "fuzz.fail"

/* Field [f, f + len) as a decimal in [0, hi]: digits only, no sign. */
static bool ref_number(const char *f, size_t len, uint64_t hi, uint64_t *v)
{
	if (len == 0 || len > 20 || strspn(f, "0123456789") < len)
		return false;
	char buf[21];
	memcpy(buf, f, len);
	buf[len] = '\0';
	/* 20 digits may pass 2^64: compare as strings first */
	if (len == 20 && strcmp(buf, "18446744073709551615") > 0)
		return false;
	*v = strtoull(buf, NULL, 10);
	return *v <= hi;
}

static bool ref_what(const char *f, size_t len, unsigned *what)
{
	*what = 0;
	size_t at = 0;
	for (;;) {
		const char *plus = memchr(f + at, '+', len - at);
		size_t end = plus ? (size_t)(plus - f) : len;
		size_t n = end - at;
		if (n == 5 && !memcmp(f + at, "small", 5))
			*what |= SPANHEAP_FAIL_SMALL;
		else if (n == 5 && !memcmp(f + at, "large", 5))
			*what |= SPANHEAP_FAIL_LARGE;
		else if (n == 6 && !memcmp(f + at, "atomic", 6))
			*what |= SPANHEAP_FAIL_ATOMIC_ONLY;
		else if (n == 3 && !memcmp(f + at, "all", 3))
			*what |= SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE;
		else
			return false;
		if (!plus)
			break;
		at = end + 1;
	}
	return (*what & (SPANHEAP_FAIL_SMALL | SPANHEAP_FAIL_LARGE)) != 0;
}

static bool ref_field(unsigned i, const char *f, size_t len,
                      struct spanheap_fail_attr *a)
{
	uint64_t v = 0;
	switch (i) {
	case 0:
		return ref_number(f, len, UINT32_MAX, &v) &&
		       (a->interval = (uint32_t)v, true);
	case 1:
		return ref_number(f, len, SPANHEAP_FAIL_PROB_ALL, &v) &&
		       (a->probability = (uint32_t)v, true);
	case 2:
		if (len == 2 && !memcmp(f, "-1", 2))
			return a->times = -1, true;
		return ref_number(f, len, INT64_MAX, &v) &&
		       (a->times = (int64_t)v, true);
	case 3:
		return ref_what(f, len, &a->what);
	default:
		return ref_number(f, len, UINT64_MAX, &a->seed);
	}
}

/* The reference: 3 to 5 comma-separated fields, each valid. */
static bool ref_parse(const char *s, struct spanheap_fail_attr *a)
{
	memset(a, 0, sizeof(*a));
	unsigned n = 0;
	for (const char *p = s;; n++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (n >= 5 || !ref_field(n, p, len, a))
			return false;
		if (!comma)
			break;
		p = comma + 1;
	}
	return n >= 2; /* n is the last field's index */
}

static void fail(const char *why, const char *s)
{
	fprintf(stderr, "fail_parse_fuzz: %s, for '%s'\n", why, s);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0'; /* the string ends at the input's first NUL */
	mm_port_set_quiet(true);
	unsigned long logs = mm_port_log_count();
	struct spanheap_fail_attr got, want;
	memset(&got, 0xa5, sizeof(got));
	bool ok = spanheap_fail_parse(WHO, s, &got);
	bool ref = ref_parse(s, &want);
	unsigned long logged = mm_port_log_count() - logs;
	if (ok != ref)
		fail(ok ? "accepted what the syntax refuses"
		        : "refused what the syntax accepts",
		     s);
	if (ok &&
	    (got.interval != want.interval ||
	     got.probability != want.probability || got.times != want.times ||
	     got.what != want.what || got.seed != want.seed))
		fail("accepted with other values than the syntax's", s);
	if (ok && logged != 0)
		fail("logged a line for a value it accepted", s);
	if (!ok && (logged != 1 || strncmp(mm_port_last_log(), WHO ": ",
	                                   sizeof(WHO ": ") - 1) != 0))
		fail("refused without one line naming the switch", s);
	free(s);
	return 0;
}
