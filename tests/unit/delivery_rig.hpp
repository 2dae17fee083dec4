#pragma once
// A delivery engine on its own loop for the tests: a real Store in a temp
// dir, a JobTable, the receivers of some [[report]] tables (the fixture
// plugins of tests/fixtures, event_fixture.so among them) and Deliveries.
// Built in setup and deleted in teardown (a failing assert skips
// destructors); reopen() is a restart: the same state dir, a fresh engine.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/config.hpp>

#include "../fixtures/event_fixture.h"
#include "deliveries.hpp"
#include "dispatcher_config.hpp"
#include "job_table.hpp"
#include "reporter.hpp"
#include "store.hpp"

namespace kiln {

struct DeliveryRig {
    uv_loop_t loop;
    std::string dir;
    std::string reports_toml;
    JobTable jobs;
    std::unique_ptr<Store> store;
    std::unique_ptr<Reporter> reporter;
    std::unique_ptr<Deliveries> engine;

    DeliveryRig();
    ~DeliveryRig();

    // Load the receivers of `toml` ([[report]] tables) and open the store.
    void start(const std::string &toml, uint64_t retry_max_ms = 400,
               uint64_t first_backoff_ms = 50, const std::string &base_url = "");
    // A restart: the engine, receivers and store built again on the same
    // state dir, the outbox restored from it.
    void reopen();

    // The event_fixture state of receiver `i` (its [[report]] table's index).
    event_fixture &fixture(size_t i);
    // A commit's job: queued (and with `attempt`, assigned and maybe done).
    uint64_t add_job(const std::string &repo, char fill);
    void assign(uint64_t id, int64_t now = 2000);
    void finish(uint64_t id, int outcome, int64_t now = 3000);
    // Raise `kind` for job `id`, save the rows with the job, accept them
    // once durable (as the dispatcher does); the rows.
    std::vector<OutboxRow> raise(int kind, uint64_t id, int64_t now = 1500);
    // Every row raised is durable and accepted, and none is left to deliver.
    bool settled() const { return accepted == raised && engine->backlog() == 0; }
    size_t raised = 0, accepted = 0; // batches of rows
    // Run the loop until `done` or `timeout_ms` passed; done() then.
    bool run_until(const std::function<bool()> &done, uint64_t timeout_ms = 5000);
    const ReceiverStatus *status_of(const std::string &receiver);

  private:
    std::vector<ReceiverStatus> last_status_;
    uint64_t retry_max_ms_ = 400, first_backoff_ms_ = 50;
    std::string base_url_;
    void build();
};

} // namespace kiln
