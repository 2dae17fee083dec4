// The delivery engine (deliveries.hpp): per-receiver queues of outbox rows,
// attempts through the report plugins, back-off, rejection.
#include "deliveries.hpp"

#include <algorithm>
#include <cerrno>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include "report_view.hpp"

namespace kiln {

namespace {

// A receiver's Retry-After is honoured up to this: a peer's number is not
// trusted to park a receiver for days.
constexpr uint64_t kMaxRetryAfterMs = 3600 * 1000;

} // namespace

// One attempt in flight: what its callback needs, and the receiver set that
// keeps its plugin loaded until it ends.
struct Deliveries::Call {
    Deliveries *engine;
    std::string receiver;
    uint64_t row_id = 0;
    uint64_t job_id = 0;
    std::shared_ptr<Reporter::Receivers> set;
    const Receiver *target = nullptr;
    void *op = nullptr;
};

Deliveries::Deliveries(uv_loop_t *loop, Reporter &reporter, Store &store, const JobTable &jobs)
    : loop_(loop), reporter_(reporter), store_(store), jobs_(jobs)
{
}

Deliveries::~Deliveries()
{
    if (timer_)
        uv_close(reinterpret_cast<uv_handle_t *>(timer_),
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
}

void Deliveries::configure(uint64_t retry_max_ms, std::string base_url, size_t max_in_flight,
                           uint64_t first_backoff_ms)
{
    first_backoff_ms_ = std::max<uint64_t>(first_backoff_ms, 1);
    retry_max_ms_ = std::max(retry_max_ms, first_backoff_ms_);
    base_url_ = std::move(base_url);
    max_in_flight_ = std::max<size_t>(max_in_flight, 1);
}

std::vector<OutboxRow> Deliveries::raise(int kind, const Job &job, int64_t now_unix_ms)
{
    std::vector<OutboxRow> rows;
    for (const Receiver &r : *reporter_.current()) {
        if (!r.table.hears(job.spec.repo) || !r.wants(kind))
            continue;
        OutboxRow row;
        row.id = store_.next_delivery_id();
        row.receiver = r.table.identity;
        row.job_id = job.id;
        row.attempt = job.attempt;
        row.kind = kind;
        row.event_unix_ms = now_unix_ms;
        rows.push_back(std::move(row));
    }
    return rows;
}

void Deliveries::accept(const std::vector<OutboxRow> &rows)
{
    for (const auto &row : rows)
        if (queues_[row.receiver].pending.emplace(row.id, row).second)
            rows_by_job_[row.job_id]++;
    if (!rows.empty())
        kick();
}

void Deliveries::restore(const std::vector<OutboxRow> &rows)
{
    size_t pending = 0;
    for (const auto &row : rows) {
        Queue &q = queues_[row.receiver];
        if (row.rejected) {
            q.rejected++;
        } else {
            if (q.pending.emplace(row.id, row).second)
                rows_by_job_[row.job_id]++;
            pending++;
        }
    }
    for (const auto &[identity, q] : queues_)
        if (!q.pending.empty() && !reporter_.find(identity))
            log_warning("report %s: %zu event(s) queued for a receiver no [[report]] table "
                        "names now; they wait until one does",
                        identity.c_str(), q.pending.size());
    if (pending)
        log_notice("report outbox: %zu event(s) to deliver", pending);
    kick();
}

void Deliveries::kick()
{
    if (stopping_)
        return;
    arm(0);
}

void Deliveries::arm(int64_t wake_unix_ms)
{
    if (!timer_) {
        timer_ = new uv_timer_t;
        uv_timer_init(loop_, timer_);
        timer_->data = this;
    }
    if (wake_unix_ms == std::numeric_limits<int64_t>::max()) {
        uv_timer_stop(timer_);
        return;
    }
    int64_t wait = std::max<int64_t>(0, wake_unix_ms - unix_ms());
    uv_timer_start(timer_, on_timer, static_cast<uint64_t>(wait), 0);
}

void Deliveries::on_timer(uv_timer_t *timer) noexcept
{
    auto *self = static_cast<Deliveries *>(timer->data);
    guarded("report deliveries", [self] { self->pump(); });
}

// Start what may start now on every receiver; arm the timer for the
// earliest row or receiver that waits for its time.
void Deliveries::pump()
{
    if (stopping_)
        return;
    int64_t now = unix_ms();
    int64_t wake = std::numeric_limits<int64_t>::max();
    for (auto &[identity, q] : queues_) {
        if (q.pending.empty() || !reporter_.find(identity))
            continue;
        if (q.paused_until > now) {
            wake = std::min(wake, q.paused_until);
            continue;
        }
        // The first pending row of each commit is its next; later ones wait.
        std::set<uint64_t> blocked = q.busy_jobs;
        std::vector<uint64_t> picks;
        for (auto &[id, row] : q.pending) {
            if (q.in_flight.size() + picks.size() >= max_in_flight_)
                break;
            if (!blocked.insert(row.job_id).second)
                continue;
            if (row.next_attempt_unix_ms > now)
                wake = std::min(wake, row.next_attempt_unix_ms);
            else
                picks.push_back(id);
        }
        for (uint64_t id : picks) {
            auto it = q.pending.find(id);
            if (it != q.pending.end())
                send(identity, q, it->second);
            if (q.paused_until > now) { // that one could not even start
                wake = std::min(wake, q.paused_until);
                break;
            }
        }
    }
    arm(wake);
}

void Deliveries::send(const std::string &identity, Queue &q, OutboxRow &row)
{
    ReportView view;
    std::string why;
    if (!view.build(jobs_, row, base_url_, why)) {
        log_info("report %s: delivery %llu (%s of job %llu) dropped: %s", identity.c_str(),
                 static_cast<unsigned long long>(row.id), event_kind_name(row.kind),
                 static_cast<unsigned long long>(row.job_id), why.c_str());
        uint64_t id = row.id;
        store_.delete_delivery(id);
        let_go(row.job_id);
        q.pending.erase(id);
        kick(); // the commit's next row may go now
        return;
    }
    auto call = std::make_unique<Call>(); // until handed to the plugin
    call->engine = this;
    call->receiver = identity;
    call->row_id = row.id;
    call->job_id = row.job_id;
    call->set = reporter_.current();
    call->target = reporter_.find(identity);
    const Plugin &plugin = *call->target->plugin;
    Call *raw = call.release(); // finished() owns it from here
    q.in_flight[row.id] = raw;
    q.busy_jobs.insert(row.job_id);
    int rc;
    if (const kiln_report_event_ops *ops = plugin.events()) {
        rc = ops->event(
            plugin.self(), &view.event,
            [](void *arg, const kiln_delivery *res) noexcept {
                auto *c = static_cast<Call *>(arg);
                guarded("report delivery: after the plugin", [c, res] {
                    kiln_delivery none{-EIO, 0, 0, "the plugin gave no result"};
                    const kiln_delivery &d = res ? *res : none;
                    c->engine->finished(c, d.status, d.status != 0 && d.rejected != 0,
                                        d.retry_after_ms, d.error);
                });
            },
            raw, &raw->op);
    } else {
        // A plugin of ABI 1.0's kind: report(), final results only, no refusals.
        rc = plugin.report().report(
            plugin.self(), &view.report,
            [](void *arg, int status, const char *error) noexcept {
                auto *c = static_cast<Call *>(arg);
                guarded("report delivery: after the plugin", [c, status, error] {
                    c->engine->finished(c, status, false, 0, error);
                });
            },
            raw, &raw->op);
    }
    if (rc != 0) // no callback will come
        finished(raw, rc < 0 ? rc : -rc, false, 0,
                 (std::string("could not start: ") + uv_strerror(rc < 0 ? rc : -rc)).c_str());
}

void Deliveries::finished(Call *raw, int status, bool rejected, uint64_t retry_after_ms,
                          const char *error)
{
    std::unique_ptr<Call> call(raw);
    Queue &q = queues_[call->receiver];
    q.in_flight.erase(call->row_id);
    q.busy_jobs.erase(call->job_id);
    auto it = q.pending.find(call->row_id);
    if (it == q.pending.end())
        return;
    OutboxRow &row = it->second;
    const char *receiver = call->receiver.c_str();
    unsigned long long id = row.id;
    std::string why = error && *error ? error : (status ? uv_strerror(status) : "");
    if (status == 0) {
        q.delivered++;
        q.backoff_ms = 0;
        q.paused_until = 0;
        store_.delete_delivery(row.id);
        log_debug("report %s: delivery %llu (%s of job %llu) delivered", receiver, id,
                  event_kind_name(row.kind), static_cast<unsigned long long>(row.job_id));
        let_go(row.job_id);
        q.pending.erase(it);
    } else if (status == -ECANCELED && stopping_) {
        return; // shutdown: the row stays pending for the next start
    } else if (rejected) {
        q.refused++;
        q.rejected++;
        q.last_error = why;
        row.rejected = true;
        row.last_error = why;
        store_.update_delivery(row);
        log_err("report %s: delivery %llu (%s of job %llu) rejected, not retried: %s", receiver,
                id, event_kind_name(row.kind), static_cast<unsigned long long>(row.job_id),
                why.c_str());
        let_go(row.job_id);
        q.pending.erase(it);
    } else {
        q.failed++;
        q.last_error = why;
        // Attempts that were in flight together fail together: one pause,
        // doubled once (a failure while paused already joins that pause).
        int64_t now = unix_ms();
        if (q.paused_until <= now || retry_after_ms) {
            q.backoff_ms =
                q.backoff_ms ? std::min(q.backoff_ms * 2, retry_max_ms_) : first_backoff_ms_;
            uint64_t wait =
                retry_after_ms ? std::min(retry_after_ms, kMaxRetryAfterMs) : q.backoff_ms;
            q.paused_until = std::max(q.paused_until, now + static_cast<int64_t>(wait));
        }
        uint64_t wait = static_cast<uint64_t>(q.paused_until - now);
        row.retries++;
        row.next_attempt_unix_ms = q.paused_until;
        row.last_error = why;
        store_.update_delivery(row);
        log_warning("report %s: delivery %llu (%s of job %llu) failed (attempt %u): %s; "
                    "retrying in %llu ms",
                    receiver, id, event_kind_name(row.kind),
                    static_cast<unsigned long long>(row.job_id), row.retries, why.c_str(),
                    static_cast<unsigned long long>(wait));
    }
    kick();
}

void Deliveries::let_go(uint64_t job_id)
{
    auto it = rows_by_job_.find(job_id);
    if (it != rows_by_job_.end() && --it->second == 0)
        rows_by_job_.erase(it);
}

void Deliveries::stop()
{
    stopping_ = true;
    if (timer_)
        uv_timer_stop(timer_);
    for (auto &[identity, q] : queues_)
        for (auto &[id, call] : q.in_flight)
            if (call->op)
                call->target->plugin->cancel(call->op);
}

} // namespace kiln
