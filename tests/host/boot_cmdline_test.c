/* Host tests of boot/cmdline.c: what the loader makes of cmdline.txt. */
#include "../../boot/cmdline.h"
#include "../../kernel/ktest.h"

#include <stdlib.h>
#include <string.h>

/* Trims a copy of text[0, len) in a heap block of the size cmdline_trim
 * may use (ASan catches any access past it); *out gets the result. */
static struct cmdline_trim_result trim(const char *text, size_t len, char **out)
{
	size_t room = len < CMDLINE_MAX + 1 ? len + 1 : CMDLINE_MAX + 1;
	char *s = malloc(room);

	memcpy(s, text, len);
	*out = s;
	return cmdline_trim(s, len);
}

KTEST(boot_cmdline, blanks_and_line_ends_are_trimmed)
{
	static const char text[] = "ktest=elf.* smp.expect=4 \r\n\t\n";
	char *s;
	struct cmdline_trim_result r = trim(text, sizeof(text) - 1, &s);

	KEXPECT_STREQ(s, "ktest=elf.* smp.expect=4");
	KEXPECT_EQ(r.len, strlen("ktest=elf.* smp.expect=4"));
	KEXPECT_EQ(r.dropped, CMDLINE_WHOLE);
	free(s);
	r = trim("", 0, &s);
	KEXPECT_STREQ(s, "");
	KEXPECT_EQ(r.len, 0);
	KEXPECT_EQ(r.dropped, CMDLINE_WHOLE);
	free(s);
}

/* "ktest=x" saved as UTF-16LE with its byte order mark, and a NUL in the
 * middle of ASCII text: neither passes on a part of the file. */
KTEST(boot_cmdline, nul_byte_empties_the_command_line)
{
	static const char utf16[] = "\xff\xfek\0t\0e\0s\0t\0=\0x\0";
	static const char mid[] = "ktest=elf.*\0 smp.skip_sipi=2";
	char *s;
	struct cmdline_trim_result r = trim(utf16, sizeof(utf16) - 1, &s);

	KEXPECT_STREQ(s, "");
	KEXPECT_EQ(r.len, 0);
	KEXPECT_EQ(r.dropped, CMDLINE_NUL_BYTE);
	KEXPECT_EQ(r.at, 3);
	free(s);
	r = trim(mid, sizeof(mid) - 1, &s);
	KEXPECT_STREQ(s, "");
	KEXPECT_EQ(r.len, 0);
	KEXPECT_EQ(r.dropped, CMDLINE_NUL_BYTE);
	KEXPECT_EQ(r.at, 11);
	free(s);
}

/* A file over CMDLINE_MAX bytes (the loader reads one byte more): the
 * word the cut goes through is left out whole, not passed on cut short. */
KTEST(boot_cmdline, word_cut_by_the_size_limit_is_dropped)
{
	char file[CMDLINE_MAX + 64];
	size_t pad = CMDLINE_MAX - strlen(" smp.skip_sipi=1");
	char *s;
	struct cmdline_trim_result r;

	memset(file, 'a', pad);
	memcpy(file, "x=", 2);
	strcpy(file + pad, " smp.skip_sipi=12 ktest=*");
	r = trim(file, CMDLINE_MAX + 1, &s);
	KEXPECT_EQ(r.dropped, CMDLINE_TOO_LONG);
	KEXPECT_EQ(r.at, pad + 1);
	KEXPECT_EQ(r.len, pad);
	KEXPECT_EQ(strlen(s), pad);
	KEXPECT(strstr(s, "skip_sipi") == NULL);
	free(s);

	/* The limit falls on a blank: the words before it are whole. */
	file[CMDLINE_MAX] = ' ';
	r = trim(file, CMDLINE_MAX + 1, &s);
	KEXPECT_EQ(r.dropped, CMDLINE_TOO_LONG);
	KEXPECT_EQ(r.at, CMDLINE_MAX);
	KEXPECT_EQ(r.len, CMDLINE_MAX);
	free(s);

	/* One word longer than the limit: nothing is left. */
	memset(file, 'a', sizeof(file));
	r = trim(file, CMDLINE_MAX + 1, &s);
	KEXPECT_EQ(r.dropped, CMDLINE_TOO_LONG);
	KEXPECT_EQ(r.at, 0);
	KEXPECT_EQ(r.len, 0);
	KEXPECT_STREQ(s, "");
	free(s);

	/* Exactly CMDLINE_MAX bytes is a whole file. */
	memcpy(file, "x=", 2);
	r = trim(file, CMDLINE_MAX, &s);
	KEXPECT_EQ(r.dropped, CMDLINE_WHOLE);
	KEXPECT_EQ(r.len, CMDLINE_MAX);
	free(s);
}
