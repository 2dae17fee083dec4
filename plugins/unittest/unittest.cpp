// exec plugin "unittest": the original system's way of testing a commit,
// Python's unittest over the workspace's tests directory.
//
// Instead of parsing `python3 -m unittest discover -v` output (which has no
// durations before 3.12, changes format between versions and gets mixed with
// whatever tests print), the plugin runs a small bundled runner with
// `python3 -c RUNNER`.  The runner uses unittest's own loader, discovery and
// TextTestRunner (so the log reads exactly like `unittest -v`), plus a result
// class that writes one record per test — id, outcome, duration, message — to
// the original stdout.  It first points fd 1 at stderr, so anything a test
// prints, even from a child process, lands in the log and never among the
// records.  The runner's text, and how a shard picks its tests, are in
// unittest_runner.hpp.
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <kiln/plugin.h>

#include "exec_common.hpp"
#include "unittest_runner.hpp"

namespace {

using kiln_exec::TestRecord;

constexpr char kPrefix[] = "\x1ekiln\t";
// Generous: the records of thousands of tests with tracebacks, and the log.
constexpr size_t kMaxOutput = 16u << 20;

struct Unittest;

// One run or list operation.  Owned by itself: deleted after its callback.
struct Op {
    Unittest *pl = nullptr;
    bool list_mode = false;
    kiln_exec_cb run_cb = nullptr;
    kiln_list_cb list_cb = nullptr;
    void *arg = nullptr;
    std::string workspace, tests_dir;
    uint64_t timeout_ms = 0;
    std::vector<std::string> only;
    uv_fs_t stat_req{};
    kiln_process *proc = nullptr;
    bool cancelled = false;
};

struct Unittest {
    const kiln_host *host = nullptr;
    std::string python = "python3";
    std::string pattern = "test*.py";
    kiln_ops::OpSet<Op> ops;
};

std::string unescape(const std::string &s)
{
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out += s[i];
            continue;
        }
        char c = s[++i];
        out += c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c;
    }
    return out;
}

// Splits captured stdout into records (fields unescaped); any other text is
// appended to `stray` so that nothing the child wrote is lost from the log.
std::vector<std::vector<std::string>> parse_records(const char *data, size_t len,
                                                    std::string &stray)
{
    std::vector<std::vector<std::string>> records;
    const size_t plen = sizeof kPrefix - 1;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = static_cast<const char *>(memchr(data + pos, '\n', len - pos));
        size_t end = nl ? size_t(nl - data) : len; // a cut last line is dropped below
        std::string line(data + pos, end - pos);
        pos = end + 1;
        if (line.compare(0, plen, kPrefix) != 0 || !nl) {
            stray += line + "\n";
            continue;
        }
        std::vector<std::string> fields;
        size_t start = plen;
        for (;;) {
            size_t tab = line.find('\t', start);
            fields.push_back(unescape(line.substr(start, tab - start)));
            if (tab == std::string::npos)
                break;
            start = tab + 1;
        }
        records.push_back(std::move(fields));
    }
    return records;
}

int outcome_from(const std::string &s)
{
    if (s == "passed") return KILN_PASSED;
    if (s == "failed") return KILN_FAILED;
    if (s == "skipped") return KILN_SKIPPED;
    return KILN_ERROR;
}

void finish(Op *op, int outcome, const std::string &error, std::vector<TestRecord> tests = {},
            const std::string &log = {})
{
    op->pl->ops.remove(op);
    if (op->list_mode) {
        std::vector<const char *> names;
        for (const TestRecord &t : tests)
            names.push_back(t.name.c_str());
        bool ok = outcome == KILN_PASSED;
        int status = ok ? 0 : outcome == KILN_CANCELLED ? -ECANCELED
                            : outcome == KILN_TIMEOUT   ? -ETIMEDOUT
                                                        : -EIO;
        op->list_cb(op->arg, status, ok ? nullptr : error.c_str(), ok ? names.data() : nullptr,
                    ok ? names.size() : 0);
    } else {
        std::vector<kiln_test_result> view = kiln_exec::result_view(tests);
        kiln_exec_result res{outcome, view.data(), view.size(), log.data(), log.size(),
                             error.empty() ? nullptr : error.c_str()};
        op->run_cb(op->arg, &res);
    }
    delete op;
}

