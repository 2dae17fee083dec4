// files — the report plugin that keeps results as files: DIR/<commit>.json
// (the result, one file per commit, replaced by a newer attempt) and
// DIR/<commit>.log beside it.
//
// All file work happens in one uv_queue_work job on the thread pool: the
// report is copied into the work item on the loop, the worker builds the
// JSON and writes both files atomically (temp file in DIR, fsync, rename,
// fsync DIR), and after_work calls back on the loop.  The log is renamed
// into place first, so a reader who sees the JSON finds the log too.
// With max_age, the same job now and then (the first report, then at most
// once an hour) also deletes result files older than that.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include <kiln/plugin.h>
#include <uv.h>

#include <nlohmann/json.hpp>

#include "atomic_write.hpp"
#include "commit_id.hpp"
#include "iso8601.hpp"
#include "op_set.hpp"

namespace {

struct Work;

struct Self {
    const kiln_host *host = nullptr;
    std::string dir;
    kiln_ops::OpSet<Work> live; // the reports being written
    uint64_t max_age_ms = 0;    // max_age: 0, results kept for ever
    uint64_t last_prune_ms = 0; // loop time of the last pruning asked for
};

// An hour between prunings: a directory listing per report would cost more
// than the files it finds.
constexpr uint64_t kPruneEveryMs = 3600 * 1000;

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
    uint64_t prune_older_ms = 0; // also delete results older than this (0: not now)

    // set by the worker
    int status = 0;
    std::string why;
};

// ---- JSON (nlohmann-json): always valid UTF-8, malformed bytes (test
// output is arbitrary) become U+FFFD.

using json = nlohmann::ordered_json; // keys in the order a reader expects

json optional(const std::string &s, bool present) { return present ? json(s) : json(nullptr); }

std::string build_json(const Work &w)
{
    json tests = json::array();
    for (const Test &t : w.tests)
        tests.push_back({{"name", t.name},
                         {"outcome", kiln_outcome_name(t.outcome)},
                         {"duration_ms", t.duration_ms},
                         {"message", optional(t.message, t.has_message)}});
    json doc = {
        {"commit", w.commit},
        {"repo", optional(w.repo, w.has_repo)},
        {"branch", optional(w.branch, w.has_branch)},
        {"outcome", kiln_outcome_name(w.outcome)},
        {"runner", optional(w.runner, w.has_runner)},
        {"job_id", w.job_id},
        {"attempt", w.attempt},
        {"started_unix_ms", w.started},
        {"started", kiln_time::iso8601_ms(w.started)},
        {"finished_unix_ms", w.finished},
        {"finished", kiln_time::iso8601_ms(w.finished)},
        {"duration_ms", w.finished > w.started ? w.finished - w.started : 0},
        {"error", optional(w.error, w.has_error)},
        {"log", w.commit + ".log"},
        {"tests", std::move(tests)},
    };
    return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

// ---- the worker (thread pool: blocking calls are fine here, only here) ----

// Delete DIR/<commit>.json and .log last written more than `age_ms` ago.
// Only those names: whatever else someone keeps in DIR stays.  Errors (a
// file gone meanwhile) are ignored: the next pruning tries again.
void prune(const std::string &dir, uint64_t age_ms)
{
    namespace fs = std::filesystem;
    auto cutoff = fs::file_time_type::clock::now() - std::chrono::milliseconds(age_ms);
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        fs::path p = it->path();
        std::string ext = p.extension().string();
        if ((ext != ".json" && ext != ".log") || !kiln_commit::is_hex_id(p.stem().string()))
            continue;
        std::error_code e2;
        if (it->is_regular_file(e2) && it->last_write_time(e2) < cutoff && !e2)
            fs::remove(p, e2);
    }
}

void do_work(uv_work_t *req) noexcept
{
    Work *w = static_cast<Work *>(req->data);
    try {
        std::string json = build_json(*w);
        int rc = kiln_atomic_write::make_dirs(w->dir, w->why);
        if (rc == 0)
            rc = kiln_atomic_write::write_file(w->dir, w->commit + ".log", w->log, w->cancelled,
                                               w->why);
        if (rc == 0)
            rc = kiln_atomic_write::write_file(w->dir, w->commit + ".json", json, w->cancelled,
                                               w->why);
        if (rc == 0 && w->prune_older_ms)
            prune(w->dir, w->prune_older_ms);
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
    uint64_t now = uv_now(s->host->loop);
    if (s->max_age_ms && (s->last_prune_ms == 0 || now - s->last_prune_ms >= kPruneEveryMs)) {
        w->prune_older_ms = s->max_age_ms;
        s->last_prune_ms = now ? now : 1;
    }
    w->req.data = w;
    return uv_queue_work(s->host->loop, &w->req, do_work, after_work);
}

int files_report(void *self, const kiln_report *rep, kiln_done_cb cb, void *arg,
                 void **op) noexcept
{
    Self *s = static_cast<Self *>(self);
    // The commit becomes a file name: hex only, no '/', no "..".
    if (!rep || !cb || !rep->commit || !kiln_commit::is_hex_id(rep->commit) || (!rep->tests && rep->n_tests) ||
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
        rc = host->config_duration_ms(host, "max_age", &s->max_age_ms);
        if (rc < 0 && rc != -ENOENT) {
            delete s;
            return rc;
        }
        *self = s;
        return 0;
    } catch (...) {
        return -ENOMEM;
    }
}

void files_fini(void *self) noexcept { delete static_cast<Self *>(self); }

const char *const config_keys[] = {"dir", "max_age", nullptr};
const kiln_report_ops report_ops = {files_report};
const kiln_plugin descriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_REPORT, "files",
    "results as files: DIR/<commit>.json and DIR/<commit>.log",
    config_keys, files_init, files_fini, files_cancel, nullptr, nullptr, &report_ops, {}, nullptr};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }
