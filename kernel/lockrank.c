/*
 * The rank table's names and leaf flags, generated from the lists in
 * lockrank.h (which give each rank's reason).
 */
#include "lockrank.h"

#include <stdbool.h>
#include <stddef.h>

struct rank_info {
	enum lock_rank rank;
	const char *name;
	bool leaf;
};

#define PRODUCTION_(name, leaf, why)          {LOCK_RANK_##name, #name, leaf},
#define TEST_(name, above, offset, leaf, why) {LOCK_RANK_##name, #name, leaf},
static const struct rank_info ranks[] = {LOCK_RANKS(PRODUCTION_)
                                                 LOCK_TEST_RANKS(TEST_)};
#undef PRODUCTION_
#undef TEST_

#define TEST_FITS_(name, above, offset, leaf, why)                \
	_Static_assert((offset) > 0 && (offset) < LOCK_RANK_STEP, \
	               "test rank " #name " fits above " #above);
LOCK_TEST_RANKS(TEST_FITS_)
#undef TEST_FITS_

static const struct rank_info *find(enum lock_rank r)
{
	for (size_t i = 0; i < sizeof(ranks) / sizeof(ranks[0]); i++)
		if (ranks[i].rank == r)
			return &ranks[i];
	return NULL;
}

const char *lock_rank_name(enum lock_rank r)
{
	const struct rank_info *ri = find(r);
	return ri ? ri->name : "?";
}

bool lock_rank_is_leaf(enum lock_rank r)
{
	const struct rank_info *ri = find(r);
	return ri && ri->leaf;
}

/* Every rank lies below LOCK_RANK_INDEX_COUNT steps (a test rank is a
 * production one plus less than a step; an index past the array would
 * not compile), so a rank's existence is one load: lockcheck asks on
 * every acquisition, and the walk of the table took a lock and unlock
 * pair from 234 to 319 guest instructions (make bench-kernel). */
#define RANK_SLOTS                                  (LOCK_RANK_INDEX_COUNT * LOCK_RANK_STEP)
#define KNOWN_PRODUCTION_(name, leaf, why)          [LOCK_RANK_##name] = true,
#define KNOWN_TEST_(name, above, offset, leaf, why) [LOCK_RANK_##name] = true,
static const bool known[RANK_SLOTS] = {LOCK_RANKS(KNOWN_PRODUCTION_)
                                               LOCK_TEST_RANKS(KNOWN_TEST_)};
#undef KNOWN_PRODUCTION_
#undef KNOWN_TEST_

bool lock_rank_exists(enum lock_rank r)
{
	return (unsigned)r < RANK_SLOTS && known[r];
}
