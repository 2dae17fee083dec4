#pragma once
// What the three pages share: a job's state badge and links, and a table
// section that stops adding rows at its row or byte limit and says how
// many it left out.  Internal to pages*.cpp.
#include <cstdint>
#include <string>
#include <string_view>

#include "job_table.hpp"
#include "pages.hpp"

namespace kiln::page_rows {

// The job's state as the pages name it: its outcome once done, "queued",
// or "running" (a split commit: "running" with its shards done so far).
std::string_view state_name(const Job &job);
// <span class="state failed">failed</span>, with "3/8 shards" for a split job.
void state_badge(std::string &out, const JobTable &jobs, const Job &job);
// <a href="/commit/ID"><code>SHORT</code></a>
void commit_link(std::string &out, std::string_view commit);
// <a href="/runner/NAME">NAME</a>, or "—" for none.
void runner_link(std::string &out, std::string_view runner);
// " shard 2/8" for a shard, "" otherwise.
std::string shard_label(const Job &job);
// The opening <tr> of a job's row: data-job and data-commit, so the script
// can find the row and recolour its state badge when the job ends.
void job_row_start(std::string &out, const Job &job);
// job_row_start, then the cells every job table starts with: the commit
// (link and shard), its repository and its branch; leaves a <td> open.
void job_row_cells(std::string &out, const Job &job);

// Rows of one table, within its limits: call room() before each row and
// shown() after it; finish() writes "and N more" from the total.
class CappedRows {
  public:
    CappedRows(std::string &out, SectionLimits limits, size_t columns)
        : out_(out), limits_(limits), columns_(columns), start_(out.size()) {}
    bool room() const { return shown_ < limits_.rows && out_.size() - start_ < limits_.bytes; }
    void shown() { ++shown_; }
    size_t count() const { return shown_; }
    void finish(size_t total);

  private:
    std::string &out_;
    SectionLimits limits_;
    size_t columns_;
    size_t start_;
    size_t shown_ = 0;
};

} // namespace kiln::page_rows
