/*
 * tests/model/sweep.pml: the span heap's sweepgen protocol, for spin: one
 * size class, two span structs of two objects, two CPUs and the sweeper.
 * CPU 0 allocates three objects (a span filled, handed back or kept, and
 * a second); either CPU frees any object handed out, so CPU 1's frees are
 * remote (pending bits and the fold queue) and CPU 0's local while it
 * caches the span. The sweeper runs one cycle at any point of that, and
 * a last one once both CPUs flushed.
 *
 * What each piece models (keep it true when the code changes):
 *   cpu        mm/spanheap_cache.c: spanheap_cache_refill (the flushgen
 *              check and cache_flush, the cached span folded and kept or
 *              handed back, a span from the central lists or a new one,
 *              cache_install), the fast path's allocation from the cached
 *              span (spanheap.c) and span_give_back (a local bit for the
 *              owner, else queued, the fold-queue push and the pending
 *              bit); at the end, cache_flush (spanheap_flush_all).
 *   sweeper    mm/spanheap_sweep.c: run_cycle (flip under the heap lock,
 *              the pass through the class lock, sweep_one over the
 *              snapshot, drain_unswept, spanheap_fold_queue_all: the
 *              backlog and the queue taken whole, as its chunks of 64
 *              are with two spans), once while the CPUs run and once
 *              after (spanheap_release_all). Not modelled: the folds of
 *              spanheap_sweep_before_growth (spanheap_fold_queue_for),
 *              a refill's fold that places every span it folds.
 *   central    mm/spanheap_central.c: spanheap_span_place,
 *              spanheap_fold_queue (a refill's budget 1, not 16, so that
 *              two queued spans leave a backlog), spanheap_central_cache_span
 *              (a swept partial span, the fold queue, unswept spans swept
 *              on demand), spanheap_uncache_span; list_remove_any
 *              (spanheap_central.h).
 *   span       mm/spanheap_span.c: spanheap_span_new (sweepgen read
 *              under the heap lock), spanheap_span_free,
 *              spanheap_span_fold (pending taken by one exchange).
 * Abstractions: an object is handed out by setting its alloc bit (the
 * owner's freeindex and alloc_cache commit to the same at the fold);
 * a list is a set (pop takes any member, a superset of LIFO); a class
 * lock's critical section is one atomic step where it reads the heap's
 * sweepgen once (the flip, under the heap lock only, may come before or
 * after it); local_free is read and written as the code does, a plain
 * load then a plain store, by the owner's free and by the fold (no
 * read-modify-write); magazines are left out (a spill gives objects back
 * through span_give_back, as a free here does).
 *
 * Invariants, checked in every interleaving:
 *   S1  no object is handed out twice: an object taken from a span was
 *       free (ghost holder);
 *   S2  a span is folded by one owner at a time (ghost folding), never
 *       while its owner allocates from it, and never while cached unless
 *       by its owner;
 *   S3  a span is on the list its sweepgen names (list_remove_any finds
 *       it there), and on at most one fold queue or backlog at once;
 *   S4  a span is swept at most once per cycle, and after a cycle's drain
 *       no span is unswept (sg - 2) on a list;
 *   S5  a span is freed only empty, owned, off every list and queue;
 *   S6  no free is lost: after the CPUs freed everything and flushed,
 *       a release (a whole cycle) gives every span back to the page heap;
 *   S7  a pending free is owed a fold: a span on a swept list with a
 *       pending bit is queued, unless a free was counted since the flip's
 *       base read (pending_since_flip: the threshold or a reclaim runs a
 *       cycle) or a flip is under way. S6 alone missed a free that came
 *       between an owner's fold and its placement after a cycle's drain
 *       had skipped the span (on no list) and taken its queue entry: the
 *       last cycle found it, but between cycles it waited for one that
 *       need not come (a review found it in the code; place now queues
 *       such a span). The count is one step with the bit here: in the
 *       code it follows, and a later count only counts it later. The
 *       code must keep that order on every CPU: count_add's store is
 *       release and the flip's reads of the counts acquire (relaxed, as
 *       until a review, arm64 and riscv64 may show the count before the
 *       bit: -DCOUNT_BEFORE_BIT).
 * What the search says beyond the invariants: drain_unswept never finds a
 * span here, and with the flip's pass through the class lock left out
 * every invariant still held (checked once, at 2 and 2 objects); as a
 * class-lock section is one step here, reading sweepgen once, that only
 * says that each section leaves a span consistent with either side of
 * the flip. Both stay in the code as defences. Not reached at these
 * bounds: a fold-queue rest going to the backlog (two spans queued when a
 * refill takes the queue).
 * Mutants, each of which spin must refute (tests/model/run checks that it
 * does): -DPLACE_NO_QUEUED (place frees an empty span still queued),
 * -DCLAIM_OFF_LIST (sweep_one claims a span at sg - 2 that is on no
 * list: one a refill took before the flip), -DUNCACHE_NO_FOLD (a span
 * handed back unfolded), -DPLACE_NO_REQUEUE (place lists a span with a
 * pending free and no queue entry: S7), -DBASE_AFTER_FLIP (the flip
 * reads the pending base after sweepgen moves, as the code did: a free
 * whose bit a placement after the flip missed was counted as the old
 * cycle's: S7), -DCOUNT_BEFORE_BIT (a remote free's count is seen before
 * its pending bit, as a relaxed store after the bit's OR may be on a
 * weakly ordered CPU: the flip's base takes the count in, a taker of the
 * queue folds and places the span before the bit lands, and nothing is
 * then owed a fold: S7), -DLOCAL_ANY_OWNER (a free takes the local path
 * for a span any CPU caches: its load and store of local_free race with
 * the owner's, and a free is lost; while the model made each update one
 * step, every invariant held with this mutant).
 */
#define NS 2       /* span structs */
#define NOBJ 2     /* objects per span */
#define FULLMASK 3 /* NOBJ bits */
#define NONE 255
/* Objects CPU 0 and CPU 1 allocate: 3 and none (about 6.3 million states
 * with S7's ghosts, 5.1 million and 11 s before them; with local_free's
 * updates one step each, 3.7 million; then 2 and 2 took 17 million, 3 and
 * 1 34 million). */
#define NALLOC(me) (3 - 3 * (me))
#define L_NONE 0
#define L_PARTIAL 1
#define L_FULL 2

byte sg = 4;           /* sh->sweepgen (even; starts where sg - 2 >= 0) */
byte hlock;            /* heap lock holder + 1 */
byte clock;            /* the class's lock holder + 1 */
/* Per span struct: */
bool live[NS];         /* MSPAN_SMALL, else dead (free struct) */
byte ssg[NS];          /* s->sweepgen */
byte list[NS];         /* s->list */
byte half[NS];         /* which half of list it is really on (ghost) */
bool queued[NS];
byte owner[NS];        /* 0, or the caching CPU + 1 */
byte alloc[NS];        /* alloc_bits */
byte pend[NS];         /* pending */
byte lfree[NS];        /* local_free */
byte count[NS];        /* alloc_count */
byte folding[NS];      /* ghost: who folds it now, + 1 */
byte holder[NS * NOBJ];/* ghost: object (s, i) handed out to CPU + 1 */
byte swept[NS];        /* ghost: sweeper's claims this cycle */
/* Central lists, as sets of spans (bit s): [kind * 2 + half]. */
byte lists[6];
byte fq;               /* fold queue */
byte fb;               /* fold backlog */
/* Ghost for S7: a remote free counted in the CPUs' pending totals since
 * the flip's base read (pending_since_flip > 0: the threshold or a
 * reclaim will run a cycle). */
bool counted;
bool flipping;         /* a cycle between its base read and its flip */
/* Objects handed out and not freed yet: any CPU may free one. */
byte nlive;
bool done[2];

/* Every process's scratch variables (an inline's locals would be declared
 * once per use). */
#define SCRATCH \
	byte i_, p_, l_, f_, gl_, q_, s_, budget_, g_, cg_, cb_, gs_, gb_, ds_, g, x; \
	bool free_, chave_, gwas_, claim_

