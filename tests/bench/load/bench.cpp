#include "bench.hpp"

#include <cstdio>

namespace kiln::bench {

Bench::Bench(uv_loop_t *loop, Options opts)
    : loop_(loop), o_(std::move(opts)), dispatcher_(loop, o_.dispatcher)
{
    dispatcher_.on_listening = [this](const std::string &address) {
        address_ = address;
        connect_runners();
    };
    dispatcher_.on_failure = [this](const std::string &why) {
        if (!done_)
            finish(false, why);
    };
}

int Bench::run()
{
    sent_ns_.assign(o_.commits, 0);
    acked_ns_.assign(o_.commits, 0);
    assigned_ns_.assign(o_.commits, 0);
    job_of_.assign(o_.commits, 0);
    index_of_job_.reserve(o_.commits);
    result_ack_ms_.reserve(o_.commits);
    // Heartbeats and runner timeouts far beyond the run: synthetic runners
    // send no heartbeats; their results keep the connections busy anyway.
    if (!dispatcher_.make_state_dir(static_cast<long long>(o_.timeout_s) + 600, o_.config_extra))
        return 1;
    uv_timer_init(loop_, &deadline_);
    deadline_.data = this;
    uv_timer_start(&deadline_, on_deadline, static_cast<uint64_t>(o_.timeout_s * 1000), 0);
    if (!dispatcher_.start()) {
        uv_close(reinterpret_cast<uv_handle_t *>(&deadline_), nullptr);
        uv_run(loop_, UV_RUN_DEFAULT);
        return 1;
    }
    fprintf(stderr, "kiln-bench-load: %u runners, %u commits against %s (log %s)\n", o_.runners,
            o_.commits, o_.dispatcher.c_str(), dispatcher_.log_path().c_str());
    // Runs until finish() has stopped every client and the dispatcher exited.
    while (!done_ || dispatcher_.running())
        uv_run(loop_, UV_RUN_ONCE);
    // Let the clients' handles close.
    runners_.clear();
    observer_.reset();
    uv_close(reinterpret_cast<uv_handle_t *>(&deadline_), nullptr);
    dispatcher_.close_handles();
    uv_run(loop_, UV_RUN_DEFAULT);

    print_report();
    if (!ok_) {
        fprintf(stderr, "kiln-bench-load: %s\n", why_.c_str());
        fprintf(stderr, "kiln-bench-load: dispatcher log kept in %s\n",
                dispatcher_.log_path().c_str());
        return 1;
    }
    if (dispatcher_.exit_signal() || dispatcher_.exit_status())
        fprintf(stderr, "kiln-bench-load: note: the dispatcher exited with status %lld signal %d\n",
                static_cast<long long>(dispatcher_.exit_status()), dispatcher_.exit_signal());
    if (!o_.keep)
        dispatcher_.remove_state_dir();
    else
        fprintf(stderr, "kiln-bench-load: kept %s\n", dispatcher_.dir().c_str());
    return mismatches_ ? 1 : 0;
}

void Bench::on_deadline(uv_timer_t *t) noexcept
{
    auto *self = static_cast<Bench *>(t->data);
    char why[200];
    snprintf(why, sizeof why,
             "timed out after %.0f s: %u runner(s) registered, %u/%u commits sent, %u acked, "
             "%u assigned, %u completed",
             self->o_.timeout_s, self->runners_registered_, self->sent_, self->o_.commits,
             self->acked_, self->assigns_, self->completed_);
    self->finish(false, why);
}

// Stop everything: the clients, then the dispatcher (SIGTERM; SIGKILL if it
// lingers).  run() returns once the dispatcher has exited.
void Bench::finish(bool ok, const std::string &why)
{
    if (done_)
        return;
    done_ = true;
    ok_ = ok;
    why_ = why;
    if (dispatcher_.running())
        after_ = read_proc(dispatcher_.pid()); // before anything is torn down
    uv_timer_stop(&deadline_);
    if (observer_)
        observer_->stop();
    for (auto &r : runners_)
        r->client->stop();
    dispatcher_.stop();
}

} // namespace kiln::bench
