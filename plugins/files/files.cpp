// files — the report plugin that keeps results as files: DIR/<commit>.json
// (the result, one file per commit, replaced by a newer attempt) and
// DIR/<commit>.log beside it.
//
// All file work happens in one uv_queue_work job on the thread pool: the
// report is copied into the work item on the loop, the worker builds the
// JSON and writes both files atomically (temp file in DIR, fsync, rename,
// fsync DIR), and after_work calls back on the loop.  The log is renamed
// into place first, so a reader who sees the JSON finds the log too.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <string>
#include <vector>

#include <kiln/plugin.h>
#include <uv.h>

#include "op_set.hpp"

namespace {

struct Work;

struct Self {
    const kiln_host *host = nullptr;
    std::string dir;
    kiln_ops::OpSet<Work> live; // the reports being written
};

struct Test {
    std::string name;
    int outcome;
    uint64_t duration_ms;
    bool has_message;
    std::string message;
};

struct Work {
    uv_work_t req;
    Self *self = nullptr;
    kiln_done_cb cb = nullptr;
    void *arg = nullptr;
    std::atomic<bool> cancelled{false};

    // the report, owned
    std::string dir, commit, repo, branch, runner, error, log;
    bool has_repo, has_branch, has_runner, has_error;
    int outcome;
    uint64_t job_id;
    uint32_t attempt;
    int64_t started, finished;
    std::vector<Test> tests;

    // set by the worker
    int status = 0;
    std::string why;
};

// ---- JSON: the only JSON this project emits from C, hence a small escaper
// here rather than a library.  Output is always valid UTF-8: malformed
// bytes (test output is arbitrary) become U+FFFD.

size_t utf8_length(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                          : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) || // overlong, surrogate
        (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))   // overlong, > U+10FFFF
        return 0;
    return len;
}

void json_string(std::string &out, const char *p, size_t n)
{
    const unsigned char *s = reinterpret_cast<const unsigned char *>(p);
    out += '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = utf8_length(s + i, n - i);
            if (len == 0) {
                out += "\\ufffd";
                i++;
            } else {
                out.append(p + i, len);
                i += len;
            }
            continue;
        }
        i++;
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    out += '"';
}

void json_string(std::string &out, const std::string &s, bool present = true)
{
    if (present)
        json_string(out, s.data(), s.size());
    else
        out += "null";
}

// "2024-05-01T12:34:56.789Z"
std::string iso8601(int64_t unix_ms)
{
    int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : -((-unix_ms + 999) / 1000);
    time_t t = static_cast<time_t>(secs);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return "";
    char buf[40];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(unix_ms - secs * 1000));
    return buf;
}

std::string build_json(const Work &w)
{
    std::string j = "{\n  \"commit\": ";
    json_string(j, w.commit);
    j += ",\n  \"repo\": ";
    json_string(j, w.repo, w.has_repo);
    j += ",\n  \"branch\": ";
    json_string(j, w.branch, w.has_branch);
    j += ",\n  \"outcome\": ";
    json_string(j, kiln_outcome_name(w.outcome));
    j += ",\n  \"runner\": ";
    json_string(j, w.runner, w.has_runner);
    j += ",\n  \"job_id\": " + std::to_string(w.job_id);
    j += ",\n  \"attempt\": " + std::to_string(w.attempt);
    j += ",\n  \"started_unix_ms\": " + std::to_string(w.started);
    j += ",\n  \"started\": ";
    json_string(j, iso8601(w.started));
    j += ",\n  \"finished_unix_ms\": " + std::to_string(w.finished);
    j += ",\n  \"finished\": ";
    json_string(j, iso8601(w.finished));
    j += ",\n  \"duration_ms\": " + std::to_string(w.finished > w.started ? w.finished - w.started : 0);
    j += ",\n  \"error\": ";
    json_string(j, w.error, w.has_error);
    j += ",\n  \"log\": ";
    json_string(j, w.commit + ".log");
    j += ",\n  \"tests\": [";
    for (size_t i = 0; i < w.tests.size(); i++) {
        const Test &t = w.tests[i];
        j += i ? ",\n    {\"name\": " : "\n    {\"name\": ";
        json_string(j, t.name);
        j += ", \"outcome\": ";
        json_string(j, kiln_outcome_name(t.outcome));
        j += ", \"duration_ms\": " + std::to_string(t.duration_ms) + ", \"message\": ";
        json_string(j, t.message, t.has_message);
        j += "}";
    }
    j += w.tests.empty() ? "]\n}\n" : "\n  ]\n}\n";
    return j;
}

