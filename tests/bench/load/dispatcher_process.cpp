#include "dispatcher_process.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace kiln::bench {

DispatcherProcess::DispatcherProcess(uv_loop_t *loop, std::string program)
    : loop_(loop), program_(std::move(program))
{
}

bool DispatcherProcess::make_state_dir(long long hold_s, const std::string &extra_file)
{
    std::string extra;
    if (!extra_file.empty()) {
        std::ifstream in(extra_file);
        if (!in) {
            fprintf(stderr, "kiln-bench-load: --config-extra %s: %s\n", extra_file.c_str(),
                    strerror(errno));
            return false;
        }
        extra.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    const char *tmp = getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/kiln-bench-load.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
        fprintf(stderr, "kiln-bench-load: mkdtemp %s: %s\n", tmpl.c_str(), strerror(errno));
        return false;
    }
    dir_ = buf.data();
    log_path_ = dir_ + "/dispatcher.log";
    config_path_ = dir_ + "/dispatcher.toml";
    FILE *f = fopen(config_path_.c_str(), "w");
    if (!f) {
        fprintf(stderr, "kiln-bench-load: %s: %s\n", config_path_.c_str(), strerror(errno));
        return false;
    }
    fprintf(f,
            "[dispatcher]\n"
            "listen = \"127.0.0.1:0\"\n"
            "state_dir = \"%s/state\"\n"
            "heartbeat_interval = %lld\n"
            "runner_timeout = %lld\n"
            "handshake_timeout = \"60s\"\n"
            "%s\n"
            "[http]\n"
            "listen = \"\"\n", // off: the load is the peers' protocol
            dir_.c_str(), hold_s, hold_s * 2,
            extra.empty() ? "# no [[report]]: no report plugins" : extra.c_str());
    fclose(f);
    return true;
}

bool DispatcherProcess::start()
{
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "kiln-bench-load: %s: %s\n", log_path_.c_str(), strerror(errno));
        return false;
    }
    std::vector<std::string> args = {program_, "-c", config_path_};
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = fd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = fd;
    uv_process_options_t po{};
    po.file = argv[0];
    po.args = argv.data();
    po.exit_cb = on_exit;
    po.stdio_count = 3;
    po.stdio = stdio;
    process_.data = this;
    t_launch_ = uv_hrtime();
    int rc = uv_spawn(loop_, &process_, &po);
    close(fd);
    if (rc != 0) {
        fprintf(stderr, "kiln-bench-load: cannot start %s: %s\n", program_.c_str(),
                uv_strerror(rc));
        uv_close(reinterpret_cast<uv_handle_t *>(&process_), nullptr);
        return false;
    }
    running_ = true;
    pid_ = process_.pid;
    uv_timer_init(loop_, &poll_timer_);
    poll_timer_.data = this;
    uv_timer_init(loop_, &kill_timer_);
    kill_timer_.data = this;
    // The process handle keeps the loop up; the kill timer need not.
    uv_unref(reinterpret_cast<uv_handle_t *>(&kill_timer_));
    timers_open_ = true;
    uv_timer_start(&poll_timer_, on_poll_port, 10, 10);
    return true;
}

void DispatcherProcess::on_exit(uv_process_t *p, int64_t status, int signum) noexcept
{
    auto *self = static_cast<DispatcherProcess *>(p->data);
    self->running_ = false;
    self->exit_status_ = status;
    self->exit_signal_ = signum;
    uv_close(reinterpret_cast<uv_handle_t *>(p), nullptr);
    if (self->on_failure)
        self->on_failure("the dispatcher exited (status " + std::to_string(status) +
                         ", signal " + std::to_string(signum) + ") before the run ended");
}

// The dispatcher logs "listening on 127.0.0.1:0 (port N)" once bound.
void DispatcherProcess::on_poll_port(uv_timer_t *t) noexcept
{
    auto *self = static_cast<DispatcherProcess *>(t->data);
    std::ifstream f(self->log_path_);
    std::string line;
    while (std::getline(f, line)) {
        size_t at = line.find("(port ");
        if (line.find("listening on") != std::string::npos && at != std::string::npos) {
            self->port_ = std::atoi(line.c_str() + at + 6);
            break;
        }
    }
    if (self->port_ > 0) {
        uv_timer_stop(t);
        if (self->on_listening)
            self->on_listening("127.0.0.1:" + std::to_string(self->port_));
    } else if (uv_hrtime() - self->t_launch_ > 15ull * 1000000000) {
        uv_timer_stop(t);
        if (self->on_failure)
            self->on_failure("the dispatcher did not report its port within 15 s");
    }
}

void DispatcherProcess::stop()
{
    if (timers_open_)
        uv_timer_stop(&poll_timer_);
    if (!running_)
        return;
    uv_process_kill(&process_, SIGTERM);
    uv_timer_start(&kill_timer_, on_kill_timer, 10000, 0);
}

void DispatcherProcess::on_kill_timer(uv_timer_t *t) noexcept
{
    auto *self = static_cast<DispatcherProcess *>(t->data);
    if (self->running_) {
        fprintf(stderr, "kiln-bench-load: dispatcher %d still up 10 s after SIGTERM; SIGKILL\n",
                self->pid_);
        uv_process_kill(&self->process_, SIGKILL);
    }
}

void DispatcherProcess::close_handles()
{
    if (!timers_open_)
        return;
    timers_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t *>(&poll_timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&kill_timer_), nullptr);
}

void DispatcherProcess::remove_state_dir()
{
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    if (ec)
        fprintf(stderr, "kiln-bench-load: could not remove %s: %s\n", dir_.c_str(),
                ec.message().c_str());
}

} // namespace kiln::bench
