/* QEMU's firmware configuration device (fw_cfg): what the loader reads
 * from it, and the directory parser, which is portable C tested on the
 * host. The layout is QEMU's docs/specs/fw_cfg.rst; every multi-byte
 * field of the directory and of a DMA request is big-endian. */
#ifndef BOOT_FWCFG_H
#define BOOT_FWCFG_H

#include <stddef.h>
#include <stdint.h>

/* The kernel and its command line, given with QEMU's
 * -fw_cfg name=opt/gantry/kernel,file=... (user names live under opt/). */
#define FWCFG_KERNEL  "opt/gantry/kernel"
#define FWCFG_CMDLINE "opt/gantry/cmdline"

/* Selector keys. */
#define FWCFG_KEY_SIGNATURE 0x0000 /* "QEMU" */
#define FWCFG_KEY_ID        0x0001 /* feature bits, little-endian */
#define FWCFG_KEY_FILE_DIR  0x0019

#define FWCFG_ID_DMA 0x2u /* the DMA interface is there */

/* A DMA request's control word. */
#define FWCFG_DMA_ERROR  0x01u
#define FWCFG_DMA_READ   0x02u
#define FWCFG_DMA_SELECT 0x08u /* the selector is in the top 16 bits */

#define FWCFG_NAME_MAX   56 /* a name's room, its NUL included */
#define FWCFG_ENTRY_SIZE 64 /* size, select, reserved, name */

/* One file of the directory, in host byte order. */
struct fwcfg_file {
	uint32_t size;
	uint16_t select;
	char name[FWCFG_NAME_MAX];
};

/*
 * Looks for name among the n directory entries at dir (the bytes after
 * the directory's count). Returns 0 with *out filled, or -1 when no entry
 * has that name. An entry's name is compared only up to its 56 bytes: a
 * name that fills them without a NUL matches nothing, and a name longer
 * than 55 bytes is never found.
 */
int fwcfg_find(const uint8_t *dir, uint32_t n, const char *name,
               struct fwcfg_file *out);

/* How long a loader told to wait (\fwcfg-wait) waits for its kernel. */
#define FWCFG_WAIT_DEFAULT 60
#define FWCFG_WAIT_MAX     3600

/*
 * Reads \fwcfg-wait's text, s[0, len): empty or blank, the default; else
 * a decimal number of seconds in [1, FWCFG_WAIT_MAX], blanks and line
 * ends around it allowed. Returns 0 with *secs set, or -1 for anything
 * else (a sign, a second word, a number out of range).
 */
int fwcfg_wait_seconds(const char *s, uint64_t len, unsigned *secs);

/* The big-endian 32-bit value at p. */
uint32_t fwcfg_be32(const uint8_t *p);

#endif
