// exec plugin "script": every executable regular file directly in the tests
// directory is a test, run with argv [path] and the workspace as cwd.  Exit
// status follows automake's test-driver convention, so suites written for
// `make check` work unchanged: 0 passes, 77 means skipped, 99 is a hard
// error, anything else (or a signal) fails.
//
// Tests run in name order, by default one at a time ("parallel" allows more);
// each gets what is left of the run's time budget as its timeout, so the
// budget covers the whole run.  When it runs out, the running test is
// reported as timed out and the rest are not started.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <string>
#include <vector>

#include <kiln/plugin.h>

#include "exec_common.hpp"

namespace {

using kiln_exec::TestRecord;

struct Script;
struct Op;

// One test of a run: its spawn callback's argument.
struct Slot {
    Op *op = nullptr;
    std::string name;
    kiln_process *proc = nullptr;
    bool started = false, ended = false;
    TestRecord record;
    std::string log;
};

// One run or list operation.  Owned by itself: deleted after its callback.
struct Op {
    Script *pl = nullptr;
    bool list_mode = false;
    kiln_exec_cb run_cb = nullptr;
    kiln_list_cb list_cb = nullptr;
    void *arg = nullptr;
    std::string workspace, tests_dir, dir_path;
    uint64_t timeout_ms = 0;
    uint64_t started_ns = 0;
    std::vector<std::string> only;

    // discovery: scandir, then a stat of each candidate, one after another
    uv_fs_t fs_req{};
    std::vector<std::string> candidates;
    size_t next_candidate = 0;
    std::vector<std::string> found; // executables, sorted

