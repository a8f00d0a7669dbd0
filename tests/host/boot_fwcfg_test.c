/* Host tests of boot/fwcfg.c: finding a file in fw_cfg's directory. */
#include "../../boot/fwcfg.h"
#include "../../kernel/ktest.h"

#include <stdlib.h>
#include <string.h>

/* Writes a directory entry as QEMU does: big-endian size and select, the
 * name in its 56 bytes (cut, without a NUL, when it does not fit). */
static void put_entry(uint8_t *e, uint32_t size, uint16_t select,
                      const char *name)
{
	size_t len = strlen(name);

	memset(e, 0, FWCFG_ENTRY_SIZE);
	e[0] = size >> 24;
	e[1] = size >> 16;
	e[2] = size >> 8;
	e[3] = size;
	e[4] = select >> 8;
	e[5] = select;
	memcpy(e + 8, name, len < FWCFG_NAME_MAX ? len : FWCFG_NAME_MAX);
}

/* A directory in a heap block of exactly its size, so ASan sees any read
 * past its last entry. */
static uint8_t *dir_of(uint32_t n)
{
	return malloc((size_t)n * FWCFG_ENTRY_SIZE);
}

KTEST(boot_fwcfg, finds_a_file_and_decodes_its_entry)
{
	uint8_t *dir = dir_of(3);
	struct fwcfg_file f;

	put_entry(dir, 0x1234, 0x20, "etc/e820");
	put_entry(dir + 64, 0x00292038, 0x0123, FWCFG_KERNEL);
	put_entry(dir + 128, 27, 0x0124, FWCFG_CMDLINE);
	KEXPECT_EQ(fwcfg_find(dir, 3, FWCFG_KERNEL, &f), 0);
	KEXPECT_EQ(f.size, 0x00292038);
	KEXPECT_EQ(f.select, 0x0123);
	KEXPECT_STREQ(f.name, FWCFG_KERNEL);
	KEXPECT_EQ(fwcfg_find(dir, 3, FWCFG_CMDLINE, &f), 0);
	KEXPECT_EQ(f.size, 27);
	KEXPECT_EQ(f.select, 0x0124);
	KEXPECT_EQ(fwcfg_find(dir, 3, "etc/e820", &f), 0);
	KEXPECT_EQ(f.select, 0x20);
	free(dir);
}

/* A prefix, an extension, an empty directory and an entry past n: none is
 * the file. */
KTEST(boot_fwcfg, only_the_whole_name_matches)
{
	uint8_t *dir = dir_of(2);
	struct fwcfg_file f;

	put_entry(dir, 1, 0x30, "opt/gantry/kernel.old");
	put_entry(dir + 64, 1, 0x31, "opt/gantry/kern");
	KEXPECT_EQ(fwcfg_find(dir, 2, FWCFG_KERNEL, &f), -1);
	KEXPECT_EQ(fwcfg_find(dir, 0, "opt/gantry/kern", &f), -1);
	KEXPECT_EQ(fwcfg_find(dir, 1, "opt/gantry/kern", &f), -1);
	KEXPECT_EQ(fwcfg_find(dir, 2, "opt/gantry/kern", &f), 0);
	KEXPECT_EQ(f.select, 0x31);
	/* Names that differ only in their last byte, the 55th. */
	put_entry(dir, 1, 0x32,
	          "opt/gantry/0123456789012345678901234567890123456789abcA");
	KEXPECT_EQ(fwcfg_find(dir, 1,
	                      "opt/gantry/"
	                      "0123456789012345678901234567890123456789abcB",
	                      &f),
	           -1);
	free(dir);
}

/* A name field of 56 bytes with no NUL names nothing: neither its first
 * 56 bytes nor a longer name that starts with them. */
KTEST(boot_fwcfg, a_name_field_without_its_nul_matches_nothing)
{
	char name[80];
	uint8_t *dir = dir_of(1);
	struct fwcfg_file f;

	memset(name, 'a', sizeof(name));
	name[79] = 0;
	put_entry(dir, 1, 0x40, name);
	KEXPECT_EQ(fwcfg_find(dir, 1, name, &f), -1);
	name[FWCFG_NAME_MAX] = 0;
	KEXPECT_EQ(fwcfg_find(dir, 1, name, &f), -1);
	name[FWCFG_NAME_MAX - 1] = 0; /* 55 bytes and the NUL: fits */
	put_entry(dir, 1, 0x41, name);
	KEXPECT_EQ(fwcfg_find(dir, 1, name, &f), 0);
	KEXPECT_EQ(f.select, 0x41);
	KEXPECT_EQ(strlen(f.name), FWCFG_NAME_MAX - 1);
	free(dir);
}

KTEST(boot_fwcfg, be32_reads_big_endian)
{
	static const uint8_t b[4] = {0x12, 0x34, 0x56, 0x78};

	KEXPECT_EQ(fwcfg_be32(b), 0x12345678);
}

static int wait_of(const char *text, unsigned *secs)
{
	*secs = 12345;
	return fwcfg_wait_seconds(text, strlen(text), secs);
}

/* \fwcfg-wait: empty or blank is the default, else seconds in range. */
KTEST(boot_fwcfg, wait_seconds_reads_the_marker)
{
	unsigned secs;

	KEXPECT_EQ(wait_of("", &secs), 0);
	KEXPECT_EQ(secs, FWCFG_WAIT_DEFAULT);
	KEXPECT_EQ(wait_of(" \r\n", &secs), 0);
	KEXPECT_EQ(secs, FWCFG_WAIT_DEFAULT);
	KEXPECT_EQ(wait_of("1\n", &secs), 0);
	KEXPECT_EQ(secs, 1);
	KEXPECT_EQ(wait_of(" 3600 ", &secs), 0);
	KEXPECT_EQ(secs, FWCFG_WAIT_MAX);
}

/* Anything else is refused, *secs untouched. */
KTEST(boot_fwcfg, wait_seconds_refuses_what_is_not_seconds)
{
	static const char *const bad[] = {
	        "0",  "3601", "-1", "+5",
	        "5s", "5 6",  "x",  "99999999999999999999",
	};
	unsigned secs;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		KEXPECT_EQ(wait_of(bad[i], &secs), -1);
		KEXPECT_EQ(secs, 12345);
	}
}
