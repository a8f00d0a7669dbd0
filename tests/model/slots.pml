/*
 * tests/model/slots.pml: the hosted malloc's slot protocol (an asymmetric
 * Dekker handshake with membarrier), for spin.
 *
 * What each process models (keep it true when the code changes):
 *   owner    malloc/enter.h: mm_malloc_enter's fast path (in = 1,
 *            compiler barrier, load state == MM_SLOT_ONE) and
 *            mm_malloc_leave (in = 0); on a miss the back-out (in = 0)
 *            and malloc/enter.c: mm_malloc_enter_slow ->
 *            mm_malloc_slot_take (held NULL: wait for MM_SLOT_FORK, CAS
 *            busy 0 -> token, wait for in == 0), left by busy = 0. Then
 *            slot_exit (state -= MM_SLOT_ONE) and slot_claim again (alone
 *            if no owner is left, whatever the flag; else as a sharer),
 *            and more calls: a thread that follows on the slot.
 *   sharer   slots.c: slot_claim's share (state += MM_SLOT_ONE, then
 *            mm_malloc_fence_others), its calls through
 *            mm_malloc_enter_slow, and slot_exit (state -= MM_SLOT_ONE).
 *   forker   malloc/fork.c: fork_prepare_locked (state |= MM_SLOT_FORK,
 *            membarrier, mm_malloc_slot_take with held set: no wait for
 *            the flag) and release_parent (every busy = 0, then the flag
 *            cleared).
 *   visitor  malloc/visit.c: mm_port_each_other_cpu (state |=
 *            MM_SLOT_VISIT, membarrier, mm_malloc_slot_try_take: busy by
 *            CAS, then in == 0, either given up at any moment (its
 *            bound), busy given back if it was taken; the cache handed
 *            to mm/ inside; busy = 0, then the flag cleared).
 *
 * Not modelled: signal handlers' calls, told by the thread's held word
 * (slots.c, "nested"; tests/real/malloc_hooks_signals.c forces them),
 * LATE_SLOT (busy alone, never owned), and a visit's choice of slots
 * (those ever used, mm_malloc_slots_used, loaded once): the slot here is
 * used from the start, and one left out is neither flagged nor taken.
 *
 * Memory model: x86-TSO for the owner's `in`, the one word written with
 * a plain store that a plain load may pass: its stores go into a FIFO
 * store buffer (sb) that the buffer process drains at any time; its own
 * loads of `in` read the newest buffered value; a locked instruction
 * (the CAS of busy) drains it first. membarrier(2) (a full barrier in
 * every thread at some point of the call) is one atomic step of its
 * caller that drains the owner's buffer: the barrier lands wherever the
 * owner is at that moment, and spin tries every moment. The other words
 * are only written by locked instructions, or by release stores whose
 * delay could only make a waiter wait longer; they are sequentially
 * consistent here.
 *
 * Invariants, checked in every interleaving:
 *   I1  at most one thread is inside a call on the slot (ghost `inside`);
 *   I2  no thread is inside while the forker holds every slot;
 *   I3  busy is 0 or the token of the thread holding it (the visitor's
 *       is 4);
 *   I4  no deadlock: every process reaches its end (spin's invalid end
 *       states).
 * Mutants, each of which spin must refute (tests/model/run checks that it
 * does): -DFAST_NO_CHECK (the fast path does not load state),
 * -DFORK_NO_FENCE, -DSHARE_NO_FENCE and -DVISIT_NO_FENCE (no membarrier
 * after the mark), -DVISIT_NO_FLAG (a visit sets no flag),
 * -DSLOW_NO_WAIT_IN (the slow path does not wait for in == 0).
 */
#define ONE 4
#define FORK 1
#define VISIT 2
#define NCALLS 2 /* each caller's calls */
#define NFORKS 2
#define NVISITS 2

byte in_mem;  /* `in` as memory holds it */
byte in_own;  /* `in` as the owner reads it: its newest store */
chan sb = [2] of { byte }; /* the owner's store buffer, for `in` */
byte state = ONE;
byte busy;
byte inside;
bool fork_holds;