// ---- the worker (thread pool: blocking calls are fine here, only here) ----

int fail(Work *w, const std::string &what, int err)
{
    w->why = what + ": " + uv_strerror(-err);
    return -err;
}

int mkdir_p(Work *w, const std::string &dir)
{
    for (size_t i = 1; i <= dir.size(); i++) {
        if (i < dir.size() && dir[i] != '/')
            continue;
        std::string part = dir.substr(0, i);
        if (mkdir(part.c_str(), 0755) < 0 && errno != EEXIST && i == dir.size())
            return fail(w, "mkdir " + dir, errno);
    }
    struct stat st;
    if (stat(dir.c_str(), &st) < 0)
        return fail(w, "mkdir " + dir, errno);
    return S_ISDIR(st.st_mode) ? 0 : fail(w, "mkdir " + dir, ENOTDIR);
}

// DIR/NAME gets exactly `data`, or stays as it was.
int write_atomic(Work *w, const std::string &name, const std::string &data)
{
    std::string path = w->dir + "/" + name;
    std::string tmp = w->dir + "/." + name + ".XXXXXX";
    int fd = mkostemp(&tmp[0], O_CLOEXEC);
    if (fd < 0)
        return fail(w, "create " + tmp, errno);
    int rc = 0;
    for (size_t off = 0; off < data.size() && rc == 0;) {
        ssize_t n = write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno != EINTR)
            rc = fail(w, "write " + tmp, errno);
        else if (n > 0)
            off += static_cast<size_t>(n);
    }
    if (rc == 0 && fchmod(fd, 0644) < 0) // mkstemp makes 0600; results are for readers
        rc = fail(w, "chmod " + tmp, errno);
    if (rc == 0 && fsync(fd) < 0)
        rc = fail(w, "fsync " + tmp, errno);
    if (close(fd) < 0 && rc == 0)
        rc = fail(w, "close " + tmp, errno);
    if (rc == 0 && w->cancelled.load())
        rc = -ECANCELED; // last point where giving up leaves no trace
    if (rc == 0 && rename(tmp.c_str(), path.c_str()) < 0)
        rc = fail(w, "rename to " + path, errno);
    if (rc < 0)
        unlink(tmp.c_str());
    return rc;
}

void do_work(uv_work_t *req) noexcept
{
    Work *w = static_cast<Work *>(req->data);
    try {
        std::string json = build_json(*w);
        int rc = mkdir_p(w, w->dir);
        if (rc == 0)
            rc = write_atomic(w, w->commit + ".log", w->log);
        if (rc == 0)
            rc = write_atomic(w, w->commit + ".json", json);
        if (rc == 0) { // make the renames themselves durable
            int dfd = open(w->dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
        }
        w->status = rc;
    } catch (...) {
        w->status = -ENOMEM;
        w->why = "out of memory";
    }
}

void after_work(uv_work_t *req, int status) noexcept
{
    Work *w = static_cast<Work *>(req->data);
    Self *s = w->self;
    s->live.remove(w);
    int rc = status == UV_ECANCELED || w->cancelled.load() ? -ECANCELED : w->status;
    if (rc < 0 && rc != -ECANCELED)
        s->host->log(s->host, KILN_LOG_ERR, "report %s: %s", w->commit.c_str(), w->why.c_str());
    w->cb(w->arg, rc, rc == 0 ? nullptr : rc == -ECANCELED ? "cancelled" : w->why.c_str());
    delete w;
}

bool is_hex_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= 128 || !((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') ||
                          (s[n] >= 'A' && s[n] <= 'F')))
            return false;
    return n > 0;
}

