#pragma once
// Delivering report events: the outbox in memory, per receiver, worked
// through on the loop.  An event becomes one outbox row per receiver that
// hears it (raise), committed by the Store in the same batch as the job
// change that caused it; once durable the rows are accepted here and sent:
//   - per receiver, at most max_in_flight attempts at once, and at most one
//     per commit, in id order: a commit's FINISHED never goes out before
//     its QUEUED was delivered or rejected;
//   - a failed attempt pauses the receiver: 1 s, doubling per failure up to
//     report_retry_max (or the receiver's retry_after_ms), back to 0 after
//     a success; a rejected row is kept, marked, logged and never retried;
//   - a delivered row is deleted; nothing here waits for the disk.
// Each receiver costs the others nothing: its own queue, limit and pause.
// Plugin calls are asynchronous, started from a uv timer, never from inside
// a plugin's callback.
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <uv.h>

#include "job_table.hpp"
#include "outbox.hpp"
#include "reporter.hpp"
#include "store.hpp"

namespace kiln {

class Deliveries {
  public:
    static constexpr size_t kDefaultMaxInFlight = 4;

    Deliveries(uv_loop_t *loop, Reporter &reporter, Store &store, const JobTable &jobs);
    ~Deliveries();
    Deliveries(const Deliveries &) = delete;
    Deliveries &operator=(const Deliveries &) = delete;

    static constexpr uint64_t kFirstBackoffMs = 1000;

    // report_retry_max, [http] base_url, attempts at once per receiver, the
    // first failure's pause (tests shorten it).
    void configure(uint64_t retry_max_ms, std::string base_url,
                   size_t max_in_flight = kDefaultMaxInFlight,
                   uint64_t first_backoff_ms = kFirstBackoffMs);

    // An event of a commit's (top-level) job: a row for each receiver whose
    // `repos` has the job's repository and whose plugin wants `kind`, with
    // fresh ids.  Hand them to Store::save_job with the job's change, and
    // to accept() once durable.
    std::vector<OutboxRow> raise(int kind, const Job &job, int64_t now_unix_ms);
    // Rows now durable: deliver them.
    void accept(const std::vector<OutboxRow> &rows);
    // Start-up: the outbox as stored (pending rows are delivered, rejected
    // ones counted).
    void restore(const std::vector<OutboxRow> &rows);
    // The receivers changed (reload): rows of a receiver now configured go out.
    void kick();
    // Shutdown: cancel the attempts in flight, start no more.
    void stop();

    std::vector<ReceiverStatus> status(int64_t now_unix_ms) const;
    // Rows not delivered yet, over every receiver.
    size_t backlog() const;
    // Whether a job still has rows to deliver (its commit must stay in
    // memory until then: the report is built from it).
    bool holds(uint64_t job_id) const { return rows_by_job_.count(job_id) != 0; }

  private:
    struct Call;
    struct Queue {
        std::map<uint64_t, OutboxRow> pending; // by id: send order
        std::map<uint64_t, Call *> in_flight;  // by row id
        std::set<uint64_t> busy_jobs;          // commits with an attempt in flight
        uint64_t backoff_ms = 0;               // the last pause; 0 after a success
        int64_t paused_until = 0;
        size_t rejected = 0;
        uint64_t delivered = 0, failed = 0, refused = 0;
        std::string last_error;
    };

    void pump();
    void send(const std::string &identity, Queue &q, OutboxRow &row);
    void finished(Call *call, int status, bool rejected, uint64_t retry_after_ms,
                  const char *error);
    void arm(int64_t wake_unix_ms);
    // A row of the job left `pending` (delivered, rejected or dropped).
    void let_go(uint64_t job_id);
    static void on_timer(uv_timer_t *timer) noexcept;

    uv_loop_t *loop_;
    Reporter &reporter_;
    Store &store_;
    const JobTable &jobs_;
    uint64_t retry_max_ms_ = 60000;
    uint64_t first_backoff_ms_ = kFirstBackoffMs;
    std::string base_url_;
    size_t max_in_flight_ = kDefaultMaxInFlight;
    std::map<std::string, Queue> queues_; // by receiver identity
    std::map<uint64_t, uint32_t> rows_by_job_; // pending rows per job, over every receiver
    uv_timer_t *timer_ = nullptr;
    bool stopping_ = false;
};

} // namespace kiln