// The runner has ended: turn its records into the result.
void complete(Op *op, const kiln_spawn_result &res)
{
    std::string log(res.err, res.err_len);
    std::vector<std::vector<std::string>> records = parse_records(res.out, res.out_len, log);
    if (res.truncated)
        log += "[kiln: output beyond " + std::to_string(kMaxOutput) + " bytes dropped]\n";

    std::vector<TestRecord> tests;
    std::string running, error;
    bool done = false;
    for (const auto &r : records) {
        const std::string &ev = r[0];
        if (ev == "start" && r.size() >= 2) {
            running = r[1];
        } else if (ev == "end" && r.size() >= 5) {
            TestRecord t;
            t.name = r[1];
            t.outcome = outcome_from(r[2]);
            t.duration_ms = strtoull(r[3].c_str(), nullptr, 10);
            t.message = r[4];
            tests.push_back(std::move(t));
            running.clear();
        } else if (ev == "test" && r.size() >= 2) {
            tests.push_back({r[1], KILN_PASSED, 0, {}});
        } else if (ev == "done") {
            done = true;
        } else if (ev == "error" && r.size() >= 2) {
            error = r[1];
        }
    }

    int outcome;
    if (res.timed_out || res.cancelled) {
        outcome = res.timed_out ? KILN_TIMEOUT : KILN_CANCELLED;
        error = res.timed_out ? "timed out after " + std::to_string(op->timeout_ms) + " ms"
                              : "cancelled";
    } else if (!error.empty()) {
        outcome = KILN_ERROR;
    } else if (!done) {
        // Python itself failed (bad interpreter, a test calling os._exit...).
        outcome = KILN_ERROR;
        error = op->pl->python + " " + kiln_exec::describe_exit(res) +
                (running.empty() ? std::string() : " while running " + running);
        size_t last = log.find_last_not_of('\n');
        if (running.empty() && last != std::string::npos) {
            size_t bol = log.rfind('\n', last);
            error += ": " + log.substr(bol == std::string::npos ? 0 : bol + 1, last - bol);
        }
    } else if (tests.empty() && !op->list_mode) {
        // Nothing to run is almost always a misconfiguration (wrong directory
        // or pattern); passing it would hide that.  Python 3.12 agrees: its
        // unittest exits with status 5 when no tests ran.
        outcome = KILN_ERROR;
        error = "no tests found in '" + op->tests_dir + "' (pattern '" + op->pl->pattern + "')";
    } else {
        outcome = op->list_mode ? KILN_PASSED : kiln_exec::overall_outcome(tests);
    }
    if (!running.empty() && !op->list_mode) {
        // The test that was running when it ended is the one to blame.
        int o = outcome == KILN_TIMEOUT || outcome == KILN_CANCELLED ? outcome : KILN_ERROR;
        tests.push_back({running, o, res.duration_ms, error});
    }
    finish(op, outcome, error, std::move(tests), log);
}

void on_spawned(void *arg, int status, const kiln_spawn_result *res) noexcept
{
    auto *op = static_cast<Op *>(arg);
    op->proc = nullptr;
    kiln_ops::guarded(
        [&] {
            if (status < 0)
                finish(op, KILN_ERROR, "cannot run " + op->pl->python + ": " + uv_strerror(status));
            else
                complete(op, *res);
        },
        [&](const char *why) { finish(op, KILN_ERROR, why); });
}

