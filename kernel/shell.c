/*
 * The shell's core (see shell.h): the thread, the prompt loop, splitting
 * a line into words, finding the command, and the helpers the commands
 * share. The commands live in shell_mem.c (memory), shell_heapmap.c,
 * shell_stress.c and shell_sys.c (the rest of the kernel).
 *
 * Basic algorithm, per line:
 *   1. print the prompt; feed keystrokes to the line editor until it
 *      completes a line, a Ctrl-C, an overlong line or one input was
 *      dropped from (a one-line error for either);
 *   2. split the line at spaces (at most SHELL_MAX_ARGS words);
 *   3. run the command between conin_command_begin/_end, so a Ctrl-C
 *      typed meanwhile sets the flag the command polls, and keep its
 *      status for `exit`.
 */
#include "kernel/shell.h"

#include <stdatomic.h>

#include "arch/x86_64/serial.h"
#include "kernel/bootinfo.h"
#include "kernel/conin.h"
#include "kernel/format.h"
#include "kernel/lineedit.h"
#include "kernel/printk.h"
#include "kernel/shell_internal.h"
#include "kernel/shell_testing.h"
#include "kernel/string.h"
#include "kernel/thread.h"

#define PROMPT "gantry> "

static void editor_out(void *ctx, const char *s, size_t n, const char *line);

/* The shell thread's own: */
static struct lineedit editor = {.out = editor_out}; /* lineedit_init's */
static char line[LINEEDIT_MAX + 1];
static enum shell_status last_status;
/* Immutable after shell_start (a test may set it while no shell runs): */
static bool tty;

const struct shell_cmd *const shell_cmd_tables[] = {
        shell_sys_cmds,     shell_mem_cmds,    shell_debug_cmds,
        shell_heapmap_cmds, shell_stress_cmds,
};
const size_t shell_cmd_ntables =
        sizeof(shell_cmd_tables) / sizeof(shell_cmd_tables[0]);

bool shell_tty(void)
{
	return tty;
}

bool shell_interrupted(void)
{
	return conin_interrupted();
}

enum shell_status shell_last_status(void)
{
	return last_status;
}

bool shell_parse_uint(const char *cmd, const char *name, const char *arg,
                      uint64_t lo, uint64_t hi, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = arg;
	bool over = false;
	for (; *p >= '0' && *p <= '9' && !over; p++) {
		unsigned d = (unsigned)(*p - '0');
		/* v * 10 + d > hi, asked without overflowing: a value past
		 * 2^64 must not wrap to a small one in range. */
		over = v > hi / 10 || d > hi - v * 10;
		v = v * 10 + d;
	}
	if (*p || p == arg || over || v < lo) {
		printk("%s: %s '%s' is not a number in [%llu, %llu]\n", cmd,
		       name, arg, (unsigned long long)lo,
		       (unsigned long long)hi);
		return false;
	}
	*out = v;
	return true;
}

enum shell_status shell_usage(const struct shell_cmd *c)
{
	if (c->args[0] == '\0')
		printk("%s: usage: %s (no arguments)\n", c->name, c->name);
	else
		printk("%s: usage: %s %s\n", c->name, c->name, c->args);
	return SHELL_USAGE;
}

void shell_print_tenths(uint64_t tenths)
{
	printk("%llu.%llu", (unsigned long long)(tenths / 10),
	       (unsigned long long)(tenths % 10));
}

void shell_format_bytes(char *buf, size_t size, uint64_t bytes)
{
	if (bytes < (10ull << 10))
		ksnprintf(buf, size, "%llu B", (unsigned long long)bytes);
	else if (bytes < (10ull << 20))
		ksnprintf(buf, size, "%llu KiB",
		          (unsigned long long)(bytes >> 10));
	else
		ksnprintf(buf, size, "%llu.%llu MiB",
		          (unsigned long long)(bytes >> 20),
		          (unsigned long long)(((bytes & ((1u << 20) - 1)) *
		                                10) >>
		                               20));
}

static enum shell_status cmd_help(int argc, char **argv)
{
	printk("commands (Ctrl-C stops a running command; poweroff or "
	       "Ctrl-A X leaves QEMU):\n");
	for (size_t t = 0; t < shell_cmd_ntables; t++)
		for (const struct shell_cmd *c = shell_cmd_tables[t]; c->name;
		     c++) {
			char use[SHELL_USE_MAX + 1];
			ksnprintf(use, sizeof(use), "%s %s", c->name, c->args);
			printk("  %-26s %s\n", use, c->help);
		}
	return SHELL_OK;
}

static const struct shell_cmd help_cmd = {"help", "", "this list", cmd_help};

