// Garbage collection's schedule and its batches on the thread pool.
#include "gc.hpp"

#include <sqlite3.h>

#include <memory>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>

namespace kiln {

// One trip to the thread pool: a batch, or a dry run's plan.
struct Gc::Work {
    uv_work_t req{};
    Gc *gc;
    RetentionPolicy policy;
    bool dry = false;
    Done done;      // dry: the caller's
    int64_t now = 0;
    GcBatch batch;  // out
    std::string error;
};

Gc::~Gc()
{
    if (timer_)
        uv_close(reinterpret_cast<uv_handle_t *>(timer_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
    if (db_)
        sqlite3_close(db_); // no batch is in flight: the loop has ended
}

void Gc::start(const std::string &db_path, const RetentionPolicy &policy, uint64_t first_ms)
{
    path_ = db_path;
    policy_ = policy;
    timer_ = new uv_timer_t;
    uv_timer_init(loop_, timer_);
    timer_->data = this;
    // The timer must not keep a stopping dispatcher's loop alive.
    uv_unref(reinterpret_cast<uv_handle_t *>(timer_));
    if (policy_.active())
        uv_timer_start(timer_, on_timer, first_ms, 0);
}

void Gc::set_policy(const RetentionPolicy &policy)
{
    bool rearm = policy.interval_ms != policy_.interval_ms || policy.active() != policy_.active();
    policy_ = policy;
    if (rearm && timer_ && !stopped_)
        arm();
}

void Gc::arm()
{
    uv_timer_stop(timer_);
    if (policy_.active())
        uv_timer_start(timer_, on_timer, policy_.interval_ms, 0);
}

void Gc::stop()
{
    stopped_ = true;
    if (timer_)
        uv_timer_stop(timer_);
}

void Gc::on_timer(uv_timer_t *timer) noexcept
{
    guarded("gc: starting a run", [timer] {
        auto *self = static_cast<Gc *>(timer->data);
        if (!self->busy_)
            self->begin_run();
    });
}

void Gc::request(bool dry_run, Done done)
{
    if (stopped_ || path_.empty()) {
        done({}, "the dispatcher is stopping");
        return;
    }
    if (dry_run) {
        // Its own trip: a plan changes nothing, it may overlap a run.
        auto *w = new Work;
        w->gc = this;
        w->policy = policy_;
        w->dry = true;
        w->done = std::move(done);
        w->now = unix_ms();
        w->req.data = w;
        uv_queue_work(
            loop_, &w->req,
            [](uv_work_t *req) noexcept {
                auto *w = static_cast<Work *>(req->data);
                sqlite3 *db = nullptr;
                try {
                    // A plan has a connection of its own: a run's may be busy.
                    db = open_gc_connection(w->gc->path_);
                    w->batch.tally = gc_plan(db, w->policy, w->now);
                } catch (const std::exception &e) {
                    w->error = e.what();
                }
                sqlite3_close(db);
            },
            [](uv_work_t *req, int) noexcept {
                std::unique_ptr<Work> w(static_cast<Work *>(req->data));
                guarded("gc: answering a dry run", [&w] { w->done(w->batch.tally, w->error); });
            });
        return;
    }
    if (busy_) {
        next_run_.push_back(std::move(done));
        return;
    }
    waiting_.push_back(std::move(done));
    begin_run();
}

void Gc::begin_run()
{
    run_ = GcTally{};
    uv_timer_stop(timer_);
    if (!policy_.active()) { // kilnctl gc without a policy: nothing to delete
        finish_run("");
        return;
    }
    next_batch();
}

void Gc::next_batch()
{
    busy_ = true;
    auto *w = new Work;
    w->gc = this;
    w->policy = policy_;
    w->now = unix_ms();
    w->req.data = w;
    uv_queue_work(
        loop_, &w->req,
        [](uv_work_t *req) noexcept {
            auto *w = static_cast<Work *>(req->data);
            Gc *gc = w->gc;
            try {
                if (!gc->db_)
                    gc->db_ = open_gc_connection(gc->path_);
                w->batch = gc_batch(gc->db_, w->policy, w->now);
                // The file gives back what the batch freed, a bounded step
                // at a time (each step holds the write lock).
                if (w->batch.tally.jobs + w->batch.tally.logs_cut > 0)
                    gc_vacuum(gc->db_, 4096);
            } catch (const std::exception &e) {
                w->error = e.what();
            }
        },
        [](uv_work_t *req, int) noexcept {
            std::unique_ptr<Work> w(static_cast<Work *>(req->data));
            guarded("gc: after a batch", [&w] {
                Gc *gc = w->gc;
                gc->busy_ = false;
                if (!w->batch.deleted.empty())
                    gc->forget_(w->batch.deleted);
                gc->run_.add(w->batch.tally);
                if (!w->error.empty())
                    gc->finish_run(w->error);
                else if (w->batch.more && !gc->stopped_)
                    gc->next_batch();
                else
                    gc->finish_run("");
            });
        });
}

void Gc::finish_run(const std::string &error)
{
    if (!error.empty())
        log_err("gc: %s", error.c_str());
    if (run_.jobs + run_.logs_cut > 0 || !error.empty())
        log_notice("gc: deleted %llu job(s) (%llu shard(s), %llu stored bytes), cut %llu log(s) by"
                   " %llu bytes",
                   static_cast<unsigned long long>(run_.jobs),
                   static_cast<unsigned long long>(run_.shards),
                   static_cast<unsigned long long>(run_.stored_bytes),
                   static_cast<unsigned long long>(run_.logs_cut),
                   static_cast<unsigned long long>(run_.log_bytes_cut));
    auto done = std::move(waiting_);
    waiting_.clear();
    for (auto &d : done)
        guarded("gc: answering", [&] { d(run_, error); });
    if (stopped_) {
        for (auto &d : next_run_)
            guarded("gc: answering", [&] { d({}, "the dispatcher is stopping"); });
        next_run_.clear();
        return;
    }
    if (!next_run_.empty()) {
        waiting_ = std::move(next_run_);
        next_run_.clear();
        begin_run();
        return;
    }
    arm();
}

} // namespace kiln