inline lock(l, me) { atomic { l == 0 -> l = me + 1 } }
inline unlock(l) { l = 0 }

#define swept_idx(g) (((g) / 2) % 2)

/* Bit i of mask m set? */
#define HAS(m, i) (((m) >> (i)) & 1)

inline popcount(m, n)
{
	n = HAS(m, 0) + HAS(m, 1)
}

/* list_push of spanheap_central.h, under the class lock. */
inline list_push(s, kind, h)
{
	lists[kind * 2 + h] = lists[kind * 2 + h] | (1 << s);
	list[s] = kind;
	half[s] = h
}

/* list_remove_any: the half from the span's sweepgen. S3. */
inline list_remove_any(s, g)
{
	i_ = (ssg[s] == g -> swept_idx(g) : 1 - swept_idx(g));
	assert(list[s] != L_NONE && half[s] == i_); /* S3 */
	lists[list[s] * 2 + i_] = lists[list[s] * 2 + i_] & ~(1 << s);
	list[s] = L_NONE;
	i_ = 0
}

/* list_pop of one list: any member, or NONE. */
inline list_pop(kind, h, s)
{
	s = NONE;
	if
	:: HAS(lists[kind * 2 + h], 0) -> s = 0
	:: HAS(lists[kind * 2 + h], 1) -> s = 1
	:: else -> skip
	fi;
	if
	:: s != NONE ->
		assert(list[s] == kind && half[s] == h);
		lists[kind * 2 + h] = lists[kind * 2 + h] & ~(1 << s);
		list[s] = L_NONE
	:: else -> skip
	fi
}

/* spanheap_span_fold by me (+1: a CPU's 1-2, the sweeper's 3). S2. */
inline fold(s, me)
{
	atomic {
		assert(live[s] && folding[s] == 0);            /* S2 */
		assert(owner[s] == 0 || owner[s] == me + 1);   /* S2 */
		folding[s] = me + 1;
		p_ = pend[s];
		pend[s] = 0                                    /* the exchange */
	};
	/* local_free: a plain load, then a plain store of 0 (relaxed; the
	 * code's only writers are the folder and the owner, one CPU). */
	l_ = lfree[s];
	atomic {
		assert((p_ & l_) == 0);               /* not freed twice */
		f_ = p_ | l_;
		assert((f_ & ~alloc[s]) == 0);        /* freed were allocated */
		lfree[s] = 0
	};
	atomic {
		alloc[s] = alloc[s] & ~f_;
		popcount(alloc[s], count[s]);
		folding[s] = 0;
		f_ = 0;
		p_ = 0;
		l_ = 0
	}
}

/* spanheap_span_free: S5. */
inline span_free(s)
{
	atomic {
		assert(live[s] && count[s] == 0 && alloc[s] == 0); /* S5 */
		assert(!queued[s] && list[s] == L_NONE && owner[s] == 0);
		assert(folding[s] == 0 && pend[s] == 0 && lfree[s] == 0);
		assert(holder[s * NOBJ] == 0 && holder[s * NOBJ + 1] == 0);
		live[s] = false
	}
}

/* spanheap_span_place. */
inline place(s, me)
{
	atomic {
		clock == 0 -> clock = me + 1;
#ifdef PLACE_NO_QUEUED
		if
		:: count[s] == 0 -> free_ = true
#else
		if
		:: count[s] == 0 && !queued[s] -> free_ = true
#endif
		:: else ->
			free_ = false;
			ssg[s] = sg;
			if
			:: count[s] < NOBJ -> list_push(s, L_PARTIAL, swept_idx(sg))
			:: else -> list_push(s, L_FULL, swept_idx(sg))
			fi;
#ifndef PLACE_NO_REQUEUE
			/* requeue_if_pending_locked */
			if
			:: pend[s] != 0 && !queued[s] ->
				assert((fq & (1 << s)) == 0 &&
				       (fb & (1 << s)) == 0); /* S3 */
				queued[s] = true;
				fq = fq | (1 << s)
			:: else -> skip
			fi
#else
			skip
#endif
		fi;
		clock = 0
	};
	if
	:: free_ -> span_free(s)
	:: else -> skip
	fi;
	free_ = false
}