static const struct shell_cmd *find(const char *name)
{
	if (strcmp(name, help_cmd.name) == 0)
		return &help_cmd;
	for (size_t t = 0; t < shell_cmd_ntables; t++)
		for (const struct shell_cmd *c = shell_cmd_tables[t]; c->name;
		     c++)
			if (strcmp(name, c->name) == 0)
				return c;
	return NULL;
}

/* Splits s in place at spaces; returns the word count, or -1 if there are
 * more than max words. */
static int split(char *s, char **argv, int max)
{
	int argc = 0;
	while (*s) {
		while (*s == ' ' || *s == '\t')
			*s++ = '\0';
		if (!*s)
			break;
		if (argc == max)
			return -1;
		argv[argc++] = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
	}
	return argc;
}

enum shell_status shell_run_line(const char *text)
{
	char *argv[SHELL_MAX_ARGS];
	size_t n = strlen(text);
	if (n > LINEEDIT_MAX) {
		/* Only a caller other than the prompt can pass one. */
		printk("shell: line longer than %d characters: ignored\n",
		       LINEEDIT_MAX);
		return last_status = SHELL_USAGE;
	}
	memcpy(line, text, n + 1);
	int argc = split(line, argv, SHELL_MAX_ARGS);
	if (argc == 0)
		return last_status;
	if (argc < 0) {
		printk("shell: more than %d words\n", SHELL_MAX_ARGS);
		return last_status = SHELL_USAGE;
	}
	const struct shell_cmd *c = find(argv[0]);
	if (!c) {
		printk("shell: unknown command '%s' (try help)\n", argv[0]);
		return last_status = SHELL_USAGE;
	}
	/* A command whose usage names no argument takes none: an ignored
	 * word would look as if it had been obeyed. */
	if (c->args[0] == '\0' && argc > 1)
		return last_status = shell_usage(c);
	conin_command_begin();
	last_status = c->fn(argc, argv);
	conin_command_end();
	return last_status;
}

enum lineedit_event shell_read_line(struct lineedit *le, uint64_t *lost)
{
	enum lineedit_event ev;
	do {
		uint32_t hole;
		char c = (char)conin_getc(&hole);
		if (hole)
			lineedit_lost(le, hole);
		ev = lineedit_feed(le, c);
	} while (ev == LINEEDIT_MORE);
	/* The editor counts: a hole in what Ctrl-U erased is not in it. */
	*lost = ev == LINEEDIT_LOST ? lineedit_lost_bytes(le) : 0;
	return ev;
}

/* The echo goes with the line, so that the console can draw the line
 * again after output from elsewhere (a no-op without console_line_start:
 * with "shell.notty" the other end is no terminal to redraw on). */
static void editor_out(void *ctx, const char *s, size_t n, const char *line)
{
	console_line_update(s, n, line);
}
_Static_assert(LINEEDIT_MAX <= CONSOLE_LINE_MAX, "the console keeps a line");

enum shell_status shell_run_input(struct lineedit *le)
{
	uint64_t lost;
	enum lineedit_event ev = shell_read_line(le, &lost);
	if (ev == LINEEDIT_LINE)
		return shell_run_line(lineedit_line(le));
	/* A refused line is bad input, as an unknown command is: `exit`
	 * must not report the command before it. Ctrl-C changes nothing. */
	if (ev == LINEEDIT_LOST || ev == LINEEDIT_OVERLONG)
		last_status = SHELL_USAGE;
	if (ev == LINEEDIT_LOST)
		printk("shell: %llu byte(s) of input lost (typed "
		       "faster than read: the input ring or the "
		       "UART was full); line ignored\n",
		       (unsigned long long)lost);
	else if (ev == LINEEDIT_OVERLONG)
		printk("shell: line longer than %d characters: "
		       "ignored\n",
		       LINEEDIT_MAX);
	return last_status;
}

enum shell_status shell_run_prompt(void)
{
	if (tty)
		console_line_start(PROMPT);
	else
		printk(PROMPT);
	return shell_run_input(&editor);
}

void shell_testing_set_tty(bool on)
{
	tty = on;
}

static void shell_main(void *arg)
{
	shell_heapmap_boot();
	for (;;)
		shell_run_prompt();
}

void shell_start(void)
{
	tty = !cmdline_flag("shell.notty");
	const char *how = conin_init();
	printk("shell: on COM1 (input by %s%s); type help, poweroff or "
	       "Ctrl-A X to quit\n",
	       how, tty ? "" : ", no colours");
	if (!thread_handle_ok(thread_create("shell", shell_main, NULL, 0)))
		panic("shell: cannot create its thread");
}
