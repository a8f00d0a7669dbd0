/*
 * tests/host/bench/spanheap_bench_args.c: spanheap_bench's command line.
 * Every argument is checked whole: a count must be all digits in its
 * range, --scale a number in (0, 100], an unknown option or workload is
 * named, and a combination that cannot run is refused before anything is
 * set up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spanheap_bench.h"

static void usage(void)
{
	fprintf(stderr,
	        "usage: spanheap_bench --alloc=mm|system [--threads=N] "
	        "[--scale=F] [--arena-mib=M] WORKLOAD\n"
	        "       spanheap_bench --alloc=mm|system --callgrind=N\n"
	        "       spanheap_bench --alloc=mm --callgrind=N --class-known\n"
	        "       spanheap_bench --pin-cost\n"
	        "       spanheap_bench --list\n");
	exit(2);
}

/* Refuses the command line, naming what is wrong, then prints the usage. */
static void bad_arg(const char *fmt, const char *arg, unsigned long n)
{
	fprintf(stderr, "spanheap_bench: ");
	fprintf(stderr, fmt, arg, n);
	fprintf(stderr, "\n");
	usage();
}

/* The number after '=' in arg: all digits, in [1, max]. */
static unsigned long arg_count(const char *arg, unsigned long max)
{
	const char *v = strchr(arg, '=') + 1;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || n < 1 || n > max)
		bad_arg("%s: not a whole number in [1, %lu]", arg, max);
	return n;
}

/* The parse under way: the workloads, and what is set so far. */
struct parse {
	const struct bench_name *names;
	size_t n;
	int (*pin_cost)(void);
	const char *alloc;
	const struct bench_name *wl;
};

/* One argument into a; exits for --list, --pin-cost and bad ones. */
static void parse_arg(struct parse *p, struct bench_args *a, const char *arg)
{
	char *end;
	if (strcmp(arg, "--list") == 0) {
		for (size_t k = 0; k < p->n; k++)
			printf("%s %u\n", p->names[k].name,
			       p->names[k].max_threads);
		exit(0);
	} else if (strcmp(arg, "--pin-cost") == 0) {
		exit(p->pin_cost());
	} else if (strncmp(arg, "--alloc=", 8) == 0) {
		p->alloc = arg + 8;
		if (strcmp(p->alloc, "mm") && strcmp(p->alloc, "system"))
			bad_arg("%s: not mm or system", arg, 0);
	} else if (strncmp(arg, "--threads=", 10) == 0) {
		a->nthreads = (unsigned)arg_count(arg, MAX_THREADS);
	} else if (strncmp(arg, "--scale=", 8) == 0) {
		a->scale = strtod(arg + 8, &end);
		if (end == arg + 8 || *end ||
		    !(a->scale > 0 && a->scale <= 100))
			bad_arg("%s: not a number in (0, 100]", arg, 0);
	} else if (strncmp(arg, "--callgrind=", 12) == 0) {
		a->callgrind = arg_count(arg, 1000000000);
	} else if (strcmp(arg, "--class-known") == 0) {
		a->class_known = true;
	} else if (strncmp(arg, "--arena-mib=", 12) == 0) {
		a->arena_mib = arg_count(arg, 1 << 20);
	} else {
		for (size_t k = 0; k < p->n; k++)
			if (strcmp(arg, p->names[k].name) == 0)
				p->wl = &p->names[k];
		if (!p->wl || strcmp(arg, p->wl->name))
			bad_arg("%s: no such option or workload (--list names "
			        "the workloads)",
			        arg, 0);
	}
}

struct bench_args bench_parse_args(int argc, char **argv,
                                   const struct bench_name *names, size_t n,
                                   int (*pin_cost)(void))
{
	struct parse p = {.names = names, .n = n, .pin_cost = pin_cost};
	struct bench_args a = {.nthreads = 1, .scale = 1};
	for (int i = 1; i < argc; i++)
		parse_arg(&p, &a, argv[i]);
	if (!p.alloc)
		bad_arg("%s--alloc=mm or --alloc=system is missing", "", 0);
	a.use_mm = strcmp(p.alloc, "mm") == 0;
	if (a.class_known && (!a.use_mm || !a.callgrind))
		bad_arg("%s--class-known needs --alloc=mm and --callgrind=N",
		        "", 0);
	if (a.callgrind)
		return a;
	if (!p.wl)
		bad_arg("%sno workload named (--list names them)", "", 0);
	if (a.nthreads > p.wl->max_threads)
		bad_arg("%s takes at most %lu threads", p.wl->name,
		        p.wl->max_threads);
	a.workload = (size_t)(p.wl - names);
	return a;
}