/* spanheap_fold_queue (budget 1 when take, else all). Sets found. */
inline fold_queue(me, take, found)
{
	atomic {
		clock == 0 -> clock = me + 1;
		q_ = fb;
		fb = 0;
		clock = 0
	};
	atomic {
		if
		:: q_ == 0 -> q_ = fq; fq = 0
		:: else -> skip
		fi
	};
	found = NONE;
	budget_ = (take -> 1 : 9);
	do
	:: q_ != 0 && found == NONE && budget_ > 0 ->
		if
		:: HAS(q_, 0) -> s_ = 0
		:: HAS(q_, 1) -> s_ = 1
		fi;
		q_ = q_ & ~(1 << s_);
		budget_--;
		atomic {
			clock == 0 -> clock = me + 1;
			assert(queued[s_]);
			queued[s_] = false;
			if
			:: list[s_] == L_NONE -> g_ = 0
			:: else ->
				g_ = sg;
				list_remove_any(s_, g_);
				ssg[s_] = g_ - 1
			fi;
			clock = 0
		};
		if
		:: g_ != 0 ->
			fold(s_, me);
			if
			:: take && count[s_] < NOBJ -> found = s_
			:: else -> place(s_, me)
			fi
		:: else -> skip
		fi
	:: else -> break
	od;
	if
	:: q_ != 0 ->
		atomic {
			clock == 0 -> clock = me + 1;
			assert((fb & q_) == 0 && (fq & q_) == 0); /* S3 */
			fb = fb | q_;
			clock = 0
		}
	:: else -> skip
	fi;
	q_ = 0;
	s_ = 0;
	g_ = 0;
	budget_ = 0
}

/* spanheap_uncache_span (the owner CPU me). */
inline uncache(s, me)
{
	atomic {
		owner[s] = 0;
		ssg[s] = sg - 1
	};
#ifndef UNCACHE_NO_FOLD
	fold(s, me);
#endif
	place(s, me)
}

/* spanheap_central_cache_span: a span with a free object, or NONE. The
 * demand budget is 2 (SPANHEAP_CACHE_SPAN_BUDGET is 32): every span. */
inline cache_span(me, s)
{
	atomic {
		clock == 0 -> clock = me + 1;
		list_pop(L_PARTIAL, swept_idx(sg), s);
		clock = 0
	};
	if
	:: s == NONE -> fold_queue(me, true, s)
	:: else -> skip
	fi;
	if
	:: s == NONE ->
		cb_ = 0;
		chave_ = false;
		lock(clock, me);
		do
		:: cb_ < 2 ->
			cb_++;
			cg_ = sg;
			list_pop(L_PARTIAL, 1 - swept_idx(cg_), s);
			if
			:: s == NONE -> list_pop(L_FULL, 1 - swept_idx(cg_), s)
			:: else -> skip
			fi;
			if
			:: s == NONE -> break
			:: else -> skip
			fi;
			atomic {
				assert(ssg[s] == cg_ - 2); /* S3 */
				ssg[s] = cg_ - 1;
				swept[s]++;
				assert(swept[s] == 1) /* S4 */
			};
			unlock(clock);
			fold(s, me);
			if
			:: count[s] < NOBJ -> chave_ = true; break
			:: else -> skip
			fi;
			place(s, me); /* full: the swept full list */
			lock(clock, me);
			s = NONE
		:: else -> break
		od;
		if
		:: !chave_ -> unlock(clock)
		:: else -> skip
		fi
	:: else -> skip
	fi;
	cg_ = 0;
	cb_ = 0;
	chave_ = false
}

/* spanheap_span_new: a dead struct made a span of the class, its
 * sweepgen read under the heap lock. s: NONE if none is left. */
inline span_new(me, s)
{
	atomic {
		hlock == 0 -> hlock = me + 1;
		if
		:: !live[0] -> s = 0
		:: !live[1] -> s = 1
		:: else -> s = NONE
		fi;
		if
		:: s != NONE ->
			live[s] = true;
			ssg[s] = sg;
			alloc[s] = 0;
			count[s] = 0;
			swept[s] = 0
		:: else -> skip
		fi;
		hlock = 0
	}
}

