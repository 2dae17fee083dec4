#pragma once
// min_free: watches the free space of work_dir's file system (uv_fs_statfs
// on the thread pool, every interval and on demand) and says when the runner
// must stop taking jobs and when it may take them again.  The Runner turns
// that into its registration (0 slots and a `paused` reason).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <uv.h>

namespace kiln {

class DiskGuard {
  public:
    // on_change(reason): "" when jobs may run, else why not.  Called on the
    // loop, only when the state changes (the first check always counts).
    DiskGuard(uv_loop_t *loop, std::string dir, std::function<void(const std::string &)> on_change);
    ~DiskGuard();
    DiskGuard(const DiskGuard &) = delete;
    DiskGuard &operator=(const DiskGuard &) = delete;

    // Check now and every interval_ms from then on.
    void start(uint64_t interval_ms);
    void stop();
    // A new min_free (SIGHUP): checked at once.  0: never pause.
    void set_min_free(uint64_t bytes);
    void check();

    // "" or why jobs are refused; the last free figure seen.
    const std::string &paused() const { return paused_; }
    uint64_t last_free() const { return last_free_; }

  private:
    struct Req; // one statfs in flight: outlives us if we go first
    void on_statfs(int status, uint64_t free_bytes);
    static void on_timer(uv_timer_t *t) noexcept;

    uv_loop_t *loop_;
    std::string dir_;
    std::function<void(const std::string &)> on_change_;
    uint64_t min_free_ = 0;
    uv_timer_t *timer_ = nullptr;
    bool in_flight_ = false;
    bool again_ = false; // a check was asked for while one was in flight
    bool checked_ = false;
    std::string paused_;
    uint64_t last_free_ = 0;
    std::shared_ptr<DiskGuard *> alive_;
};

} // namespace kiln
