/*
 * tests/real/seccomp_util.h: what the real-program tests' seccomp filters
 * share (malloc_api_seccomp.c's, malloc_hooks_copied.c's): the start of
 * every filter and its installation. A test's filter refuses one system
 * call, or one use of it, as a sandbox may.
 */
#ifndef SECCOMP_UTIL_H
#define SECCOMP_UTIL_H

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A filter's first four instructions: a call of another architecture is
 * allowed (its numbers are not these); then the call's number is loaded
 * for the filter's own tests. */
#define SECCOMP_X86_64_NR                                                     \
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS,                                    \
	         offsetof(struct seccomp_data, arch)),                        \
	        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0), \
	        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),                 \
	        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,                            \
	                 offsetof(struct seccomp_data, nr))

/* Installs the len instructions of code as a filter on this thread (and
 * the threads it starts later); seccomp(2)'s result, or -1. */
static inline int seccomp_install(struct sock_filter *code, unsigned short len,
                                  unsigned flags)
{
	struct sock_fprog prog = {.len = len, .filter = code};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

#endif
