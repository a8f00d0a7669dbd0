/* The loader's reading of cmdline.txt into the command line the kernel
 * gets: portable C, tested on the host. */
#ifndef BOOT_CMDLINE_H
#define BOOT_CMDLINE_H

#include <stdint.h>

/* With its NUL the command line fills exactly one page. */
#define CMDLINE_MAX 4095u

/* What cmdline_trim left out, for the loader to say. */
enum cmdline_dropped {
	CMDLINE_WHOLE = 0,    /* nothing but trailing blanks */
	CMDLINE_NUL_BYTE = 1, /* the file holds a NUL: all of it */
	CMDLINE_TOO_LONG = 2, /* over CMDLINE_MAX: from the cut word on */
};

struct cmdline_trim_result {
	uint64_t len;                 /* the command line's bytes */
	enum cmdline_dropped dropped; /* and what was left out */
	uint64_t at;                  /* the NUL's offset, or where the
	                                 left-out words begin */
};

/*
 * Turns s[0, len), the first len bytes of cmdline.txt, into the command
 * line in place, NUL-terminated, without trailing blanks and line ends.
 * The loader reads up to CMDLINE_MAX + 1 bytes (a page): len beyond
 * CMDLINE_MAX says the file is too long, and the byte past the limit
 * says whether the cut went through a word. s has room for
 * min(len + 1, CMDLINE_MAX + 1) bytes.
 *   - A file holding a NUL byte gives an empty command line: it is not
 *     text (one saved as UTF-16 has a NUL after its first character),
 *     and the part before the NUL would run without the options after it.
 *   - A file too long loses every word from the one the cut goes
 *     through: cut short, a value can read as another valid one
 *     ("smp.skip_sipi=12" as 1).
 */
struct cmdline_trim_result cmdline_trim(char *s, uint64_t len);

#endif
