#pragma once
// Answers to kilnctl (status, runners, jobs, result, reports): each one packed
// msgpack object that kilnctl prints as a table or as JSON.  Owns nothing:
// it reads the dispatcher's parts.
#include <cstdint>
#include <string>

#include "deliveries.hpp"
#include "dispatcher_config.hpp"
#include "job_table.hpp"
#include "runner_registry.hpp"
#include "store.hpp"

namespace kiln {

class Queries {
  public:
    Queries(const DispatcherConfig &config, const JobTable &jobs, const RunnerRegistry &runners,
            const Store &store, const Deliveries &deliveries, const int64_t &started_unix_ms)
        : config_(config), jobs_(jobs), runners_(runners), store_(store),
          deliveries_(deliveries), started_unix_ms_(started_unix_ms) {}

    // The answer, or "" with `error` set ("no job for commit X", an unknown query).
    std::string answer(const std::string &what, const std::string &arg, std::string &error) const;
    // `jobs` over the whole history: the table's jobs, and the commits the
    // store holds that are not in it (read off the loop: `stored`).
    std::string jobs(const std::vector<Job> &stored) const;

  private:
    const DispatcherConfig &config_;
    const JobTable &jobs_;
    const RunnerRegistry &runners_;
    const Store &store_;
    const Deliveries &deliveries_;
    const int64_t &started_unix_ms_;
};

} // namespace kiln