/* The fast path: the cached span's lowest free object. S1. */
inline take(me, s)
{
	atomic {
		assert(owner[s] == me + 1 && folding[s] == 0); /* S2 */
		if
		:: !HAS(alloc[s], 0) -> k = s * NOBJ
		:: else -> assert(!HAS(alloc[s], 1)); k = s * NOBJ + 1
		fi;
		assert(holder[k] == 0); /* S1 */
		holder[k] = me + 1;
		alloc[s] = alloc[s] | (1 << (k % NOBJ))
	}
}

/* span_give_back of object k by CPU me. */
inline give_back(me, k)
{
	gs_ = k / NOBJ;
	gb_ = 1 << (k % NOBJ);
	if
#ifdef LOCAL_ANY_OWNER
	:: owner[gs_] != 0 ->
#else
	:: owner[gs_] == me + 1 ->
#endif
		/* local_free: a plain load, the double-free test, then a
		 * plain store (the code's relaxed load and store, no RMW). */
		atomic {
			gl_ = lfree[gs_];
			assert(((gl_ | pend[gs_]) & gb_) == 0)
		};
		lfree[gs_] = gl_ | gb_;
		gl_ = 0
	:: else ->
		if
		:: !queued[gs_] ->
			atomic { gwas_ = queued[gs_]; queued[gs_] = true };
			if
			:: !gwas_ ->
				atomic {
					assert((fq & (1 << gs_)) == 0 &&
					       (fb & (1 << gs_)) == 0); /* S3 */
					fq = fq | (1 << gs_)
				}
			:: else -> skip
			fi
		:: else -> skip
		fi;
#ifdef COUNT_BEFORE_BIT
		counted = true; /* seen first, as a relaxed store may be */
		atomic {
			assert((pend[gs_] & gb_) == 0);
			pend[gs_] = pend[gs_] | gb_
		}
#else
		atomic {
			assert((pend[gs_] & gb_) == 0);
			pend[gs_] = pend[gs_] | gb_;
			/* the caller's count, as one step with the bit */
			counted = true
		}
#endif
	fi;
	gs_ = 0;
	gb_ = 0;
	gwas_ = false
}

/* cache_flush: the cached span handed back; flushgen = sg. */
inline cache_flush(me)
{
	if
	:: mc != NONE ->
		s = mc;
		mc = NONE;
		uncache(s, me)
	:: else -> skip
	fi;
	flushgen = sg
}

proctype cpu(byte me)
{
	byte mc = NONE, flushgen = 4, n, s, k;
	SCRATCH;
	do
	:: n < NALLOC(me) ->
		n++;
		if
		:: mc != NONE && alloc[mc] != FULLMASK -> take(me, mc)
		:: else ->
			/* spanheap_cache_refill */
			if
			:: flushgen != sg -> cache_flush(me)
			:: else -> skip
			fi;
			if
			:: mc != NONE ->
				fold(mc, me);
				if
				:: count[mc] < NOBJ -> take(me, mc); goto next
				:: else -> s = mc; mc = NONE; uncache(s, me)
				fi
			:: else -> skip
			fi;
			cache_span(me, s);
			if
			:: s == NONE -> span_new(me, s)
			:: else -> skip
			fi;
			if
			:: s != NONE ->
				/* cache_install */
				atomic {
					ssg[s] = sg + 3;
					owner[s] = me + 1
				};
				mc = s;
				take(me, mc)
			:: else -> skip /* out of memory: NULL */
			fi
		fi;
next:		s = NONE
	:: atomic {
		holder[0] != 0 -> k = 0; holder[k] = 0
	   };
	   give_back(me, k);
	   k = 0
	:: atomic {
		holder[1] != 0 -> k = 1; holder[k] = 0
	   };
	   give_back(me, k);
	   k = 0
	:: atomic {
		holder[2] != 0 -> k = 2; holder[k] = 0
	   };
	   give_back(me, k);
	   k = 0
	:: atomic {
		holder[3] != 0 -> k = 3; holder[k] = 0
	   };
	   give_back(me, k);
	   k = 0
	:: n == NALLOC(me) && holder[0] == 0 && holder[1] == 0 &&
	   holder[2] == 0 && holder[3] == 0 -> break
	od;
	cache_flush(me); /* spanheap_flush_all */
	done[me] = true
}

