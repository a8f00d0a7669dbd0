/*
 * The kernel command line's options, read from the copy bootinfo_copy
 * keeps (boot_state.cmdline): "key=value" words and bare "key" flags,
 * separated by blanks and line ends. A value its option refuses, an
 * on/off option given a value, and (cmdline_check_known) a word that
 * names no option or repeats one are each printed, naming the word, and
 * the option keeps its default. Runs on the boot CPU during boot; the
 * copy is immutable after bootinfo_copy, so any context may read it.
 */
#include "bootinfo.h"

#include "kernel/bootinfo_testing.h"
#include "kernel/printk.h"
#include "kernel/string.h"

/* Words are separated by blanks and line ends: cmdline.txt may hold one
 * option per line. */
static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The word at *p (its length in *wlen), leaving *p past it; NULL at the
 * end of the command line. */
static const char *next_word(const char **p, size_t *wlen)
{
	const char *q = *p;
	while (is_blank(*q))
		q++;
	const char *word = q;
	while (*q && !is_blank(*q))
		q++;
	*p = q;
	*wlen = (size_t)(q - word);
	return *wlen ? word : NULL;
}

bool cmdline_get(const char *key, char *buf, size_t size)
{
	return cmdline_find(boot_state.cmdline, key, buf, size);
}

/* The first word of cmdline that is key, bare or with '=' and a value
 * (its length in *wlen); NULL if none. */
static const char *key_word(const char *cmdline, const char *key, size_t *wlen)
{
	size_t klen = strlen(key);
	const char *word;
	for (const char *p = cmdline; (word = next_word(&p, wlen));)
		if (*wlen >= klen && strncmp(word, key, klen) == 0 &&
		    (*wlen == klen || word[klen] == '='))
			return word;
	return NULL;
}

bool cmdline_find(const char *cmdline, const char *key, char *buf, size_t size)
{
	size_t klen = strlen(key), wlen;
	const char *word = key_word(cmdline, key, &wlen);
	if (!word)
		return false;
	if (wlen == klen) {
		if (size)
			buf[0] = '\0';
		return true;
	}
	size_t vlen = wlen - klen - 1;
	if (size) {
		if (vlen >= size) {
			/* Cut short, a value could read as another valid
			 * one ("0000000000000250" as 25). */
			printk("cmdline: %.*s: the value is longer than %zu "
			       "characters; ignored\n",
			       (int)wlen, word, size - 1);
			return false;
		}
		memcpy(buf, word + klen + 1, vlen);
		buf[vlen] = '\0';
	}
	return true;
}

bool cmdline_get_uint(const char *key, uint64_t lo, uint64_t hi, uint64_t *out)
{
	return cmdline_find_uint(boot_state.cmdline, key, lo, hi, out);
}

bool cmdline_find_uint(const char *cmdline, const char *key, uint64_t lo,
                       uint64_t hi, uint64_t *out)
{
	char buf[24]; /* 20 digits of a uint64_t, and room to see more */
	if (!cmdline_find(cmdline, key, buf, sizeof(buf)))
		return false;
	uint64_t v = 0;
	const char *p = buf;
	bool in_range = true;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		/* v * 10 + d > hi, asked without overflowing. */
		if (v > hi / 10 || d > hi - v * 10)
			in_range = false;
		else
			v = v * 10 + d;
	}
	if (*p || p == buf || !in_range || v < lo) {
		printk("cmdline: %s=%s is not a number in [%llu, %llu]; "
		       "ignored\n",
		       key, buf, (unsigned long long)lo,
		       (unsigned long long)hi);
		return false;
	}
	*out = v;
	return true;
}

bool cmdline_get_uint_or_flag(const char *key, uint64_t flag, uint64_t lo,
                              uint64_t hi, uint64_t *out)
{
	return cmdline_find_uint_or_flag(boot_state.cmdline, key, flag, lo, hi,
	                                 out);
}

