#include "disk_guard.hpp"

#include <kiln/log.hpp>

#include "byte_size.hpp"

namespace kiln {

struct DiskGuard::Req {
    uv_fs_t fs;
    std::weak_ptr<DiskGuard *> guard;
};

DiskGuard::DiskGuard(uv_loop_t *loop, std::string dir,
                     std::function<void(const std::string &)> on_change)
    : loop_(loop), dir_(std::move(dir)), on_change_(std::move(on_change)),
      alive_(std::make_shared<DiskGuard *>(this))
{
}

DiskGuard::~DiskGuard()
{
    *alive_ = nullptr;
    if (timer_)
        uv_close(reinterpret_cast<uv_handle_t *>(timer_),
                 [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
}

void DiskGuard::start(uint64_t interval_ms)
{
    if (!timer_) {
        timer_ = new uv_timer_t;
        uv_timer_init(loop_, timer_);
        timer_->data = this;
    }
    uv_timer_start(timer_, on_timer, interval_ms, interval_ms);
    check();
}

void DiskGuard::stop()
{
    if (timer_)
        uv_timer_stop(timer_);
}

void DiskGuard::set_min_free(uint64_t bytes)
{
    bool changed = bytes != min_free_;
    min_free_ = bytes;
    if (changed && timer_)
        check();
}

void DiskGuard::on_timer(uv_timer_t *t) noexcept
{
    static_cast<DiskGuard *>(t->data)->check();
}

void DiskGuard::check()
{
    if (in_flight_) {
        again_ = true; // the answer in flight may predate a new min_free
        return;
    }
    auto *req = new Req{};
    req->guard = alive_;
    int rc = uv_fs_statfs(loop_, &req->fs, dir_.c_str(), [](uv_fs_t *fs) noexcept {
        auto *r = reinterpret_cast<Req *>(fs);
        int status = static_cast<int>(fs->result);
        uint64_t free_bytes = 0;
        if (status == 0) {
            auto *st = static_cast<uv_statfs_t *>(fs->ptr);
            free_bytes = st->f_bavail * st->f_bsize; // what an unprivileged writer gets
        }
        uv_fs_req_cleanup(fs);
        auto guard = r->guard.lock();
        delete r;
        if (guard && *guard)
            (*guard)->on_statfs(status, free_bytes);
    });
    if (rc < 0) {
        delete req;
        log_warning("work dir %s: cannot check its free space: %s", dir_.c_str(), uv_strerror(rc));
        return;
    }
    in_flight_ = true;
}

void DiskGuard::on_statfs(int status, uint64_t free_bytes)
{
    in_flight_ = false;
    if (again_) {
        again_ = false;
        return check();
    }
    if (status < 0) {
        // Not a reason to refuse jobs: their own writes will say more.
        log_warning("work dir %s: cannot check its free space: %s", dir_.c_str(),
                    uv_strerror(status));
        return;
    }
    last_free_ = free_bytes;
    std::string why;
    if (min_free_ > 0 && free_bytes < min_free_)
        why = "low disk: " + format_bytes(free_bytes) + " free in " + dir_ + ", min_free is " +
              format_bytes(min_free_);
    // The figure changes every check: only a change of state is news.
    if (checked_ && why.empty() == paused_.empty()) {
        paused_ = why;
        return;
    }
    checked_ = true;
    paused_ = why;
    on_change_(paused_);
}

} // namespace kiln