// Spawns the runner.  Only called from a loop callback, so completing the
// op here is "later" for its caller.
void spawn_runner(Op *op)
{
    const kiln_host *host = op->pl->host;
    std::vector<const char *> argv = {op->pl->python.c_str(), "-c", kiln_unittest::kRunner,
                                      op->list_mode ? "list" : "run", op->tests_dir.c_str(),
                                      op->pl->pattern.c_str()};
    if (!op->list_mode) // a list is of the whole suite (plugin.h)
        for (const std::string &n : op->only)
            argv.push_back(n.c_str());
    argv.push_back(nullptr);
    kiln_spawn_request sreq{argv.data(), op->workspace.c_str(), nullptr, op->timeout_ms,
                            kMaxOutput};
    int r = host->spawn(host, &sreq, on_spawned, op, &op->proc);
    if (r < 0)
        finish(op, KILN_ERROR, "cannot run " + op->pl->python + ": " + uv_strerror(r));
}

void on_stat(uv_fs_t *req) noexcept
{
    auto *op = static_cast<Op *>(req->data);
    int status = static_cast<int>(req->result);
    bool is_dir = status == 0 && S_ISDIR(req->statbuf.st_mode);
    uv_fs_req_cleanup(req);
    kiln_ops::guarded(
        [&] {
            if (op->cancelled)
                return finish(op, KILN_CANCELLED, "cancelled");
            if (status == 0 && !is_dir)
                status = UV_ENOTDIR;
            if (status < 0)
                return finish(op, KILN_ERROR, kiln_exec::tests_dir_error(op->tests_dir, status));
            spawn_runner(op);
        },
        [&](const char *why) { finish(op, KILN_ERROR, why); });
}

// Common start of run and list: copy the request, stat the tests directory
// (asynchronously, so every completion comes from a loop callback).  The op
// set deletes the op when this fails (kiln_exec::run_entry).
int start(Unittest *pl, const kiln_exec_request *req, Op *op)
{
    if (!req || !req->workspace || !req->tests_dir || !kiln_exec::copy_only(*req, op->only))
        return -EINVAL;
    op->pl = pl;
    op->workspace = req->workspace;
    op->tests_dir = req->tests_dir;
    op->timeout_ms = req->timeout_ms;
    op->stat_req.data = op;
    std::string path = kiln_exec::join_path(op->workspace, op->tests_dir);
    return uv_fs_stat(pl->host->loop, &op->stat_req, path.c_str(), on_stat);
}

void ut_cancel(void *self, void *op_ptr) noexcept
{
    auto *pl = static_cast<Unittest *>(self);
    Op *op = pl->ops.running(op_ptr);
    if (!op)
        return; // already completed
    op->cancelled = true; // seen by on_stat if the stat is still pending
    if (op->proc)
        pl->host->kill_process(pl->host, op->proc);
}

int ut_init(const kiln_host *host, void **self) noexcept
{
    try {
        auto pl = std::make_unique<Unittest>();
        pl->host = host;
        // An empty string keeps the default; a wrong type was logged by the host.
        auto read = [host](const char *key, std::string &dst) {
            const char *s = nullptr;
            int r = host->config_string(host, key, &s);
            if (r == 0 && s && *s)
                dst = s;
            return r == -ENOENT ? 0 : r;
        };
        int r = read("python", pl->python);
        if (r == 0)
            r = read("pattern", pl->pattern);
        if (r < 0)
            return r;
        *self = pl.release();
        return 0;
    } catch (...) {
        return -ENOMEM;
    }
}

void ut_fini(void *self) noexcept { delete static_cast<Unittest *>(self); }

const kiln_exec_ops kOps = {kiln_exec::run_entry<Unittest, Op, start>,
                             kiln_exec::list_entry<Unittest, Op, start>};
const char *const kConfigKeys[] = {"python", "pattern", nullptr};

const kiln_plugin kDescriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_EXEC, "unittest",
    "Python unittest over the workspace's tests directory, one result per test",
    kConfigKeys, ut_init, ut_fini, ut_cancel, nullptr, &kOps, nullptr, {}, nullptr};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &kDescriptor; }
