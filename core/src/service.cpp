// run_service: the loop under a service manager (READY=, STATUS=,
// WATCHDOG=, STOPPING=, SIGHUP), on top of daemon.cpp's StopSignals.
#include <kiln/daemon.hpp>

#include <signal.h>

#include <cstring>

#include <kiln/log.hpp>
#include <kiln/systemd.hpp>

namespace kiln {

namespace {

// The handles run_service adds to the loop; closed when the loop ends.
class ServiceNotifier {
  public:
    ServiceNotifier(uv_loop_t *loop, const ServiceHooks &hooks) : hooks_(hooks)
    {
        hup_ = new uv_signal_t;
        uv_signal_init(loop, hup_);
        hup_->data = this;
        uv_unref(handle(hup_));
        uv_signal_start(hup_, on_hup, SIGHUP);

        if (notify_enabled())
            retry_timer_ = new_timer(loop);
        notify_ready(status());
        arm_retry();
        if (notify_enabled() && hooks_.status) {
            status_timer_ = new_timer(loop);
            uv_timer_start(status_timer_, on_status_timer, 1000, 1000);
        }
        if (uint64_t usec = watchdog_usec()) {
            uint64_t ms = usec / 2000; // half the interval, as sd_watchdog_enabled(3) advises
            watchdog_timer_ = new_timer(loop);
            uv_timer_start(
                watchdog_timer_,
                [](uv_timer_t *t) noexcept {
                    notify_watchdog();
                    static_cast<ServiceNotifier *>(t->data)->arm_retry();
                },
                ms ? ms : 1, ms ? ms : 1);
            log_info("watchdog: keep-alive every %llu ms", static_cast<unsigned long long>(ms));
        }
    }
    ~ServiceNotifier()
    {
        uv_close(handle(hup_), [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_signal_t *>(h); });
        for (uv_timer_t *t : {status_timer_, watchdog_timer_, retry_timer_})
            if (t)
                uv_close(handle(t), [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
    }
    ServiceNotifier(const ServiceNotifier &) = delete;
    ServiceNotifier &operator=(const ServiceNotifier &) = delete;

    void stopping()
    {
        stopping_ = true;
        notify_stopping();
        arm_retry();
        // The watchdog keeps going while the daemon drains: a long graceful
        // stop is not a hang.
    }

  private:
    template <typename H> static uv_handle_t *handle(H *h)
    {
        return reinterpret_cast<uv_handle_t *>(h);
    }
    uv_timer_t *new_timer(uv_loop_t *loop)
    {
        auto *t = new uv_timer_t;
        uv_timer_init(loop, t);
        t->data = this;
        uv_unref(handle(t));
        return t;
    }
    // An essential notification did not fit the manager's queue: try again
    // shortly, until it goes (the timer does not keep the loop alive).
    void arm_retry() noexcept
    {
        if (!retry_timer_ || !notify_pending() || uv_is_active(handle(retry_timer_)))
            return;
        uv_timer_start(
            retry_timer_,
            [](uv_timer_t *t) noexcept {
                notify_retry();
                static_cast<ServiceNotifier *>(t->data)->arm_retry();
            },
            kNotifyRetryMs, 0);
    }
    static constexpr uint64_t kNotifyRetryMs = 100;

    std::string status()
    {
        std::string s;
        if (hooks_.status)
            guarded("status", [&] { s = hooks_.status(); });
        last_status_ = s;
        return s;
    }
    static void on_status_timer(uv_timer_t *t) noexcept
    {
        auto *self = static_cast<ServiceNotifier *>(t->data);
        guarded("status", [&] {
            std::string before = self->last_status_;
            if (self->status() != before)
                notify_status(self->last_status_);
            self->arm_retry();
        });
    }
    static void on_hup(uv_signal_t *h, int) noexcept
    {
        auto *self = static_cast<ServiceNotifier *>(h->data);
        if (self->stopping_) {
            log_notice("signal %s: stopping; not reloading", strsignal(SIGHUP));
            return;
        }
        if (!self->hooks_.reload) {
            log_notice("signal %s: nothing to reload", strsignal(SIGHUP));
            return;
        }
        guarded("reload", [&] {
            log_notice("signal %s: reloading the config", strsignal(SIGHUP));
            notify_reloading();
            self->hooks_.reload();
            notify_ready(self->status());
            self->arm_retry();
        });
    }

    const ServiceHooks &hooks_;
    uv_signal_t *hup_ = nullptr;
    uv_timer_t *status_timer_ = nullptr, *watchdog_timer_ = nullptr, *retry_timer_ = nullptr;
    std::string last_status_;
    bool stopping_ = false;
};

} // namespace

void run_service(uv_loop_t *loop, const ServiceHooks &hooks)
{
    ServiceNotifier notifier(loop, hooks);
    StopSignals signals(loop, [&](int) {
        notifier.stopping();
        hooks.stop();
    });
    uv_run(loop, UV_RUN_DEFAULT);
}

} // namespace kiln