bool cmdline_find_uint_or_flag(const char *cmdline, const char *key,
                               uint64_t flag, uint64_t lo, uint64_t hi,
                               uint64_t *out)
{
	/* The key's first word decides, as for every option: bare, flag;
	 * with '=', however empty, a number (cmdline_find_uint). */
	size_t wlen;
	if (key_word(cmdline, key, &wlen) && wlen == strlen(key)) {
		*out = flag;
		return true;
	}
	return cmdline_find_uint(cmdline, key, lo, hi, out);
}

bool cmdline_flag(const char *key)
{
	return cmdline_find_flag(boot_state.cmdline, key);
}

bool cmdline_find_flag(const char *cmdline, const char *key)
{
	size_t klen = strlen(key), wlen;
	const char *word;
	for (const char *p = cmdline; (word = next_word(&p, &wlen));) {
		if (wlen < klen || strncmp(word, key, klen) != 0)
			continue;
		if (wlen == klen)
			return true;
		if (word[klen] != '=')
			continue;
		printk("cmdline: %.*s: %s takes no value (written alone, it "
		       "turns the option on); ignored\n",
		       (int)wlen, word, key);
		return false;
	}
	return false;
}

/* Every option some part of the kernel reads (cmdline_get, cmdline_flag,
 * cmdline_get_uint); a new option goes here too. smp.expect is read by
 * the smp tests, and demo.early_fault and
 * demo.synchronize_rcu_before_init only by the KTEST_FAIL_DEMO build. */
static const char *const known_keys[] = {
        "ktest",
        "smp.expect",
        "mm.debug_pagealloc",
        "frames.debug_fill",
        "mm.scav_goal",
        "mm.scav_budget",
        "acpi.no_madt",
        "smp.skip_sipi",
        "smp.late_ap",
        "time.stall_windows",
        "shell.notty",
        "shell.heapmap",
        "demo.early_fault",
        "demo.synchronize_rcu_before_init",
        "smp.no_ist",
        "smp.slow_ap",
        "time.wide_windows",
        "mm.debug_poison",
        "mm.kasan",
        "spinlock",
        "mm.fail",
        "mm.guard",
        "smp.stale_sipi",
        "smp.host_stall",
        "smp.no_trampoline",
};

static bool known_key(const char *word, size_t klen)
{
	for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++)
		if (strlen(known_keys[i]) == klen &&
		    strncmp(known_keys[i], word, klen) == 0)
			return true;
	return false;
}

unsigned cmdline_check_known(void)
{
	return cmdline_find_unknown(boot_state.cmdline);
}

/* The length of word's key: the part before its first '='. */
static size_t key_len(const char *word, size_t wlen)
{
	size_t klen = 0;
	while (klen < wlen && word[klen] != '=')
		klen++;
	return klen;
}

/* True if a word of cmdline before word has word's key (klen bytes). */
static bool key_seen_before(const char *cmdline, const char *word, size_t klen)
{
	size_t wlen;
	const char *w;
	for (const char *p = cmdline; (w = next_word(&p, &wlen)) != word;)
		if (key_len(w, wlen) == klen && strncmp(w, word, klen) == 0)
			return true;
	return false;
}

unsigned cmdline_find_unknown(const char *cmdline)
{
	unsigned ignored = 0;
	size_t wlen;
	const char *word;
	for (const char *p = cmdline; (word = next_word(&p, &wlen));) {
		size_t klen = key_len(word, wlen);
		if (!klen || !known_key(word, klen))
			printk("cmdline: unknown option '%.*s'; ignored\n",
			       (int)wlen, word);
		else if (key_seen_before(cmdline, word, klen))
			printk("cmdline: '%.*s' repeats %.*s, which is read "
			       "from its first word; ignored\n",
			       (int)wlen, word, (int)klen, word);
		else
			continue;
		ignored++;
	}
	return ignored;
}
