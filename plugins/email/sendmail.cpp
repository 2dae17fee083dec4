// See sendmail.hpp.  Five handles (process, three pipes, a timer) close
// before the Run is freed; the callback runs once, from whichever loop
// callback sees the end first.
#include "sendmail.hpp"

#include <signal.h>

#include <cerrno>
#include <new>

namespace kiln_sendmail {

namespace {
constexpr size_t kMaxOutput = 4096;     // of stdout and of stderr: enough for a reason
constexpr uint64_t kDrainGraceMs = 2000; // after exit, for output a leftover child holds open
} // namespace

struct Run {
    uv_loop_t *loop = nullptr;
    uv_process_t process{};
    uv_pipe_t in{}, out{}, err{};
    uv_timer_t timer{};
    uv_write_t write_req{};
    int handles_open = 0;

    std::string program, message, stdout_text, stderr_text;
    DoneFn done = nullptr;
    void *arg = nullptr;
    uint64_t timeout_ms = 0;

    int spawn_error = 0; // uv_spawn's, delivered from the timer
    bool running = false, exited = false, delivered = false;
    bool timed_out = false, cancelled = false;
    int64_t exit_status = 0;
    int term_signal = 0;
    int pipes_open = 0;
    char buffer[4096];
};

namespace {

template <class H> uv_handle_t *handle(H *h) { return reinterpret_cast<uv_handle_t *>(h); }
template <class H> uv_stream_t *stream(H *h) { return reinterpret_cast<uv_stream_t *>(h); }

void on_closed(uv_handle_t *h) noexcept
{
    Run *r = static_cast<Run *>(h->data);
    if (--r->handles_open == 0)
        delete r;
}

void close_all(Run *r)
{
    for (uv_handle_t *h : {handle(&r->timer), handle(&r->in), handle(&r->out), handle(&r->err),
                           handle(&r->process)})
        if (h->data == r && !uv_is_closing(h))
            uv_close(h, on_closed);
}

std::string first_line(const std::string &text)
{
    size_t start = text.find_first_not_of(" \t\r\n");
    if (start == std::string::npos)
        return "";
    std::string line = text.substr(start, text.find_first_of("\r\n", start) - start);
    for (char &c : line) // the host logs it: no control characters
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            c = ' ';
    return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

void finish(Run *r) noexcept
{
    if (r->delivered)
        return;
    r->delivered = true;
    int status = 0;
    std::string why;
    try {
        if (r->cancelled) {
            status = -ECANCELED;
            why = "cancelled";
        } else if (r->spawn_error) {
            status = r->spawn_error;
            why = "cannot run " + r->program + ": " + uv_strerror(r->spawn_error);
            if (status == UV_ENOENT)
                why += " (no MTA installed? set `sendmail` to its sendmail program)";
        } else if (r->timed_out) {
            status = -ETIMEDOUT;
            why = r->program + " timed out after " + std::to_string(r->timeout_ms) + " ms";
        } else if (r->term_signal) {
            status = -EIO;
            why = r->program + " killed by signal " + std::to_string(r->term_signal);
        } else if (r->exit_status != 0) {
            status = -EAGAIN;
            std::string line = first_line(r->stderr_text);
            if (line.empty())
                line = first_line(r->stdout_text);
            why = r->program + " exited with status " + std::to_string(r->exit_status) +
                  (line.empty() ? "" : ": " + line);
        }
    } catch (...) {
        status = status ? status : -ENOMEM;
        why.clear();
    }
    if (r->running)
        uv_timer_stop(&r->timer);
    r->done(r->arg, status, why);
    close_all(r);
}

void maybe_finish(Run *r)
{
    if (r->exited && r->pipes_open == 0)
        finish(r);
}

void on_alloc(uv_handle_t *h, size_t, uv_buf_t *buf) noexcept
{
    Run *r = static_cast<Run *>(h->data);
    *buf = uv_buf_init(r->buffer, sizeof r->buffer);
}

void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) noexcept
{
    Run *r = static_cast<Run *>(s->data);
    if (n > 0) {
        std::string &sink = s == stream(&r->out) ? r->stdout_text : r->stderr_text;
        size_t take = sink.size() < kMaxOutput ? kMaxOutput - sink.size() : 0;
        try {
            sink.append(buf->base, static_cast<size_t>(n) < take ? static_cast<size_t>(n) : take);
        } catch (...) { // the output is only for the error line
        }
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        r->pipes_open--;
        maybe_finish(r);
    }
}

void on_written(uv_write_t *req, int) noexcept
{
    // A sendmail that quit early (EPIPE) says why in its exit status; the
    // pipe closes either way so that it sees the end of the message.
    Run *r = static_cast<Run *>(req->data);
    if (!uv_is_closing(handle(&r->in)))
        uv_close(handle(&r->in), on_closed);
}

void on_timer(uv_timer_t *t) noexcept
{
    Run *r = static_cast<Run *>(t->data);
    if (!r->running || r->exited) { // spawn failed, cancelled or drained after exit
        finish(r);
        return;
    }
    r->timed_out = true;
    uv_kill(-r->process.pid, SIGKILL); // the group: whatever it started goes too
}

void on_exit(uv_process_t *p, int64_t exit_status, int term_signal) noexcept
{
    Run *r = static_cast<Run *>(p->data);
    r->exited = true;
    r->exit_status = exit_status;
    r->term_signal = term_signal;
    // Its group is left alone: an MTA may deliver in a background child.
    // That child may hold our pipes, so the wait for them is bounded.
    if (r->pipes_open > 0 && !r->delivered)
        uv_timer_start(&r->timer, on_timer, kDrainGraceMs, 0);
    maybe_finish(r);
}

} // namespace

int start(uv_loop_t *loop, const std::vector<std::string> &argv, std::string message,
          uint64_t timeout_ms, DoneFn done, void *arg, Run **run_out) noexcept
{
    if (argv.empty() || !done)
        return -EINVAL;
    Run *r = new (std::nothrow) Run();
    if (!r)
        return -ENOMEM;
    std::vector<char *> args;
    try {
        r->program = argv[0];
        r->message = std::move(message);
        for (const std::string &a : argv)
            args.push_back(const_cast<char *>(a.c_str()));
        args.push_back(nullptr);
    } catch (...) {
        delete r;
        return -ENOMEM;
    }
    r->loop = loop;
    r->done = done;
    r->arg = arg;
    r->timeout_ms = timeout_ms;
    uv_timer_init(loop, &r->timer);
    uv_pipe_init(loop, &r->in, 0);
    uv_pipe_init(loop, &r->out, 0);
    uv_pipe_init(loop, &r->err, 0);
    r->timer.data = r->in.data = r->out.data = r->err.data = r->process.data = r;
    r->write_req.data = r;
    r->handles_open = 4;

    uv_stdio_container_t stdio[3];
    stdio[0].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_READABLE_PIPE);
    stdio[0].data.stream = stream(&r->in);
    stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[1].data.stream = stream(&r->out);
    stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[2].data.stream = stream(&r->err);
    uv_process_options_t opts{};
    opts.exit_cb = on_exit;
    opts.file = args[0];
    opts.args = args.data();
    opts.flags = UV_PROCESS_DETACHED; // setsid(): its pid names a group to kill as one
    opts.stdio_count = 3;
    opts.stdio = stdio;

