/*
 * tests/real/malloc_api_describe.c: mm_malloc_describe (mm_malloc.h), the
 * hosted library's "what is this pointer" for a debugger: a small
 * object's place and state before and after its free, a large object and
 * its freed pages, a stack address; in poison mode (a fresh process with
 * MM_MALLOC_POISON=1) the bytes asked and the red zone past them.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "malloc_api_test.h"

/* Each description after a line "at <pointer>" naming what it describes
 * (stderr, which in_child and run_with collect). */
static void describe_at(const char *what, const void *p)
{
	fprintf(stderr, "%s %p\n", what, p);
	describe(p);
}

static void describe_objects(void)
{
	char *p = malloc(40);
	describe_at("small", p + 8);
	free(p);
	describe_at("freed", p);
	char *big = malloc(100000);
	describe_at("large", big + 5000);
	free(big);
	describe_at("freed-large", big + 5000);
	int local = 0;
	describe_at("stack", &local);
}

/* The line after "what <pointer>" in out holds each of the texts, in
 * which "%P" stands for that pointer. */
static bool says(const char *out, const char *what, const char *text)
{
	char key[64], ptr[32], want[256];
	snprintf(key, sizeof(key), "%s 0x", what);
	const char *at = strstr(out, key);
	if (!at || sscanf(at + strlen(what) + 1, "%31s", ptr) != 1)
		return false;
	const char *line = strchr(at, '\n');
	if (!line)
		return false;
	const char *end = strstr(line + 1, "\n");
	const char *pct = strstr(text, "%P");
	if (pct)
		snprintf(want, sizeof(want), "%.*s%s%s", (int)(pct - text),
		         text, ptr, pct + 2);
	else
		snprintf(want, sizeof(want), "%s", text);
	const char *hit = strstr(line + 1, want);
	return hit && (!end || hit < end);
}

const char *test_describe(void)
{
	char out[8192];
	int st = in_child(describe_objects, out, sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x, stderr '%s'",
	      st, out);
	CHECK(says(out, "small",
	           "mm_malloc: spanheap: %P: 8 bytes into object ") &&
	              says(out, "small", " (allocated) of span ") &&
	              says(out, "small", "(48-byte objects)"),
	      "a small object: stderr '%s'", out);
	CHECK(says(out, "freed",
	           "mm_malloc: spanheap: %P: 0 bytes into "
	           "object ") &&
	              says(out, "freed", " (free) of span "),
	      "a freed object: stderr '%s'", out);
	CHECK(says(out, "large",
	           "mm_malloc: spanheap: %P: 5000 bytes into a "
	           "large object (allocated) ["),
	      "a large object: stderr '%s'", out);
	CHECK(says(out, "freed-large",
	           "%P: 5000 bytes into a large object [") ||
	              says(out, "freed-large",
	                   "%P: on a free page of the heap arena"),
	      "a freed large object: stderr '%s'", out);
	CHECK(says(out, "stack",
	           "mm_malloc: spanheap: %P: outside the heap "
	           "arena ["),
	      "a stack address: stderr '%s'", out);
	/* Poison mode: the bytes asked, and the red zone past them. */
	st = run_with("describe-poison", "MM_MALLOC_POISON", "1", out,
	              sizeof(out));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
	              says(out, "redzone",
	                   ", 20 bytes asked: 3 bytes past "
	                   "their end, in the red zone"),
	      "poison mode: status %#x, stderr '%s'", st, out);
	return NULL;
}

/* The fresh process's side: malloc(20) described at byte 23. */
int scenario_describe_poison(void)
{
	if (!find_extensions())
		return 2;
	char *p = malloc(20);
	describe_at("redzone", p + 23);
	free(p);
	return 0;
}
