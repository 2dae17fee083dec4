// Report events raised where jobs change: each event's outbox rows are
// committed in the same batch as the job change that caused it, and handed
// to the delivery engine once durable (deliveries.hpp).  FAILING is not
// raised: runners do not send a test's failure before the result yet
// (issue 14).
#include "dispatcher.hpp"

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

void Dispatcher::save_event(uint64_t job_id, int kind, Store::Durable durable)
{
    const Job &job = *jobs_.find(job_id);
    std::vector<OutboxRow> rows;
    if (kind && !job.parent)
        rows = deliveries_.raise(kind, job, unix_ms());
    if (rows.empty()) {
        save(job_id, std::move(durable));
        return;
    }
    store_.save_job(job, rows, [this, rows, durable = std::move(durable)] {
        deliveries_.accept(rows);
        if (durable)
            durable();
    });
}

void Dispatcher::restore_reports()
{
    size_t late = 0;
    for (const auto &[id, job] : jobs_.jobs())
        if (job.state == JobState::done && !job.parent && !job.reported) {
            for_job(id, "queueing its report", [&, id = id] {
                jobs_.set_reported(id);
                save_event(id, KILN_EVENT_FINISHED, [this, id] { retire(id); });
            });
            late++;
        }
    if (late)
        log_notice("report outbox: %zu finished commit(s) not reported before; queued now", late);
}

} // namespace kiln
