// Process spawning for plugins: argv only, a process group of its own, output
// captured up to a limit, a timeout that kills the whole group.
#include <kiln/spawn.hpp>

#include <kiln/log.hpp>

#include <cerrno>
#include <csignal>
#include <string>
#include <vector>

namespace {

constexpr size_t kDefaultMaxOutput = 1u << 20;
// Time a process group gets between SIGTERM and SIGKILL.
constexpr uint64_t kKillGraceMs = 2000;

uint64_t now_ms(uv_loop_t *loop)
{
    uv_update_time(loop);
    return uv_now(loop);
}

} // namespace

// The host-side state of one running process.  It frees itself once the
// callback has run and every handle is closed.
struct kiln_process {
    uv_loop_t *loop = nullptr;
    uv_process_t process{};
    uv_pipe_t out_pipe{}, err_pipe{};
    uv_timer_t timer{};
    int handles_open = 0;
    bool spawned = false;

    kiln_spawn_cb cb = nullptr;
    void *arg = nullptr;
    kiln::SpawnTee tee;
    size_t max_output = kDefaultMaxOutput;
    std::string out, err;
    bool truncated = false;
    int pipes_open = 0;
    bool exited = false;
    bool delivered = false;
    int64_t exit_status = 0;
    int term_signal = 0;
    bool timed_out = false;
    bool cancelled = false;
    bool escalated = false;
    uint64_t started_ms = 0;
    uint64_t duration_ms = 0;
    char read_buffer[65536];

    void signal_group(int sig)
    {
        // The child called setsid() (UV_PROCESS_DETACHED), so its pid is its
        // process group: everything it started goes too.
        if (spawned && process.pid > 0)
            ::kill(-process.pid, sig);
    }
};

namespace kiln {
namespace {

void on_handle_closed(uv_handle_t *handle) noexcept
{
    auto *p = static_cast<kiln_process *>(handle->data);
    if (--p->handles_open == 0)
        delete p;
}

void close_all(kiln_process *p)
{
    auto close = [p](uv_handle_t *h) {
        if (h->data == p && !uv_is_closing(h))
            uv_close(h, on_handle_closed);
    };
    close(reinterpret_cast<uv_handle_t *>(&p->timer));
    close(reinterpret_cast<uv_handle_t *>(&p->out_pipe));
    close(reinterpret_cast<uv_handle_t *>(&p->err_pipe));
    if (p->spawned)
        close(reinterpret_cast<uv_handle_t *>(&p->process));
}

// Deliver once both pipes hit EOF and the process has been reaped.
void maybe_finish(kiln_process *p) noexcept
{
    if (p->delivered || !p->exited || p->pipes_open > 0)
        return;
    p->delivered = true;
    uv_timer_stop(&p->timer);
    kiln_spawn_result res{};
    res.exit_status = p->exit_status;
    res.term_signal = p->term_signal;
    res.timed_out = p->timed_out;
    res.cancelled = p->cancelled;
    res.out = p->out.data();
    res.out_len = p->out.size();
    res.err = p->err.data();
    res.err_len = p->err.size();
    res.truncated = p->truncated;
    res.duration_ms = p->duration_ms;
    // A C callback by contract (kiln-plugin(7)); the host's own may be C++.
    guarded("spawn: done", [&] { p->cb(p->arg, 0, &res); });
    close_all(p);
}

void on_alloc(uv_handle_t *handle, size_t, uv_buf_t *buf) noexcept
{
    auto *p = static_cast<kiln_process *>(handle->data);
    *buf = uv_buf_init(p->read_buffer, sizeof p->read_buffer);
}

void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) noexcept
{
    auto *p = static_cast<kiln_process *>(stream->data);
    if (nread > 0) {
        const bool is_out = stream == reinterpret_cast<uv_stream_t *>(&p->out_pipe);
        if (p->tee.on_output)
            guarded("spawn: tee", [&] {
                p->tee.on_output(p->tee.arg, is_out ? 1 : 2, buf->base, size_t(nread));
            });
        std::string &sink = stream == reinterpret_cast<uv_stream_t *>(&p->out_pipe) ? p->out : p->err;
        size_t room = p->max_output > sink.size() ? p->max_output - sink.size() : 0;
        size_t take = static_cast<size_t>(nread) < room ? static_cast<size_t>(nread) : room;
        // Out of memory for the output is a truncated output, not a crash.
        if (!guarded("spawn: output", [&] { sink.append(buf->base, take); }) ||
            take < static_cast<size_t>(nread))
            p->truncated = true;
        return;
    }
    if (nread < 0) { // EOF or error: this pipe is done
        uv_read_stop(stream);
        p->pipes_open--;
        maybe_finish(p);
    }
}

void on_exit(uv_process_t *process, int64_t exit_status, int term_signal) noexcept
{
    auto *p = static_cast<kiln_process *>(process->data);
    p->exited = true;
    p->exit_status = exit_status;
    p->term_signal = term_signal;
    p->duration_ms = now_ms(p->loop) - p->started_ms;
    // Whatever the leader left running in its group (a test's background
    // server, a stuck helper) is ours to stop: it would hold the pipes open.
    p->signal_group(SIGKILL);
    maybe_finish(p);
}

void on_timer(uv_timer_t *timer) noexcept
{
    auto *p = static_cast<kiln_process *>(timer->data);
    if (p->exited)
        return;
    if (p->escalated) { // the grace after SIGTERM is over
        p->signal_group(SIGKILL);
        return;
    }
    p->timed_out = true;
    p->escalated = true;
    p->signal_group(SIGTERM);
    uv_timer_start(&p->timer, on_timer, kKillGraceMs, 0);
}

} // namespace

