/*
 * tests/real/malloc_api_seccomp.c: malloc-api-test's claims under a
 * seccomp filter that fails tgkill(2) with EPERM (malloc_api_test.h), as a
 * sandbox that forbids signals may. A claim that finds every slot owned
 * probes the threads a slot records with tgkill(pid, tid, 0)
 * (malloc/slots_gone.c); refused, the probe can never tell a thread gone.
 *
 * The filter hands each tgkill to a supervisor thread of the same process
 * (SECCOMP_RET_USER_NOTIF), which counts it and fails it with EPERM: an
 * exact count of the calls, told by the kernel, with no timing and no
 * tracer. Two more filters: one refuses membarrier once it was
 * registered; one refuses the guarded pool's reservation, as an address
 * space with no room for it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "malloc_api_test.h"
#include "seccomp_util.h"

enum { SLOTS = 63, SHARERS = 4 };

static atomic_uint tgkills;

/* Installs on this thread (and the threads it starts later) a filter
 * that answers syscall nr with action and allows every other call;
 * returns seccomp(2)'s result (with SECCOMP_FILTER_FLAG_NEW_LISTENER in
 * flags, the notification descriptor), or -1. */
int seccomp_filter_one(int nr, uint32_t action, unsigned flags)
{
	struct sock_filter code[] = {
	        SECCOMP_X86_64_NR,
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
	        BPF_STMT(BPF_RET | BPF_K, action),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	return seccomp_install(code, sizeof(code) / sizeof(code[0]), flags);
}

/* The filter that sends each tgkill to the supervisor; its notification
 * descriptor, or -1. */
static int refuse_tgkill(void)
{
	return seccomp_filter_one(__NR_tgkill, SECCOMP_RET_USER_NOTIF,
	                          SECCOMP_FILTER_FLAG_NEW_LISTENER);
}

/* The supervisor: counts each tgkill and fails it with EPERM. Allocates
 * nothing; ends with the process. */
static void *supervise(void *arg)
{
	int fd = (int)(intptr_t)arg;
	for (;;) {
		struct seccomp_notif req;
		memset(&req, 0, sizeof(req));
		if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
			if (errno == EINTR || errno == ENOENT)
				continue;
			return NULL;
		}
		atomic_fetch_add(&tgkills, 1);
		struct seccomp_notif_resp resp = {
		        .id = req.id,
		        .error = -EPERM,
		};
		ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
	}
}

static void *one_call(void *arg)
{
	free(malloc(16));
	return arg;
}

/* In a fork child (one thread, one slot owned): the filter and its
 * supervisor, holders that own the other 62 slots, then SHARERS threads
 * one after another, each of whose first call finds every slot owned. */
static void probe_refused_child(void)
{
	int fd = refuse_tgkill();
	pthread_t sup, h[SLOTS - 1];
	if (fd < 0) {
		fprintf(stderr, "cannot install the filter (errno %d)", errno);
		_exit(2);
	}
	if (pthread_create(&sup, NULL, supervise, (void *)(intptr_t)fd) != 0 ||
	    !holders_start(h, SLOTS - 1))
		_exit(2);
	unsigned before = atomic_load(&tgkills);
	for (int i = 0; i < SHARERS; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, one_call, NULL) != 0 ||
		    pthread_join(t, NULL) != 0)
			_exit(2);
	}
	unsigned calls = atomic_load(&tgkills) - before;
	unsigned owners = threads_owned();
	holders_stop(h, SLOTS - 1);
	if (owners < SLOTS) {
		fprintf(stderr,
		        "%u owners counted with 63 threads alive, each owning "
		        "a slot: a claim took a refused probe for a thread "
		        "gone and took a live thread's slot over",
		        owners);
		_exit(1);
	}
	if (calls > 1) {
		fprintf(stderr,
		        "%u tgkill calls failed with EPERM for %d claims "
		        "with every slot owned: each probed again",
		        calls, SHARERS);
		_exit(1);
	}
}

/* Under a filter that fails tgkill with EPERM, each claim made while
 * every slot was owned probed every slot's owner again, 63 failing
 * system calls a claim (252 for the four here), though the first EPERM
 * said that this process cannot probe its threads. A refused probe
 * tells nothing: the slot of the thread probed stays its own (the
 * claimers share, and give their shares back as they exit). */
const char *test_probe_refused(void)
{
	return child_passes(probe_refused_child);
}

