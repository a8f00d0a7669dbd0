/*
 * The lock ranks: one table for every spinlock in the kernel. A CPU may
 * take a lock only while every lock it holds has a lower rank; nothing may
 * be taken while a leaf is held. The reason for each rank is in
 * lockrank.c, next to its name.
 */
#ifndef KERNEL_LOCKRANK_H
#define KERNEL_LOCKRANK_H

#include <stdbool.h>

enum lock_rank {
	LOCK_RANK_SHOOTDOWN = 1,
	LOCK_RANK_STW,
	LOCK_RANK_SEMA,
	LOCK_RANK_WAITQ,
	LOCK_RANK_RUNQUEUE,
	LOCK_RANK_THREADS,
	LOCK_RANK_KSTACK,
	LOCK_RANK_VM,
	LOCK_RANK_FRAMES,
	LOCK_RANK_MM_RESERVE,
	LOCK_RANK_TEST_LOW,
	LOCK_RANK_TEST_HIGH,
	LOCK_RANK_CONSOLE,
	LOCK_RANK_HEAP, /* leaf */
	LOCK_RANK_TEST_LEAF,
	LOCK_RANK_COUNT
};

const char *lock_rank_name(enum lock_rank r);
bool lock_rank_is_leaf(enum lock_rank r);

#endif
