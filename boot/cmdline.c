/* The command line from cmdline.txt: portable C, tested on the host. */
#include "cmdline.h"

#include <stdbool.h>

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Returns the offset of the first NUL in s[0, len), or len. */
static uint64_t find_nul(const char *s, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++) {
		if (s[i] == 0)
			return i;
	}
	return len;
}

struct cmdline_trim_result cmdline_trim(char *s, uint64_t len)
{
	struct cmdline_trim_result r = {len, CMDLINE_WHOLE, 0};
	uint64_t nul = find_nul(s, len);

	if (nul < len) {
		r = (struct cmdline_trim_result){0, CMDLINE_NUL_BYTE, nul};
	} else if (len > CMDLINE_MAX) {
		/* s[CMDLINE_MAX] is the first byte past the limit: unless
		 * it or the byte before is a blank, the cut went through a
		 * word, which goes back to its start. */
		r = (struct cmdline_trim_result){CMDLINE_MAX, CMDLINE_TOO_LONG,
		                                 CMDLINE_MAX};
		if (!is_blank(s[CMDLINE_MAX])) {
			while (r.len && !is_blank(s[r.len - 1]))
				r.len--;
			r.at = r.len;
		}
	}
	while (r.len && is_blank(s[r.len - 1]))
		r.len--;
	s[r.len] = 0;
	return r;
}
