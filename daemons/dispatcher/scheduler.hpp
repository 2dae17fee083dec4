#pragma once
// Which queued job goes to which free runner slot.  Repositories take turns
// (the one served longest ago first), so one busy repository cannot starve
// another; within a repository the oldest job that some free runner can
// take (it has every label the job needs) goes first, to the least busy
// such runner.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "job_table.hpp"

namespace kiln {

// True when `have` holds every label in `need`.
bool labels_match(const std::vector<std::string> &need, const std::vector<std::string> &have);

class Scheduler {
  public:
    struct Runner {
        std::string name;
        uint32_t slots = 0;
        uint32_t busy = 0;
        const std::vector<std::string> *labels = nullptr;
    };
    struct Pick {
        uint64_t job_id;
        size_t runner; // index into the runners given
    };

    // The next assignment, or nothing when no queued job fits a free slot.
    // The caller assigns it and counts the slot busy before asking again.
    std::optional<Pick> next(const JobTable &jobs, const std::vector<Runner> &runners);

  private:
    std::string last_repo_; // served most recently
};

} // namespace kiln
