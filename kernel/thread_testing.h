/* Test hooks in thread.c (see kernel/testhook.h); tests only. */
#ifndef KERNEL_THREAD_TESTING_H
#define KERNEL_THREAD_TESTING_H

#include "kernel/testhook.h"

/* Called by a join that lost the claim to another join (arg: the struct
 * thread * both joined) once it has released the threads lock and
 * before it panics: the winning join may free the struct meanwhile. */
extern _Atomic test_hook_fn thread_testing_join_lost;

/* Called by thread_create once the new thread (arg: its struct thread *)
 * is on the lists, before the wake that queues it; no lock held. */
extern _Atomic test_hook_fn thread_testing_made;

#endif
