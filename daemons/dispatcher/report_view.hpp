#pragma once
// What a receiver is handed for one outbox row: the kiln_report and
// kiln_report_event built from the job as the JobTable holds it at delivery
// time.  The one place that looks a job up for reporting: when history
// moves to the store (issue 13), this is what changes.
#include <string>
#include <vector>

#include <kiln/plugin.h>

#include "job_table.hpp"
#include "outbox.hpp"

namespace kiln {

class ReportView {
  public:
    ReportView() = default;
    ReportView(const ReportView &) = delete; // report and event point into it
    ReportView &operator=(const ReportView &) = delete;

    // Fill report and event for `row`.  False with `why` when there is
    // nothing to send: the job is unknown, or a FINISHED row's job has been
    // run again since (another attempt, or queued by kilnctl retry): that
    // result is superseded.  `base_url`: [http] base_url ("" for no url).
    bool build(const JobTable &jobs, const OutboxRow &row, const std::string &base_url,
               std::string &why);

    kiln_report report{};
    kiln_report_event event{};

  private:
    std::vector<kiln_test_result> tests_;
    std::string url_;
};

// The final outcome of the newest finished commit of the same repository
// and branch before `job` (a lower job id), or KILN_OUTCOME_NONE.
int previous_outcome(const JobTable &jobs, const Job &job);

} // namespace kiln
