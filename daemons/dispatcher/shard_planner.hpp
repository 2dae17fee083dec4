#pragma once
// Splitting one commit's tests into shards and joining the shards' results.
// Pure functions: deterministic for the same input, testable alone.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <kiln/messages.hpp>

namespace kiln {

// Split `tests` into at most `shards` non-empty groups balanced by expected
// time: tests with a known duration, longest first, each onto the group with
// the least expected time so far (ties: the lowest index); then tests with no
// known duration, in name order, onto the group with the fewest unknown tests
// (ties: the least expected time, then the lowest index), which spreads them
// evenly.  Every test lands in exactly one group.  Duplicated names count once.
std::vector<std::vector<std::string>> plan_shards(std::vector<std::string> tests,
                                                  const std::map<std::string, uint64_t> &durations,
                                                  uint32_t shards);

// One commit's result from its shards' results (in shard order): every
// test of every shard, the worst outcome (error > timeout > cancelled >
// failed > passed), the shards' logs one after another under a header line,
// the earliest start and the latest finish, the shards' errors joined.
Result merge_shard_results(const std::vector<const Result *> &shards,
                           const std::vector<std::string> &runners);

// The worse of two whole-run outcomes, by the order above.
kiln_outcome worse_outcome(kiln_outcome a, kiln_outcome b);

} // namespace kiln