    // running
    std::vector<Slot> slots; // sized once: spawn callbacks point into it
    std::vector<TestRecord> unknown; // `only` names that are not tests here
    size_t next = 0;
    int running = 0;
    bool cancelled = false;
    bool stopping = false;
    int stop_outcome = KILN_PASSED;
    std::string stop_error;
};

struct Script {
    const kiln_host *host = nullptr;
    int64_t parallel = 1;
    kiln_ops::OpSet<Op> ops;
};

void finish_list(Op *op, int status, const std::string &error)
{
    op->pl->ops.remove(op);
    std::vector<const char *> names;
    for (const std::string &n : op->found)
        names.push_back(n.c_str());
    op->list_cb(op->arg, status, status ? error.c_str() : nullptr, status ? nullptr : names.data(),
                status ? 0 : names.size());
    delete op;
}

// Run completion.  `outcome` < 0: derived from the tests that ran.
void finish_run(Op *op, int outcome, const std::string &error)
{
    op->pl->ops.remove(op);
    std::vector<TestRecord> records;
    std::string log;
    size_t not_run = 0;
    for (Slot &s : op->slots) {
        if (!s.ended) {
            not_run++;
            continue;
        }
        records.push_back(std::move(s.record));
        log += "== " + s.name + " ==\n" + s.log;
    }
    for (TestRecord &t : op->unknown)
        records.push_back(std::move(t));
    std::string why = error;
    if (op->stopping) {
        outcome = op->stop_outcome;
        why = op->stop_error;
        if (not_run)
            why += "; " + std::to_string(not_run) + " test(s) not run";
    } else if (outcome < 0) {
        outcome = kiln_exec::overall_outcome(records);
    }
    std::vector<kiln_test_result> view = kiln_exec::result_view(records);
    kiln_exec_result res{outcome, view.data(), view.size(), log.data(), log.size(),
                         why.empty() ? nullptr : why.c_str()};
    op->run_cb(op->arg, &res);
    delete op;
}

// Ends an op before any test ran; `status` is what list reports.
void fail(Op *op, int outcome, const std::string &error, int status)
{
    if (op->list_mode)
        finish_list(op, status, error);
    else
        finish_run(op, outcome, error);
}

void stop(Op *op, int outcome, const std::string &why)
{
    if (op->stopping)
        return;
    op->stopping = true;
    op->stop_outcome = outcome;
    op->stop_error = why;
}

void launch(Op *op);

void on_spawned(void *arg, int status, const kiln_spawn_result *res) noexcept
{
    auto *slot = static_cast<Slot *>(arg);
    Op *op = slot->op;
    op->running--;
    slot->proc = nullptr;
    slot->ended = true;
    TestRecord &t = slot->record;
    kiln_ops::guarded([&] {
        if (status < 0) {
            t.outcome = KILN_ERROR;
            t.message = std::string("cannot run: ") + uv_strerror(status);
        } else {
            t.duration_ms = res->duration_ms;
            slot->log.append(res->out, res->out_len);
            kiln_exec::append_line(slot->log, res->err, res->err_len);
            if (res->truncated)
                slot->log += "[kiln: output truncated]\n";
            if (res->timed_out) {
                t.outcome = KILN_TIMEOUT;
                t.message = "timed out after " + std::to_string(res->duration_ms) + " ms";
                stop(op, KILN_TIMEOUT, "timed out after " + std::to_string(op->timeout_ms) +
                                           " ms in " + slot->name);
            } else if (res->cancelled || op->cancelled) {
                t.outcome = KILN_CANCELLED;
                t.message = "cancelled";
            } else if (res->term_signal == 0 && res->exit_status == 0) {
                t.outcome = KILN_PASSED;
            } else if (res->term_signal == 0 && res->exit_status == 77) {
                t.outcome = KILN_SKIPPED;
                t.message = "skipped (exit status 77)";
            } else if (res->term_signal == 0 && res->exit_status == 99) {
                t.outcome = KILN_ERROR;
                t.message = "exit status 99 (hard error)";
            } else {
                t.outcome = KILN_FAILED;
                t.message = kiln_exec::describe_exit(*res);
            }
        }
    }, [&](const char *why) {
        t.outcome = KILN_ERROR;
        stop(op, KILN_ERROR, why);
    });
    launch(op);
}

// Start tests until `parallel` run; completes the op when none is left.
// Only ever called from a loop callback, so completing here is "later".
void launch(Op *op)
{
    const kiln_host *host = op->pl->host;
    if (op->cancelled)
        stop(op, KILN_CANCELLED, "cancelled");
    while (!op->stopping && op->running < op->pl->parallel && op->next < op->slots.size()) {
        Slot &s = op->slots[op->next++];
        uint64_t timeout = 0;
        if (op->timeout_ms) {
            uint64_t elapsed = (uv_hrtime() - op->started_ns) / 1000000;
            if (elapsed >= op->timeout_ms) {
                op->next--; // not started: reported as not run
                stop(op, KILN_TIMEOUT, "timed out after " + std::to_string(op->timeout_ms) +
                                           " ms before " + s.name);
                break;
            }
            timeout = op->timeout_ms - elapsed;
        }
        std::string path = kiln_exec::join_path(op->dir_path, s.name);
        const char *argv[] = {path.c_str(), nullptr};
        kiln_spawn_request req{argv, op->workspace.c_str(), nullptr, timeout, 0};
        s.started = true;
        int r = host->spawn(host, &req, on_spawned, &s, &s.proc);
        if (r < 0) { // e.g. a script without #! line (ENOEXEC): that test errors
            s.ended = true;
            s.record.outcome = KILN_ERROR;
            s.record.message = std::string("cannot run: ") + uv_strerror(r);
            continue;
        }
        op->running++;
    }
    if (op->running == 0)
        finish_run(op, -1, {});
}

// Discovery is complete: list, or pick the tests to run and start them.
void discovered(Op *op)
{
    if (op->list_mode)
        return finish_list(op, 0, {});
    std::vector<std::string> selected;
    if (op->only.empty()) {
        selected = op->found;
    } else {
        for (const std::string &n : op->only) {
            if (std::binary_search(op->found.begin(), op->found.end(), n))
                selected.push_back(n);
            else
                op->unknown.push_back({n, KILN_ERROR, 0,
                                       "no executable test '" + n + "' in '" + op->tests_dir + "'"});
        }
        std::sort(selected.begin(), selected.end());
        selected.erase(std::unique(selected.begin(), selected.end()), selected.end());
    }
    if (op->found.empty())
        return finish_run(op, KILN_ERROR, "no executable tests in '" + op->tests_dir + "'");
    op->slots.resize(selected.size());
    for (size_t i = 0; i < selected.size(); i++) {
        op->slots[i].op = op;
        op->slots[i].name = selected[i];
        op->slots[i].record.name = selected[i];
    }
    launch(op);
}

void stat_next(Op *op);

void on_stat(uv_fs_t *req) noexcept
{
    auto *op = static_cast<Op *>(req->data);
    bool exec = req->result == 0 && S_ISREG(req->statbuf.st_mode) &&
                (req->statbuf.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
    uv_fs_req_cleanup(req);
    if (op->cancelled)
        return fail(op, KILN_CANCELLED, "cancelled", -ECANCELED);
    kiln_ops::guarded([&] {
        if (exec)
            op->found.push_back(op->candidates[op->next_candidate]);
        op->next_candidate++;
        stat_next(op);
    }, [&](const char *why) { fail(op, KILN_ERROR, why, -ENOMEM); });
}

// Stat the next candidate (following symlinks: a link to a script is a test).
void stat_next(Op *op)
{
    for (; op->next_candidate < op->candidates.size(); op->next_candidate++) {
        std::string path = kiln_exec::join_path(op->dir_path, op->candidates[op->next_candidate]);
        if (uv_fs_stat(op->pl->host->loop, &op->fs_req, path.c_str(), on_stat) == 0)
            return;
    }
    discovered(op);
}

void on_scandir(uv_fs_t *req) noexcept
{
    auto *op = static_cast<Op *>(req->data);
    int status = static_cast<int>(req->result);
    kiln_ops::guarded([&] {
        uv_dirent_t ent;
        while (status >= 0 && uv_fs_scandir_next(req, &ent) == 0)
            if (ent.name[0] != '.' && ent.type != UV_DIRENT_DIR)
                op->candidates.emplace_back(ent.name);
    }, [&](const char *) { status = UV_ENOMEM; });
    uv_fs_req_cleanup(req);
    if (op->cancelled)
        return fail(op, KILN_CANCELLED, "cancelled", -ECANCELED);
    if (status < 0)
        return fail(op, KILN_ERROR, kiln_exec::tests_dir_error(op->tests_dir, status), status);
    std::sort(op->candidates.begin(), op->candidates.end());
    stat_next(op);
}

// Copies the request and begins with the tests directory; the op set
// deletes the op when this fails (kiln_exec::run_entry).
int start(Script *pl, const kiln_exec_request *req, Op *op)
{
    if (!req || !req->workspace || !req->tests_dir || !kiln_exec::copy_only(*req, op->only))
        return -EINVAL;
    op->pl = pl;
    op->workspace = req->workspace;
    op->tests_dir = req->tests_dir;
    op->dir_path = kiln_exec::join_path(op->workspace, op->tests_dir);
    op->timeout_ms = req->timeout_ms;
    op->started_ns = uv_hrtime();
    op->fs_req.data = op;
    return uv_fs_scandir(pl->host->loop, &op->fs_req, op->dir_path.c_str(), 0, on_scandir);
}

// Kills what runs; the spawn callbacks (or the pending fs callback) then
// complete the op with CANCELLED.
void sc_cancel(void *self, void *op_ptr) noexcept
{
    auto *pl = static_cast<Script *>(self);
    Op *op = pl->ops.running(op_ptr);
    if (!op)
        return; // already completed
    op->cancelled = true;
    for (Slot &s : op->slots)
        if (s.proc)
            pl->host->kill_process(pl->host, s.proc);
}

int sc_init(const kiln_host *host, void **self) noexcept
{
    auto *pl = new (std::nothrow) Script;
    if (!pl)
        return -ENOMEM;
    pl->host = host;
    int64_t n = 1;
    int r = host->config_int(host, "parallel", &n);
    if (r == 0 && (n < 1 || n > 256)) {
        host->log(host, KILN_LOG_ERR, "parallel: expected 1 to 256, got %lld", (long long)n);
        r = -EINVAL;
    }
    if (r < 0 && r != -ENOENT) {
        delete pl;
        return r;
    }
    if (r == 0)
        pl->parallel = n;
    *self = pl;
    return 0;
}

void sc_fini(void *self) noexcept { delete static_cast<Script *>(self); }

const kiln_exec_ops kOps = {kiln_exec::run_entry<Script, Op, start>,
                             kiln_exec::list_entry<Script, Op, start>};
const char *const kConfigKeys[] = {"parallel", nullptr};

const kiln_plugin kDescriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_EXEC, "script",
    "each executable file in the tests directory is a test; exit 0 passes, 77 skips",
    kConfigKeys, sc_init, sc_fini, sc_cancel, nullptr, &kOps, nullptr, {}, nullptr};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &kDescriptor; }