int spawn_process(uv_loop_t *loop, const kiln_spawn_request *req, kiln_spawn_cb cb, void *arg,
                  kiln_process **proc, const SpawnUser *as, const SpawnTee *tee)
{
    if (!req || !req->argv || !req->argv[0] || !cb)
        return -EINVAL;
    auto *p = new kiln_process;
    p->loop = loop;
    p->cb = cb;
    p->arg = arg;
    if (req->max_output)
        p->max_output = req->max_output;
    if (tee)
        p->tee = *tee;

    uv_timer_init(loop, &p->timer);
    uv_pipe_init(loop, &p->out_pipe, 0);
    uv_pipe_init(loop, &p->err_pipe, 0);
    p->timer.data = p->out_pipe.data = p->err_pipe.data = p->process.data = p;
    p->handles_open = 3;

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[1].data.stream = reinterpret_cast<uv_stream_t *>(&p->out_pipe);
    stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[2].data.stream = reinterpret_cast<uv_stream_t *>(&p->err_pipe);

    uv_process_options_t opts{};
    opts.exit_cb = on_exit;
    opts.file = req->argv[0];
    opts.args = const_cast<char **>(req->argv);
    opts.env = const_cast<char **>(req->env);
    opts.cwd = req->cwd;
    opts.flags = UV_PROCESS_DETACHED; // setsid(): a process group to kill as one
    if (as) {
        // libuv calls setgroups(0, NULL) before setgid/setuid in the child.
        opts.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
        opts.uid = as->uid;
        opts.gid = as->gid;
    }
    opts.stdio_count = 3;
    opts.stdio = stdio;

    p->started_ms = now_ms(loop);
    int rc = uv_spawn(loop, &p->process, &opts);
    if (rc != 0) {
        // The process handle was initialised by uv_spawn even on failure.
        p->process.data = p;
        p->spawned = true;
        p->handles_open++;
        p->delivered = true; // a failed start never calls back
        close_all(p);
        return rc;
    }
    p->spawned = true;
    p->handles_open++;
    p->pipes_open = 2;
    uv_read_start(reinterpret_cast<uv_stream_t *>(&p->out_pipe), on_alloc, on_read);
    uv_read_start(reinterpret_cast<uv_stream_t *>(&p->err_pipe), on_alloc, on_read);
    if (req->timeout_ms)
        uv_timer_start(&p->timer, on_timer, req->timeout_ms, 0);
    if (proc)
        *proc = p;
    return 0;
}

pid_t process_pid(const kiln_process *p)
{
    return p && p->spawned ? p->process.pid : 0;
}

void kill_process(kiln_process *p)
{
    if (!p || p->delivered || p->exited || p->cancelled)
        return;
    p->cancelled = true;
    p->escalated = true;
    p->signal_group(SIGTERM);
    uv_timer_stop(&p->timer);
    uv_timer_start(&p->timer, on_timer, kKillGraceMs, 0);
}

} // namespace kiln
