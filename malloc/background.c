/*
 * malloc/background.c: the hosted malloc's background threads (the
 * sweeper and the scavenger): when they are allowed (after our
 * constructor, once the heap has grown to MM_MALLOC_BG_MIN_BYTES, unless
 * MM_MALLOC_BACKGROUND=0) and their start on an allocation's slow path,
 * under mm_malloc_ctl_lock. The constructor that allows them, and
 * registers the fork handlers, is here too.
 *
 * Algorithm: slots.c, "background" (they are threads like any other,
 * which claim slots); their stop and restart around fork are in fork.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "malloc_internal.h"

atomic_int mm_malloc_bg_state = MM_BG_NOT_YET;

/* The heap size from which the background threads run: below it there is
 * little to give back, and the many short-lived processes of a shell or a
 * build (bash, seq, gcc's drivers) would pay for two thread starts each,
 * and for stopping them at every fork. */
#define MM_MALLOC_BG_MIN_BYTES ((size_t)8 << 20)

static atomic_bool constructed;
static atomic_size_t grown_bytes;

/* Allows the threads once both conditions hold. */
/* MM_MALLOC_BACKGROUND=0: no background threads at all, for a program
 * that must stay single-threaded (unshare(CLONE_NEWUSER) and setns into
 * a user namespace refuse a multi-threaded caller). The heap works
 * without them: refills sweep, but free memory is given back only by
 * malloc_trim. */
static atomic_bool no_background;

static void allow_background(void)
{
	int want = MM_BG_NOT_YET;
	if (atomic_load(&constructed) && !atomic_load(&no_background) &&
	    atomic_load(&grown_bytes) >= MM_MALLOC_BG_MIN_BYTES)
		atomic_compare_exchange_strong(&mm_malloc_bg_state, &want,
		                               MM_BG_ALLOWED);
}

/* name's value in envp (getenv's if envp is NULL), or NULL. */
static const char *env_value(char **envp, const char *name)
{
	if (!envp)
		return getenv(name);
	size_t n = strlen(name);
	for (; *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/*
 * Runs before every other object's initialisation (-z initfirst), libc's
 * included, unless another initfirst object loaded after this library
 * takes that place (glibc runs the last one first): allocations there
 * come before this, and allow_background waits for it all the same.
 * pthread_atfork and dlsym work then, but environ is not set
 * yet, so the environment is the one glibc passes to initialisers. No
 * allocation comes between this and libc's initialisation, so the
 * background threads, allowed from here, start once libc is set up.
 */
__attribute__((constructor)) static void
mm_malloc_constructor(int argc, char **argv, char **envp)
{
	(void)argc;
	(void)argv;
	mm_malloc_fork_init();
	if (mm_malloc_env_switch("MM_MALLOC_BACKGROUND",
	                         env_value(envp, "MM_MALLOC_BACKGROUND")) == 0)
		atomic_store(&no_background, true);
	mm_malloc_log_init(env_value(envp, "MM_MALLOC_VERBOSE"));
	atomic_store(&constructed, true);
	allow_background();
}

void mm_malloc_note_growth(size_t nbytes)
{
	atomic_fetch_add(&grown_bytes, nbytes);
	allow_background();
}

pid_t mm_malloc_bg_pid;

void mm_malloc_bg_start(void)
{
	if (mm_malloc_self.held || mm_malloc_ctl_try() != 0)
		return; /* inside a call, or someone starts or forks now */
	if (atomic_load(&mm_malloc_bg_state) == MM_BG_ALLOWED &&
	    mm_malloc_heap_ready()) {
		atomic_store(&mm_malloc_bg_state, MM_BG_RUNNING);
		mm_malloc_bg_pid = getpid();
		/* A thread that cannot start is not retried: the heap works
		 * without it (refills sweep, memory is not given back). Its
		 * pthread_create's errno (EAGAIN) is not the allocation's,
		 * which succeeded: errno stays as it was. */
		int saved_errno = errno;
		spanheap_sweeper_start(&mm_malloc_sh);
		mm_malloc_hook(MM_MALLOC_HOOK_BG_BETWEEN);
		mheap_scavenger_start(&mm_malloc_heap);
		errno = saved_errno;
	}
	mm_malloc_ctl_give();
}
