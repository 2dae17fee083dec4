#pragma once
// One assigned job on a runner: a clean workspace for the exact commit
// (vcs plugin), the tests run in it (exec plugin; only those of
// Assign.tests when a shard names them), a Result at the end.  For an
// Assign with `list` the tests are listed instead of run, and the end is a
// TestList.  Every step is asynchronous; `done` is called exactly once.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <uv.h>

#include <kiln/messages.hpp>
#include <kiln/plugin_loader.hpp>
#include <kiln/spawn.hpp>

#include "delivery.hpp"
#include "live_log.hpp"

namespace kiln {

class JobRun {
  public:
    // Called with the Result, or the TestList of a listing job.
    using Done = std::function<void(JobRun &, Delivery &&)>;

    JobRun(uv_loop_t *loop, Assign assign, const Plugin &vcs, const Plugin &exec,
           std::string workspace, std::string cache_dir, bool keep_workspace, size_t max_log,
           Done done);
    JobRun(const JobRun &) = delete;
    JobRun &operator=(const JobRun &) = delete;

    // Before start(): once the workspace is prepared and before any test
    // runs, with `sandbox` read which paths outside the workspace the
    // checkout needs (git alternates: the mirror's objects), to be bound
    // read-only into the sandbox; with `owner`, hand the workspace to that
    // user (chown -R in a child, never following symlinks) so that tests
    // running as it can write there.
    void isolate(bool sandbox, std::optional<SpawnUser> owner);
    // Before start(): stream the tests' output through `send` while they
    // run (live_log.hpp); the Result's log is then those bytes.
    void stream_log(LiveLog::Send send) { send_log_ = std::move(send); }
    void start();
    // Stop whatever step is running; done still follows, with "cancelled"
    // (a TestList with error "cancelled") — or with the real outcome when the
    // tests were over and only the workspace was being removed.
    void cancel();

    uint64_t job_id() const { return assign_.job_id; }
    uint32_t attempt() const { return assign_.attempt; }
    bool listing() const { return assign_.list; }
    const std::string &workspace() const { return workspace_; }
    // Up to the end of its vcs prepare: it may be about to take a mirror
    // that has not been touched yet (the mirror sweep waits for it).
    bool before_tests() const
    {
        return step_ == Step::idle || step_ == Step::cleaning || step_ == Step::preparing;
    }
    bool network() const { return assign_.spec.network; }
    const std::vector<std::string> &read_only() const { return read_only_; }
    // While the tests run (not for a listing): where their output goes.
    const std::shared_ptr<LiveLog> &live_log() const { return live_; }

    // Keep a log within max bytes: its head and (most of) its tail, with a
    // line saying how much of the middle was dropped.
    static std::string bounded_log(const char *log, size_t len, size_t max);

  private:
    enum class Step { idle, cleaning, preparing, isolating, running, removing, finished };
    void clean_then(Step next);
    void prepare();
    void read_alternates();
    void chown_workspace();
    void run_tests();
    void list_tests();
    void finish();
    void fail(const std::string &why);
    template <typename Fn> static void guard(JobRun *self, Fn &&fn) noexcept;

    uv_loop_t *loop_;
    Assign assign_;
    const Plugin &vcs_;
    const Plugin &exec_;
    std::string workspace_, cache_dir_;
    bool keep_workspace_;
    size_t max_log_;
    Done done_;
    Step step_ = Step::idle;
    void *op_ = nullptr;              // the plugin operation under way
    kiln_process *cleaner_ = nullptr; // the rm (or chown) under way
    bool sandbox_ = false;
    std::optional<SpawnUser> owner_;
    std::vector<std::string> read_only_; // outside the workspace, needed by the checkout
    // Lets a thread-pool callback tell whether this run still exists.
    std::shared_ptr<JobRun *> alive_ = std::make_shared<JobRun *>(this);
    bool cancelled_ = false;
    Result result_;
    LiveLog::Send send_log_;
    std::shared_ptr<LiveLog> live_; // shared with the test processes' tees, which hold it weakly
    std::vector<std::string> listed_; // a listing job's tests
};

} // namespace kiln
