/* Between the shell's files (shell*.c) only: the command table and the
 * helpers every command uses. */
#ifndef KERNEL_SHELL_INTERNAL_H
#define KERNEL_SHELL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm/objcache.h"

#define SHELL_MAX_ARGS 8

/* A command's exit status. */
enum shell_status {
	SHELL_OK = 0,
	SHELL_FAILED = 1,      /* it ran and something is wrong */
	SHELL_USAGE = 2,       /* bad arguments: nothing was done */
	SHELL_INTERRUPTED = 3, /* Ctrl-C stopped it early (it cleaned up) */
};

struct shell_cmd {
	const char *name;
	const char *args; /* usage, "" for none */
	const char *help; /* one line */
	enum shell_status (*fn)(int argc, char **argv);
};

/* The commands of each file, NULL-name terminated. */
extern const struct shell_cmd shell_mem_cmds[];     /* shell_mem.c */
extern const struct shell_cmd shell_debug_cmds[];   /* shell_debug.c */
extern const struct shell_cmd shell_heapmap_cmds[]; /* shell_heapmap.c */
extern const struct shell_cmd shell_stress_cmds[];  /* shell_stress.c */
extern const struct shell_cmd shell_sys_cmds[];     /* shell_sys.c */

/* The named caches' lines, filled by slabinfo and alloctraces (the shell
 * thread's own: one command at a time; shell_mem.c). */
extern struct objcache_info shell_caches[OBJCACHE_MAX];

/* Every table above, in help's order (shell.c). */
extern const struct shell_cmd *const shell_cmd_tables[];
extern const size_t shell_cmd_ntables;

/* The longest "name args" help shows whole, its NUL aside. */
#define SHELL_USE_MAX 127

/* Starts the heapmap stream if the command line says "shell.heapmap=MS".
 * The shell thread, before its first prompt. */
void shell_heapmap_boot(void);

/* Parses a decimal number in [lo, hi] into *out; false, after printing
 * "cmd: NAME 'arg' is not a number in [lo, hi]" (name: the argument's, as
 * the command's usage writes it), when it is not one. */
bool shell_parse_uint(const char *cmd, const char *name, const char *arg,
                      uint64_t lo, uint64_t hi, uint64_t *out);

/* Prints "cmd: usage: cmd args" ("cmd (no arguments)" for a command that
 * takes none) and returns SHELL_USAGE. */
enum shell_status shell_usage(const struct shell_cmd *c);

/* True when ANSI colours may be used (not "shell.notty"). */
bool shell_tty(void);

/* True once Ctrl-C was typed during the running command. */
bool shell_interrupted(void);

/* The status of the last command run (for `exit`). */
enum shell_status shell_last_status(void);

/* Prints n in units of 1/10: "12.3". */
void shell_print_tenths(uint64_t tenths);

/* Bytes as "123 KiB", "4.5 MiB": into buf. */
void shell_format_bytes(char *buf, size_t size, uint64_t bytes);

#endif
