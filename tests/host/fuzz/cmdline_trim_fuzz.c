/*
 * tests/host/fuzz/cmdline_trim_fuzz.c: libFuzzer target for the loader's
 * reading of cmdline.txt (boot/cmdline.c, cmdline_trim).
 *
 * Input: the file's bytes; as the loader does, at most CMDLINE_MAX + 1
 * of them are passed, in a heap block of exactly the room cmdline_trim
 * may use (ASan catches a byte past it). Checked, against a copy of the
 * input, the contract cmdline.h states: the result is a NUL-terminated
 * prefix of the file, without NULs or trailing blanks; a file with a NUL
 * gives nothing and names the first NUL; a file that fits loses only
 * trailing blanks; one too long keeps whole words only, and what it
 * drops starts at a word's start at or before the limit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../boot/cmdline.h"

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void fail(const char *why, size_t len,
                 const struct cmdline_trim_result *r)
{
	fprintf(stderr,
	        "cmdline_trim_fuzz: %s (file of %zu bytes: len %llu, dropped "
	        "%d, at %llu)\n",
	        why, len, (unsigned long long)r->len, (int)r->dropped,
	        (unsigned long long)r->at);
	abort();
}

/* Checks r against the file in[0, len) (len <= CMDLINE_MAX + 1). */
static void check(const char *in, size_t len, const char *s,
                  const struct cmdline_trim_result *r)
{
	const char *nul = memchr(in, 0, len);
	if (r->len > len || r->len > CMDLINE_MAX)
		fail("longer than the file or the limit", len, r);
	if (s[r->len] != 0 || memchr(s, 0, r->len))
		fail("not NUL-terminated at len, or a NUL inside", len, r);
	if (memcmp(s, in, r->len) != 0)
		fail("not a prefix of the file", len, r);
	if (r->len && is_blank(s[r->len - 1]))
		fail("ends with a blank", len, r);
	if (nul) {
		if (r->dropped != CMDLINE_NUL_BYTE || r->len != 0 ||
		    r->at != (uint64_t)(nul - in))
			fail("a NUL byte not reported as the first NUL", len,
			     r);
		return;
	}
	size_t keep = len;
	if (len > CMDLINE_MAX) {
		if (r->dropped != CMDLINE_TOO_LONG || r->at > CMDLINE_MAX ||
		    r->len > r->at)
			fail("a file too long not reported so", len, r);
		/* What is dropped starts a word: the file's start, or a
		 * byte after a blank, and no word crosses the limit kept. */
		if (r->at && !is_blank(in[r->at - 1]) && !is_blank(in[r->at]))
			fail("the cut goes through a word", len, r);
		keep = r->at;
	} else if (r->dropped != CMDLINE_WHOLE) {
		fail("a file that fits not kept whole", len, r);
	}
	for (size_t i = r->len; i < keep; i++)
		if (!is_blank(in[i]))
			fail("dropped a non-blank before the cut", len, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len = size < CMDLINE_MAX + 1 ? size : CMDLINE_MAX + 1;
	size_t room = len < CMDLINE_MAX + 1 ? len + 1 : CMDLINE_MAX + 1;
	char *s = malloc(room);
	memcpy(s, data, len);
	struct cmdline_trim_result r = cmdline_trim(s, len);
	check((const char *)data, len, s, &r);
	free(s);
	return 0;
}
