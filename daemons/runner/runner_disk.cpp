// kiln-runner's disk: min_free (DiskGuard pauses the runner, which
// re-registers with 0 slots and the reason) and the mirror sweep
// (mirror_keep_days, on the thread pool, with job starts held meanwhile).
#include "runner.hpp"

#include <ctime>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

#include "byte_size.hpp"

namespace kiln {

namespace {
// Mirrors age in days: looking every hour is plenty.  The first look is at
// start-up (a runner that was down for weeks frees its disk before it
// fills it further); jobs assigned meanwhile wait for it.
constexpr uint64_t kSweepFirstMs = 0;
constexpr uint64_t kSweepEveryMs = 60 * 60 * 1000;
constexpr uint64_t kSweepRetryMs = 60 * 1000;
} // namespace

void Runner::start_disk_care()
{
    disk_.set_min_free(config_.min_free);
    disk_.start(config_.disk_check_ms);
    sweep_timer_ = new uv_timer_t;
    uv_timer_init(loop_, sweep_timer_);
    sweep_timer_->data = this;
    uv_timer_start(sweep_timer_, on_sweep_timer, kSweepFirstMs, kSweepEveryMs);
}

void Runner::on_sweep_timer(uv_timer_t *t) noexcept
{
    auto *self = static_cast<Runner *>(t->data);
    guarded("mirror sweep", [self] { self->sweep_mirrors_now(); });
}

void Runner::on_disk_state(const std::string &why)
{
    bool was = !paused_.empty();
    paused_ = why;
    if (!why.empty())
        log_warning("runner %s: taking no jobs: %s", config_.name.c_str(), why.c_str());
    else if (was)
        log_notice("runner %s: enough disk again (%s free): taking jobs", config_.name.c_str(),
                   format_bytes(disk_.last_free()).c_str());
    else
        return; // the first check found room: nothing changes
    if (registered_ && !stopping_)
        send_register();
}

void Runner::sweep_mirrors_now()
{
    if (sweeping_ || stopped_ || config_.mirror_keep_days == 0)
        return;
    // A job preparing its workspace may hold a mirror it has not touched
    // yet (its last use still weeks old): try again in a minute, then
    // hourly again.
    for (const auto &[id, run] : running_)
        if (run->before_tests()) {
            uv_timer_start(sweep_timer_, on_sweep_timer, kSweepRetryMs, kSweepEveryMs);
            return;
        }
    struct Work {
        uv_work_t req;
        std::weak_ptr<Runner *> runner;
        std::string cache, workspaces;
        int64_t now;
        uint64_t keep_s;
        SweepOutcome outcome;
    };
    auto *w = new Work{};
    w->req.data = w;
    w->runner = alive_;
    w->cache = config_.work_dir + "/cache";
    w->workspaces = config_.work_dir + "/workspaces";
    w->now = static_cast<int64_t>(time(nullptr));
    w->keep_s = static_cast<uint64_t>(config_.mirror_keep_days) * 86400;
    int rc = uv_queue_work(
        loop_, &w->req,
        [](uv_work_t *req) noexcept {
            auto *work = static_cast<Work *>(req->data);
            try {
                work->outcome = sweep_mirrors(work->cache, work->now, work->keep_s,
                                              mirrors_in_use(work->workspaces));
            } catch (const std::exception &e) {
                work->outcome.errors.push_back(e.what());
            }
        },
        [](uv_work_t *req, int) noexcept {
            auto *work = static_cast<Work *>(req->data);
            auto alive = work->runner.lock();
            if (alive && *alive)
                guarded("mirror sweep", [&] { (*alive)->on_swept(std::move(work->outcome)); });
            delete work;
        });
    if (rc < 0) {
        delete w;
        log_warning("mirror sweep: %s", uv_strerror(rc));
        return;
    }
    sweeping_ = true;
}

void Runner::on_swept(SweepOutcome &&outcome)
{
    sweeping_ = false;
    for (const std::string &m : outcome.removed)
        log_notice("mirror %s: unused for over %u day(s); removed", m.c_str(),
                   config_.mirror_keep_days);
    for (const std::string &e : outcome.errors)
        log_warning("mirror sweep: %s", e.c_str());
    auto held = std::move(deferred_);
    deferred_.clear();
    for (const Assign &a : held)
        on_assign(a);
}

} // namespace kiln