    int rc = uv_spawn(loop, &r->process, &opts);
    r->handles_open++; // the process handle needs closing even when uv_spawn failed
    if (rc != 0) {
        r->spawn_error = rc;
        r->exited = true;
        uv_timer_start(&r->timer, on_timer, 0, 0); // the callback, later
    } else {
        r->running = true;
        r->pipes_open = 2;
        uv_read_start(stream(&r->out), on_alloc, on_read);
        uv_read_start(stream(&r->err), on_alloc, on_read);
        uv_buf_t buf = uv_buf_init(&r->message[0], static_cast<unsigned>(r->message.size()));
        if (uv_write(&r->write_req, stream(&r->in), &buf, 1, on_written) != 0)
            uv_close(handle(&r->in), on_closed);
        if (timeout_ms)
            uv_timer_start(&r->timer, on_timer, timeout_ms, 0);
    }
    if (run_out)
        *run_out = r;
    return 0;
}

void cancel(Run *r) noexcept
{
    if (!r || r->delivered || r->cancelled)
        return;
    r->cancelled = true;
    if (r->running && !r->exited)
        uv_kill(-r->process.pid, SIGKILL);
    else
        uv_timer_start(&r->timer, on_timer, 0, 0); // never from inside cancel
}

} // namespace kiln_sendmail
