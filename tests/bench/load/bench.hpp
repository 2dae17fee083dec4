// One benchmark run: a DispatcherProcess, the synthetic runners and observer
// that load it (synthetic_peers.cpp), the per-commit timings they record,
// and the report printed from them (report.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/resource.h>

#include <uv.h>

#include <kiln/messages.hpp>
#include <kiln/net.hpp>

#include "dispatcher_process.hpp"
#include "options.hpp"
#include "proc_stats.hpp"

namespace kiln::bench {

inline double ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

// One synthetic runner: 1 slot, 1 connection.
struct Runner {
    unsigned index = 0;
    std::string name;
    std::unique_ptr<Client> client;
    uint64_t next_id = 1;
    uint64_t register_id = 0;
    bool registered = false;
};

class Bench {
  public:
    Bench(uv_loop_t *loop, Options opts);

    // Start the dispatcher, load it, print the report; the exit status.
    int run();

  private:
    static void on_deadline(uv_timer_t *) noexcept;
    void finish(bool ok, const std::string &why);
    void print_report();

    // The synthetic peers (synthetic_peers.cpp).
    void connect_runners();
    void start_observer();
    void pump();
    void runner_message(Runner &r, Message &&msg);
    void observer_message(Message &&msg);

    uv_loop_t *loop_;
    Options o_;
    DispatcherProcess dispatcher_;
    std::string address_;
    uv_timer_t deadline_{};

    std::vector<std::unique_ptr<Runner>> runners_;
    unsigned runners_started_ = 0, runners_registered_ = 0;
    std::unique_ptr<Client> observer_;
    bool observer_ready_ = false;

    // Per commit (by index).
    std::vector<uint64_t> sent_ns_, acked_ns_, assigned_ns_;
    std::vector<uint64_t> job_of_;  // Ack.job_id
    std::unordered_map<uint64_t, unsigned> index_of_job_;
    unsigned sent_ = 0, acked_ = 0, assigns_ = 0, completed_ = 0;
    unsigned mismatches_ = 0, early_assigns_ = 0, duplicate_assigns_ = 0;
    std::vector<double> result_ack_ms_;
    std::unordered_map<uint64_t, uint64_t> result_sent_ns_; // by job id (runners' ids overlap)
    uint64_t t_first_sent_ = 0, t_last_done_ = 0, t_ready_ = 0;
    ProcStats before_, after_;
    struct rusage self_before_ {};

    bool done_ = false, ok_ = false;
    std::string why_;
};

} // namespace kiln::bench