/* A full barrier in the owner: its buffer drains. */
inline drain()
{
	do
	:: nempty(sb) -> sb?in_mem
	:: empty(sb) -> break
	od
}

inline membarrier()
{
	atomic { drain() }
}

inline enter_critical()
{
	atomic {
		assert(!fork_holds); /* I2 */
		inside++;
		assert(inside == 1) /* I1 */
	}
}

/* mm_malloc_slot_take with held NULL (wait_fork) or set; tok: the token. */
inline slot_take(tok, wait_fork, drains)
{
	if
	:: wait_fork -> (state & FORK) == 0
	:: else -> skip
	fi;
	atomic {
		busy == 0 ->
		if
		:: drains -> drain()
		:: else -> skip
		fi;
		busy = tok
	};
	assert(busy == tok); /* I3 */
}

active proctype buffer()
{
end:	do
	:: atomic { nempty(sb) -> sb?in_mem }
	od
}

/* One API call of the owner: mm_malloc_enter, the call, mm_malloc_leave.
 * fast: the thread's fast is set (it claimed the slot alone). */
inline owner_call(fast)
{
	if
	:: fast -> atomic { sb!1; in_own = 1 } /* in = 1, into the buffer */
	:: else -> skip
	fi;
	/* a compiler barrier only: the load of state may pass the store */
#ifdef FAST_NO_CHECK
	if
	:: fast ->
#else
	if
	:: fast && state == ONE ->
#endif
		enter_critical();
		inside--;
		atomic { sb!0; in_own = 0 } /* leave: in = 0 (a plain store) */
	:: else ->
		if
		:: fast -> atomic { sb!0; in_own = 0 } /* back out */
		:: else -> skip
		fi;
		slot_take(1, true, true);
		in_own == 0; /* its own in: forwarded from its buffer */
		enter_critical();
		inside--;
		busy = 0
	fi
}

/* The owner: calls, then exits (slot_exit: state -= ONE) and claims a slot
 * again (slot_claim: alone, 0 -> ONE whatever the flag, or as a sharer,
 * with membarrier), as a new thread would, and calls again. */
active proctype owner()
{
	byte n;
	bool fast = true;
	for (n : 1 .. NCALLS) {
		owner_call(fast)
	}
	atomic { drain(); state = state - ONE };
	atomic {
		drain();
		if
		:: state < ONE -> fast = true
		:: else -> fast = false
		fi;
		state = state + ONE
	};
	if
	:: !fast -> membarrier()
	:: else -> skip
	fi;
	for (n : 1 .. NCALLS) {
		owner_call(fast)
	}
}

active proctype sharer()
{
	byte n;
	state = state + ONE; /* an atomic add */
#ifndef SHARE_NO_FENCE
	membarrier();
#endif
	for (n : 1 .. NCALLS) {
		slot_take(2, true, false);
#ifndef SLOW_NO_WAIT_IN
		in_mem == 0;
#endif
		enter_critical();
		inside--;
		busy = 0
	}
	state = state - ONE
}

active proctype forker()
{
	byte n;
	for (n : 1 .. NFORKS) {
		state = state | FORK;
#ifndef FORK_NO_FENCE
		membarrier();
#endif
		slot_take(3, false, false);
		in_mem == 0;
		atomic {
			assert(inside == 0); /* I2 */
			fork_holds = true
		};
		/* the child would run here; this is the parent's side */
		fork_holds = false;
		busy = 0;
		state = state & ~FORK
	}
}

active proctype visitor()
{
	byte n;
	for (n : 1 .. NVISITS) {
#ifndef VISIT_NO_FLAG
		state = state | VISIT;
#endif
#ifndef VISIT_NO_FENCE
		membarrier();
#endif
		/* mm_malloc_slot_try_take: busy, or give up (its bound) */
		if
		:: atomic { busy == 0 -> busy = 4 };
			assert(busy == 4); /* I3 */
			if
			:: in_mem == 0 ->
				enter_critical(); /* fn: the slot's cache */
				inside--
			:: true -> skip /* gave up waiting for in */
			fi;
			busy = 0
		:: true -> skip /* gave up waiting for busy */
		fi;
		state = state & ~VISIT
	}
}
