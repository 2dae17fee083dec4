#pragma once
// The dispatcher's read-only web pages, rendered on the server as complete
// HTML (nothing needs JavaScript; /static/kiln.js only keeps them current):
//   /               every repository and branch with its latest outcome,
//                   the queue, running jobs, runners and their busy slots,
//                   the report receivers' backlog;
//   /commit/<id>    a commit's outcome, shards, failing tests first with
//                   their messages, the rest, its log;
//   /runner/<name>  a runner's slots, labels, current jobs, last results.
// Pure functions of the dispatcher's parts (read, never changed), so they
// are tested without a server.  Every page stays under kMaxPageBytes: long
// lists are cut ("and 12 more") and long texts are cut to their end, so
// that a page and its script together weigh less than kMaxPageBytes.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "job_table.hpp"
#include "outbox.hpp"
#include "runner_registry.hpp"

namespace kiln {

constexpr size_t kMaxPageBytes = 50 * 1024;

// The latest jobs of each (repository, branch), kept up to date by looking
// only at jobs added since the last call: `/` must not walk 100,000 jobs
// of history per request.  Job ids only grow and jobs are never removed, so
// the newest job of a branch is the one with the highest id; its state is
// read from the JobTable at render time.
class BranchIndex {
  public:
    static constexpr size_t kRecent = 8; // per branch: the newest, and a few before it

    // Take in the jobs added to `jobs` since the last call (all, the first time).
    void update(const JobTable &jobs);
    // (repository, branch) → its newest commit jobs, newest first.
    const std::map<std::pair<std::string, std::string>, std::deque<uint64_t>> &branches() const
    {
        return branches_;
    }
    // A job of branches(): from the table, or — a finished commit that has
    // left memory (issue 13) — as it was when the index last saw it.
    const Job *find(const JobTable &jobs, uint64_t id) const;

  private:
    uint64_t last_seen_ = 0;
    // Every job of branches(), without its result's log and tests.
    std::map<uint64_t, Job> seen_;
    std::map<std::pair<std::string, std::string>, std::deque<uint64_t>> branches_;
};

// What a running job has logged so far, as the dispatcher still holds it:
// `bytes` start at offset `start` of the job's log (earlier bytes were cut).
struct LiveLogView {
    uint64_t start = 0;
    std::string_view bytes;
};

// What the pages read.  `live_log`, when set, gives a running job's live
// log tail, so a page loaded mid-run shows it; without it the page shows
// the log once the job is done and the script follows the rest.
struct PageSources {
    const JobTable &jobs;
    const RunnerRegistry &runners;
    std::function<LiveLogView(uint64_t job_id)> live_log = {};
    // The report receivers' backlog (`/` shows it when there are any).
    std::function<std::vector<ReceiverStatus>()> receivers = {};
    // Read the finished commits matching an id prefix back from the store
    // into `jobs` (history out of memory), then call `then` on the loop.
    std::function<void(const std::string &prefix, std::function<void()> then)> recall = {};
};

// `/`.  Updates `index` first.
std::string render_home(const PageSources &src, BranchIndex &index, int64_t now_unix_ms);
// `/commit/<id>`: `id` is a commit id or a unique prefix of at least 4 hex
// digits.  False (and `html` untouched) when no commit job matches.
bool render_commit(const PageSources &src, std::string_view id, int64_t now_unix_ms,
                   std::string &html);
// `/runner/<name>`: a registered runner, or one that has produced results.
// False when neither.
bool render_runner(const PageSources &src, std::string_view name, int64_t now_unix_ms,
                   std::string &html);
// The page for a 404: what was asked for, and a way back.
std::string render_not_found(std::string_view what);

// Rows, then the bytes a section may take, before it says "and N more".
struct SectionLimits {
    size_t rows, bytes;
};
namespace page_limits {
constexpr SectionLimits branches{100, 12 * 1024}, queue{25, 5 * 1024}, running{40, 7 * 1024},
    runners{40, 7 * 1024}, shards{64, 5 * 1024}, failing_tests{40, 14 * 1024},
    other_tests{150, 6 * 1024}, runner_jobs{40, 7 * 1024}, runner_results{20, 7 * 1024},
    reports{20, 4 * 1024};
constexpr size_t test_message_bytes = 1536, log_tail_bytes = 11 * 1024, text_bytes = 300;
} // namespace page_limits

} // namespace kiln