/* sweep_one (a small span of the snapshot), by the sweeper. */
inline sweep_one(s, g)
{
	if
	:: live[s] ->
		atomic {
			clock == 0 -> clock = 3;
#ifdef CLAIM_OFF_LIST
			claim_ = live[s] && ssg[s] == g - 2;
#else
			claim_ = live[s] && list[s] != L_NONE && ssg[s] == g - 2;
#endif
			if
			:: claim_ ->
				if
				:: list[s] != L_NONE -> list_remove_any(s, g)
				:: else -> skip
				fi;
				ssg[s] = g - 1;
				swept[s]++;
				assert(swept[s] == 1) /* S4 */
			:: else -> skip
			fi;
			clock = 0
		};
		if
		:: claim_ -> fold(s, 2); place(s, 2)
		:: else -> skip
		fi
	:: else -> skip
	fi;
	claim_ = false
}

inline drain_unswept(g)
{
	do
	:: atomic {
		clock == 0 -> clock = 3;
		list_pop(L_PARTIAL, 1 - swept_idx(g), ds_);
		if
		:: ds_ == NONE -> list_pop(L_FULL, 1 - swept_idx(g), ds_)
		:: else -> skip
		fi;
		if
		:: ds_ != NONE ->
			assert(ssg[ds_] == g - 2); /* S3 */
			ssg[ds_] = g - 1;
			swept[ds_]++;
			assert(swept[ds_] == 1) /* S4 */
		:: else -> skip
		fi;
		clock = 0
	   };
	   if
	   :: ds_ == NONE -> break
	   :: else -> fold(ds_, 2); place(ds_, 2)
	   fi
	od;
	ds_ = 0
}

/* run_cycle (the cycle semaphore: the sweeper is the only cycle here). */
inline run_cycle()
{
#ifndef BASE_AFTER_FLIP
	atomic { counted = false; flipping = true }; /* pending_base, first */
#endif
	atomic {
		hlock == 0 -> hlock = 3;
		flipping = false;
		sg = sg + 2;
		g = sg;
		swept[0] = 0;
		swept[1] = 0;
		hlock = 0
	};
#ifdef BASE_AFTER_FLIP
	counted = false;
#endif
	lock(clock, 2);
	unlock(clock);
	for (x : 0 .. NS - 1) {
		sweep_one(x, g)
	}
	x = 0;
	drain_unswept(g);
	/* the backlog, then the queue */
	for (k : 1 .. 2) {
		fold_queue(2, false, x)
	}
	k = 0;
	atomic {
		/* S4: nothing unswept is left on a list */
		assert(lists[L_PARTIAL * 2 + 1 - swept_idx(g)] == 0 &&
		       lists[L_FULL * 2 + 1 - swept_idx(g)] == 0)
	}
}

/* S7, in every state: a listed span with a pending free is queued, so a
 * fold is on its way (not queued, it would wait for a cycle that need
 * not come; the monitor blocks until the invariant breaks). */
active proctype monitor()
{
end_s7: /* blocked here for good is a valid end */
	atomic {
		!counted && !flipping &&
		((list[0] != L_NONE && half[0] == swept_idx(sg) &&
		  pend[0] != 0 && !queued[0]) ||
		 (list[1] != L_NONE && half[1] == swept_idx(sg) &&
		  pend[1] != 0 && !queued[1])) ->
		assert(false) /* S7 */
	}
}

proctype sweeper()
{
	byte k;
	SCRATCH;
	run_cycle();
	done[0] && done[1];
	run_cycle(); /* spanheap_release_all, the caches flushed */
	/* S6: every span went back */
	assert(!live[0] && !live[1] && fq == 0 && fb == 0)
}

init
{
	atomic {
		run cpu(0);
		run cpu(1);
		run sweeper()
	}
}
