/*
 * tests/real/fork_lib.c: a shared library that makes its state fork-safe
 * the usual way, for malloc_api_test (test fork_handler_order, in
 * malloc_api_threads.c), which links it: its constructor registers a
 * prepare handler that takes its mutex. The dynamic loader runs a linked
 * library's constructor before an LD_PRELOAD library's, and before the
 * process's first malloc.
 */
#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void take(void)
{
	pthread_mutex_lock(&lock);
}

static void give(void)
{
	pthread_mutex_unlock(&lock);
}

__attribute__((constructor)) static void fork_lib_init(void)
{
	pthread_atfork(take, give, give);
}

/* The mutex its prepare handler takes. */
pthread_mutex_t *fork_lib_mutex(void)
{
	return &lock;
}