/* A thread whose first call is a free (of arg): it must keep errno,
 * whatever the claim it makes does (POSIX.1-2024); returns errno after
 * it, as a pointer. */
static void *first_free_errno(void *arg)
{
	errno = 1234;
	free(arg);
	return (void *)(intptr_t)errno;
}

/* In a fork child (membarrier registered, one thread): a filter that
 * fails membarrier with EPERM from now on, then what fences the other
 * threads: a fork, and a claim that finds every slot owned (a sharer),
 * once by a free, which keeps errno (until a review the failed
 * membarrier's EPERM was left in it). */
static void membarrier_refused_child(void)
{
	if (strcmp(slot_mode(), "membarrier") != 0)
		_exit(0); /* no fences to make */
	if (seccomp_filter_one(__NR_membarrier, SECCOMP_RET_ERRNO | EPERM, 0) !=
	    0) {
		fprintf(stderr, "cannot install the filter (errno %d)", errno);
		_exit(2);
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		free(malloc(24));
		_exit(0);
	}
	if (pid < 0 || wait_status(pid) != 0)
		_exit(2);
	pthread_t h[SLOTS - 1], t;
	void *obj = malloc(100), *after = NULL;
	if (!obj || !holders_start(h, SLOTS - 1) ||
	    pthread_create(&t, NULL, one_call, NULL) != 0 ||
	    pthread_join(t, NULL) != 0 ||
	    pthread_create(&t, NULL, first_free_errno, obj) != 0 ||
	    pthread_join(t, &after) != 0)
		_exit(2);
	holders_stop(h, SLOTS - 1);
	if ((intptr_t)after != 1234) {
		fprintf(stderr,
		        "a sharer's first call, free(), left errno %d (1234 "
		        "before it) with membarrier refused",
		        (int)(intptr_t)after);
		_exit(1);
	}
}

/* A sandbox may forbid membarrier after the library registered it (a
 * seccomp filter installed once the program is set up): the fences of
 * fork and of a claim that shares a slot then have another way (a TLB
 * shootdown), where they aborted, "membarrier failed after
 * registering". */
const char *test_membarrier_refused_later(void)
{
	return child_passes(membarrier_refused_child);
}

/* The guarded pool's reservation (malloc/guard.c: 64 slots, each a page
 * and its guard page, and a guard page below the first): what
 * mm_port_reserve asks mmap for. */
enum { GUARD_POOL_BYTES = (2 * 64 + 1) * 4096 };

/* Fails with ENOMEM every PROT_NONE mmap of the pool's length, as an
 * address space too full for it would: 0, or -1. */
static int refuse_guard_reserve(void)
{
	struct sock_filter code[] = {
	        SECCOMP_X86_64_NR,
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 0, 7),
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	                 offsetof(struct seccomp_data, args[1])),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, GUARD_POOL_BYTES, 0, 5),
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	                 offsetof(struct seccomp_data, args[1]) + 4),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
	                 offsetof(struct seccomp_data, args[2])),
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_NONE, 0, 1),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOMEM),
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	return seccomp_install(code, sizeof(code) / sizeof(code[0]), 0);
}

/* A fresh process (MM_MALLOC_GUARD=1) whose first allocation sets the
 * heap up with no room for the guarded pool: 0 if its allocations
 * work. */
int scenario_guard_no_room(void)
{
	if (refuse_guard_reserve() != 0) {
		fprintf(stderr, "cannot install the filter (errno %d)", errno);
		return 2;
	}
	for (int i = 0; i < 1000; i++) {
		char *p = malloc(100);
		if (!p)
			return 1;
		memset(p, 1, 100);
		free(p);
	}
	return 0;
}

/* The pool is a debugging aid: with no address space for it the program
 * runs without it, told why: the heap's line names the cause, the
 * library's says what it does (until a review its line claimed "no
 * address space" whatever the heap's cause). */
const char *test_guard_no_room(void)
{
	char out[4096];
	int st = run_with("guard-no-room", "MM_MALLOC_GUARD", "1", out,
	                  sizeof(out));
	const char *cause = strstr(out, "mm_malloc: spanheap: no address space "
	                                "for the guarded pool (64 slots)\n");
	const char *what = strstr(out, "mm_malloc: MM_MALLOC_GUARD: the "
	                               "guarded pool cannot be set up (the "
	                               "line before says why); running "
	                               "without it\n");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && cause && what &&
	              cause < what,
	      "status %#x, stderr '%s'", st, out);
	return NULL;
}
