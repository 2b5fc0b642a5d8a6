/*
 * test_rng.h — the random numbers of the runtime's model-based tests:
 * xorshift64*, deterministic, so a failure reproduces from the seed the
 * test sets (and prints). Each test file including it has its own state.
 */
#ifndef NUDGEL_TEST_RNG_H
#define NUDGEL_TEST_RNG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull; /* never 0: xorshift stays at 0 */

static inline uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* Seeds rng() from NUDGEL_TEST_SEED, else @p seed, and prints it for @p test. */
static inline void rng_seed(const char *test, uint64_t seed)
{
    const char *env = getenv("NUDGEL_TEST_SEED");
    if (env)
        seed = strtoull(env, NULL, 0);
    printf("%s: seed %llu (NUDGEL_TEST_SEED)\n", test, (unsigned long long)seed);
    rng_state = seed ? seed : 1;
}

#endif
