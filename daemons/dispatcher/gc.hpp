#pragma once
// Garbage collection on the loop's side: when it runs (gc_interval, a
// little after the start, kilnctl gc) and handing each batch to the libuv
// thread pool (store_gc.cpp does the SQL on a connection of its own).  The
// loop only starts a batch and, after it commits, has the JobTable forget
// what it deleted: it never waits on the database.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <uv.h>

#include "retention.hpp"
#include "store_gc.hpp"

struct sqlite3;

namespace kiln {

class Gc {
  public:
    using Forget = std::function<void(const std::vector<uint64_t> &job_ids)>;
    // `error`: "" or why the run stopped (the batches before it stay done).
    using Done = std::function<void(const GcTally &tally, const std::string &error)>;

    Gc(uv_loop_t *loop, Forget forget) : loop_(loop), forget_(std::move(forget)) {}
    ~Gc();
    Gc(const Gc &) = delete;
    Gc &operator=(const Gc &) = delete;

    // Start the timer on the Store's database: a first run `first_ms` from
    // now, then every policy.interval_ms (only when the policy has
    // anything to do).
    void start(const std::string &db_path, const RetentionPolicy &policy, uint64_t first_ms = 10000);
    // SIGHUP: the new policy from the next batch on.
    void set_policy(const RetentionPolicy &policy);
    // No batch starts after this; one in flight ends (the loop waits for it).
    void stop();
    // kilnctl gc: a run now (after the one in progress, if any) or, dry,
    // what one would do.  `done` runs on the loop.
    void request(bool dry_run, Done done);
    bool running() const { return busy_; }

  private:
    struct Work;
    void arm();
    void begin_run();
    void next_batch();
    void finish_run(const std::string &error);
    static void on_timer(uv_timer_t *timer) noexcept;

    uv_loop_t *loop_;
    Forget forget_;
    std::string path_;
    RetentionPolicy policy_;
    uv_timer_t *timer_ = nullptr;
    sqlite3 *db_ = nullptr; // opened on the thread pool, used only there
    bool busy_ = false;     // a batch or a plan is on the thread pool
    bool stopped_ = false;
    GcTally run_;           // the run in progress so far
    std::vector<Done> waiting_;  // of the run in progress
    std::vector<Done> next_run_; // asked for while one ran
};

} // namespace kiln