// ---- the ABI ----

// Copies the report into the work item, then queues it on the thread pool.
int begin_report(Self *s, Work *w, const kiln_report *rep)
{
    w->dir = s->dir;
    w->commit = rep->commit;
    w->has_repo = rep->repo != nullptr;
    w->repo = rep->repo ? rep->repo : "";
    w->has_branch = rep->branch != nullptr;
    w->branch = rep->branch ? rep->branch : "";
    w->has_runner = rep->runner != nullptr;
    w->runner = rep->runner ? rep->runner : "";
    w->has_error = rep->error != nullptr;
    w->error = rep->error ? rep->error : "";
    w->log.assign(rep->log ? rep->log : "", rep->log_len);
    w->outcome = rep->outcome;
    w->job_id = rep->job_id;
    w->attempt = rep->attempt;
    w->started = rep->started_unix_ms;
    w->finished = rep->finished_unix_ms;
    w->tests.reserve(rep->n_tests);
    for (size_t i = 0; i < rep->n_tests; i++) {
        const kiln_test_result &t = rep->tests[i];
        w->tests.push_back({t.name ? t.name : "", t.outcome, t.duration_ms,
                            t.message != nullptr, t.message ? t.message : ""});
    }
    w->req.data = w;
    return uv_queue_work(s->host->loop, &w->req, do_work, after_work);
}

int files_report(void *self, const kiln_report *rep, kiln_done_cb cb, void *arg,
                 void **op) noexcept
{
    Self *s = static_cast<Self *>(self);
    // The commit becomes a file name: hex only, no '/', no "..".
    if (!rep || !cb || !rep->commit || !is_hex_id(rep->commit) || (!rep->tests && rep->n_tests) ||
        (!rep->log && rep->log_len))
        return -EINVAL;
    return s->live.start(op, [&](Work *w) {
        w->self = s;
        w->cb = cb;
        w->arg = arg;
        return begin_report(s, w, rep);
    });
}

// A queued job is taken off the pool (after_work then sees UV_ECANCELED); a
// running one stops before its next rename.  Either way after_work calls
// back once, with -ECANCELED.
void files_cancel(void *self, void *op) noexcept
{
    Self *s = static_cast<Self *>(self);
    Work *w = s->live.running(op);
    if (!w)
        return;
    w->cancelled.store(true);
    uv_cancel(reinterpret_cast<uv_req_t *>(&w->req));
}

int files_init(const kiln_host *host, void **self) noexcept
{
    try {
        const char *dir = nullptr;
        int rc = host->config_string(host, "dir", &dir);
        if (rc == -ENOENT || (rc == 0 && !*dir)) {
            host->log(host, KILN_LOG_ERR, "dir: required: the directory results are written to");
            return -EINVAL;
        }
        if (rc < 0)
            return rc;
        Self *s = new Self();
        s->host = host;
        s->dir = dir;
        while (s->dir.size() > 1 && s->dir.back() == '/')
            s->dir.pop_back();
        *self = s;
        return 0;
    } catch (...) {
        return -ENOMEM;
    }
}

void files_fini(void *self) noexcept { delete static_cast<Self *>(self); }

const char *const config_keys[] = {"dir", nullptr};
const kiln_report_ops report_ops = {files_report};
const kiln_plugin descriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_REPORT, "files",
    "results as files: DIR/<commit>.json and DIR/<commit>.log",
    config_keys, files_init, files_fini, files_cancel, nullptr, nullptr, &report_ops, {}, nullptr};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }
