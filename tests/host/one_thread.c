/*
 * tests/host/one_thread.c: HOST_TEST_ONE_THREAD=globs, for the ASan host
 * test binary alone (linked with -Wl,--wrap=pthread_create; the TSan,
 * coverage and malloc-tsan builds share main.c but not this): the tests
 * that match start no thread, and one that calls pthread_create fails,
 * naming itself. make test-host passes the tests the TSan run leaves out
 * as starting none (tests/host/host.mk's TSAN_ONE_THREAD and
 * TSAN_SLOW_ONE_THREAD), so a test that comes to start one is not left
 * out of the TSan run unseen.
 */
#include "../../kernel/ktest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * Every pthread_create of the tests' code comes here (the link's
 * -Wl,--wrap=pthread_create): a test that HOST_TEST_ONE_THREAD says
 * starts none fails, and its thread starts all the same. The sanitizers'
 * own threads are not the tests' calls and do not come here.
 */
static const struct ktest *_Atomic told;

int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg)
{
	const char *one = getenv("HOST_TEST_ONE_THREAD");
	const struct ktest *k = ktest_current();
	if (one && *one && k) {
		char name[256];
		snprintf(name, sizeof(name), "%s.%s", k->suite, k->name);
		/* Once a test: its first thread tells. */
		if (ktest_select_match(one, name) &&
		    atomic_exchange(&told, k) != k)
			ktest_fail_at(
			        __FILE__, __LINE__,
			        "%s starts a thread, but HOST_TEST_ONE_THREAD "
			        "(tests/host/host.mk's TSAN_*ONE_THREAD) says "
			        "it starts none, so the TSan run leaves it out",
			        name);
	}
	return __real_pthread_create(t, attr, fn, arg);
}
