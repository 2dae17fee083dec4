// exec plugin "ctest": the workspace's tests directory is a CMake project
// whose tests are registered with add_test().  A run is three programs, one
// after the other, each with what is left of the run's time budget:
//   cmake -S WS/TESTS -B WS/.kiln-build          (configure)
//   cmake --build WS/.kiln-build                 (build)
//   ctest --output-junit FILE [-I 0,0,0,N,...]   (in the build directory)
// Per-test names, outcomes, durations and output come from the JUnit report
// (ctest 3.21+; Debian 12 has 3.25), the reason of each failure ("Timeout",
// "Not Run") from ctest's own summary.  Listing configures, then reads
// `ctest --show-only=json-v1`; nothing is built for it.  A run of some tests
// (a shard) lists them too, after the build, to pick them by number.
//
// cmake and ctest are looked up when a run starts, not when the plugin
// loads: a runner without cmake still loads this plugin, and a ctest job
// there fails with "cannot run cmake: ...".
#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include <kiln/plugin.h>

#include "ctest_parse.hpp"
#include "exec_common.hpp"

namespace {

using kiln_exec::TestRecord;

constexpr size_t kMaxOutput = 8u << 20;     // per stream of each program
constexpr size_t kMaxArg = 128u << 10;      // bytes of one argv string, on Linux
constexpr const char kBuildDir[] = ".kiln-build";

struct Ctest;

enum class Step { stat_dir, stat_lists, configure, build, test, show, read_report };

// One run or list operation.  Owned by itself: deleted after its callback.
struct Op {
    Ctest *pl = nullptr;
    bool list_mode = false;
    kiln_exec_cb run_cb = nullptr;
    kiln_list_cb list_cb = nullptr;
    void *arg = nullptr;
    std::string workspace, tests_dir, src_dir, build_dir, junit_path;
    uint64_t timeout_ms = 0;
    uint64_t started_ns = 0;
    std::vector<std::string> only;

    Step step = Step::stat_dir;
    std::string program;    // argv[0] of the step under way
    uv_fs_t fs_req{};
    uv_work_t work{};
    kiln_process *proc = nullptr;
    bool cancelled = false;
    std::string log;        // every program's output, in order
    std::string ctest_out;  // stdout of the ctest step
    int64_t ctest_status = 0;
    std::string numbers;    // ctest -I spec of the tests to run; empty: all
    std::string report;     // the JUnit file, read on the thread pool
    int read_status = 0;
};

struct Ctest {
    const kiln_host *host = nullptr;
    std::string cmake = "cmake";
    std::string ctest = "ctest";
    kiln_ops::OpSet<Op> ops;
};

// ---- completion ----

void finish_list(Op *op, int status, const std::string &error,
                 const std::vector<std::string> &names = {})
{
    op->pl->ops.remove(op);
    std::vector<const char *> ptrs;
    for (const std::string &n : names)
        ptrs.push_back(n.c_str());
    op->list_cb(op->arg, status, status ? error.c_str() : nullptr, status ? nullptr : ptrs.data(),
                status ? 0 : ptrs.size());
    delete op;
}

void finish_run(Op *op, int outcome, const std::string &error,
                const std::vector<TestRecord> &records = {})
{
    op->pl->ops.remove(op);
    std::vector<kiln_test_result> view = kiln_exec::result_view(records);
    kiln_exec_result res{outcome, view.data(), view.size(), op->log.data(), op->log.size(),
                         error.empty() ? nullptr : error.c_str()};
    op->run_cb(op->arg, &res);
    delete op;
}

// Ends the op before any test result exists.  For a list, the error carries
// the end of the log: the dispatcher only gets this text.
void fail(Op *op, int outcome, const std::string &error, int status = -EIO)
{
    bool with_log = outcome == KILN_ERROR && !op->log.empty();
    if (op->list_mode)
        finish_list(op, outcome == KILN_CANCELLED ? -ECANCELED : status,
                    with_log ? error + ":\n" + kiln_ctest::tail(op->log, 600) : error);
    else
        finish_run(op, outcome, error);
}

// ---- the JUnit report → results ----

void report_read(Op *op)
{
    if (op->read_status != 0) {
        // ctest itself failed (bad arguments, a broken CTestTestfile): its
        // output says why.
        std::string why = "ctest wrote no JUnit report (" +
                          std::string(uv_strerror(op->read_status)) + "), exit status " +
                          std::to_string(op->ctest_status);
        std::string out = kiln_ctest::tail(op->ctest_out, 400);
        return fail(op, KILN_ERROR, out.empty() ? why : why + ":\n" + out);
    }
    std::vector<kiln_ctest::JunitCase> cases;
    std::string why;
    if (!kiln_ctest::parse_junit(op->report, cases, why))
        return fail(op, KILN_ERROR, "ctest's JUnit report " + op->junit_path + ": " + why);
    std::vector<TestRecord> records = kiln_ctest::test_records(cases, op->ctest_out, op->only);
    int outcome = kiln_exec::overall_outcome(records);
    for (const TestRecord &t : records)
        if (t.outcome == KILN_TIMEOUT) // not counted by overall_outcome
            outcome = KILN_FAILED;
    std::string error;
    if (records.empty()) {
        outcome = KILN_ERROR;
        error = "no tests in the ctest project '" + op->tests_dir + "'";
    } else if (op->ctest_status != 0 && outcome == KILN_PASSED) {
        // ctest failed without a failing test: say so rather than pass.
        outcome = KILN_ERROR;
        error = "ctest: exit status " + std::to_string(op->ctest_status);
    }
    finish_run(op, outcome, error, records);
}

void start_read(Op *op)
{
    op->step = Step::read_report;
    op->work.data = op;
    auto work = [](uv_work_t *w) noexcept {
        auto *o = static_cast<Op *>(w->data);
        try {
            std::ifstream in(o->junit_path, std::ios::binary);
            if (!in) {
                o->read_status = UV_ENOENT;
                return;
            }
            std::ostringstream text;
            text << in.rdbuf();
            o->report = text.str();
        } catch (...) {
            o->read_status = UV_EIO;
        }
    };
    auto after = [](uv_work_t *w, int status) noexcept {
        auto *o = static_cast<Op *>(w->data);
        kiln_ops::guarded([&] {
            if (o->cancelled)
                return fail(o, KILN_CANCELLED, "cancelled");
            if (status < 0)
                o->read_status = status;
            report_read(o);
        }, [&](const char *) {
            finish_run(o, KILN_ERROR, {}); // log and tests dropped: nothing else fits
        });
    };
    int r = uv_queue_work(op->pl->host->loop, &op->work, work, after);
    if (r < 0)
        fail(op, KILN_ERROR, std::string("cannot read the JUnit report: ") + uv_strerror(r));
}

// ---- the programs ----

void spawn_step(Op *op, Step step);

const char *step_name(Step s)
{
    switch (s) {
    case Step::configure: return "cmake configure";
    case Step::build: return "cmake --build";
    case Step::test: return "ctest";
    case Step::show: return "ctest --show-only";
    default: return "?";
    }
}

void on_program_exit(void *arg, int status, const kiln_spawn_result *res) noexcept
{
    auto *op = static_cast<Op *>(arg);
    op->proc = nullptr;
    kiln_ops::guarded([&] {
        const char *what = step_name(op->step);
        if (status < 0)
            return fail(op, KILN_ERROR, "cannot run " + op->program + ": " + uv_strerror(status),
                        status);
        op->log += std::string("== ") + what + " ==\n";
        if (op->step != Step::show) // its stdout is the JSON, not worth logging
            op->log.append(res->out, res->out_len);
        kiln_exec::append_line(op->log, res->err, res->err_len);
        if (res->truncated)
            op->log += "[kiln: output truncated]\n";
        if (res->cancelled || op->cancelled)
            return fail(op, KILN_CANCELLED, "cancelled");
        if (res->timed_out)
            return fail(op, KILN_TIMEOUT, "timed out after " + std::to_string(op->timeout_ms) +
                                              " ms in " + what, -ETIMEDOUT);
        bool ok = res->term_signal == 0 && res->exit_status == 0;
        switch (op->step) {
        case Step::configure:
            if (!ok)
                return fail(op, KILN_ERROR, "cmake configure of '" + op->tests_dir +
                                                "' failed: " + kiln_exec::describe_exit(*res));
            return spawn_step(op, op->list_mode ? Step::show : Step::build);
        case Step::build:
            if (!ok)
                return fail(op, KILN_ERROR, "build failed: " + kiln_exec::describe_exit(*res));
            return spawn_step(op, op->only.empty() ? Step::test : Step::show);
        case Step::test:
            // Exit status 8 means "some test failed": the report says which.
            op->ctest_out.assign(res->out, res->out_len);
            op->ctest_status = res->term_signal ? -res->term_signal : res->exit_status;
            return start_read(op);
        case Step::show: {
            std::vector<std::string> names;
            std::string why;
            if (!ok)
                return fail(op, KILN_ERROR, "ctest --show-only failed: " +
                                                kiln_exec::describe_exit(*res));
            if (!kiln_ctest::parse_show_only(std::string(res->out, res->out_len), names, why))
                return fail(op, KILN_ERROR, why);
            if (op->list_mode)
                return finish_list(op, 0, {}, names);
            op->numbers = kiln_ctest::test_numbers(names, op->only);
            if (op->numbers.empty()) // none is a test here: each is an error
                return finish_run(op, KILN_FAILED, {},
                                  kiln_ctest::test_records({}, {}, op->only));
            return spawn_step(op, Step::test);
        }
        default:
            return fail(op, KILN_ERROR, "internal: unexpected step");
        }
    }, [&](const char *why) { fail(op, KILN_ERROR, why, -ENOMEM); });
}

// Start a program with the time left of the budget.  Only called from loop
// callbacks, so completing the op here is "later" for its caller.
void spawn_step(Op *op, Step step)
{
    op->step = step;
    const Ctest &pl = *op->pl;
    std::vector<const char *> argv;
    const char *cwd = op->workspace.c_str();
    if (step == Step::configure) {
        argv = {pl.cmake.c_str(), "-S", op->src_dir.c_str(), "-B", op->build_dir.c_str()};
    } else if (step == Step::build) {
        argv = {pl.cmake.c_str(), "--build", op->build_dir.c_str()};
    } else {
        // In the build directory rather than --test-dir, which makes ctest
        // print "Internal ctest changing into directory" first.
        cwd = op->build_dir.c_str();
        argv = {pl.ctest.c_str()};
        if (step == Step::show) {
            argv.push_back("--show-only=json-v1");
        } else {
            argv.insert(argv.end(), {"--output-junit", op->junit_path.c_str()});
            if (!op->numbers.empty()) {
                // Linux caps one argument at 128 KiB (MAX_ARG_STRLEN), some
                // 20,000 test numbers.  Say so rather than fail with E2BIG.
                if (op->numbers.size() >= kMaxArg)
                    return fail(op, KILN_ERROR, std::to_string(op->only.size()) +
                                                    " tests are too many for one ctest command "
                                                    "line: use more shards");
                argv.insert(argv.end(), {"-I", op->numbers.c_str()});
            }
        }
    }
    argv.push_back(nullptr);
    op->program = argv[0];
    uint64_t timeout = 0;
    if (op->timeout_ms) {
        uint64_t elapsed = (uv_hrtime() - op->started_ns) / 1000000;
        if (elapsed >= op->timeout_ms)
            return fail(op, KILN_TIMEOUT, "timed out after " + std::to_string(op->timeout_ms) +
                                              " ms before " + step_name(step), -ETIMEDOUT);
        timeout = op->timeout_ms - elapsed;
    }
    kiln_spawn_request req{argv.data(), cwd, nullptr, timeout, kMaxOutput};
    int r = pl.host->spawn(pl.host, &req, on_program_exit, op, &op->proc);
    if (r < 0)
        fail(op, KILN_ERROR, "cannot run " + op->program + ": " + uv_strerror(r), r);
}

// ---- the tests directory must be a CMake project ----

void on_stat(uv_fs_t *req) noexcept
{
    auto *op = static_cast<Op *>(req->data);
    int status = static_cast<int>(req->result);
    bool is_dir = status == 0 && S_ISDIR(req->statbuf.st_mode);
    uv_fs_req_cleanup(req);
    kiln_ops::guarded([&] {
        if (op->cancelled)
            return fail(op, KILN_CANCELLED, "cancelled");
        if (op->step == Step::stat_dir) {
            if (status == 0 && !is_dir)
                status = UV_ENOTDIR;
            if (status < 0)
                return fail(op, KILN_ERROR, kiln_exec::tests_dir_error(op->tests_dir, status),
                            status);
            op->step = Step::stat_lists;
            std::string lists = kiln_exec::join_path(op->src_dir, "CMakeLists.txt");
            int r = uv_fs_stat(op->pl->host->loop, &op->fs_req, lists.c_str(), on_stat);
            if (r < 0)
                fail(op, KILN_ERROR, "tests directory '" + op->tests_dir + "': " + uv_strerror(r),
                     r);
            return;
        }
        if (status < 0)
            return fail(op, KILN_ERROR, "tests directory '" + op->tests_dir +
                                            "' has no CMakeLists.txt (the ctest plugin runs a "
                                            "CMake project there)", status);
        spawn_step(op, Step::configure);
    }, [&](const char *why) { fail(op, KILN_ERROR, why, -ENOMEM); });
}

// Copies the request and begins with the tests directory; the op set
// deletes the op when this fails (kiln_exec::run_entry).
int start(Ctest *pl, const kiln_exec_request *req, Op *op)
{
    if (!req || !req->workspace || !req->tests_dir || !kiln_exec::copy_only(*req, op->only))
        return -EINVAL;
    op->pl = pl;
    op->workspace = req->workspace;
    op->tests_dir = req->tests_dir;
    op->src_dir = kiln_exec::join_path(op->workspace, op->tests_dir);
    op->build_dir = kiln_exec::join_path(op->workspace, kBuildDir);
    // Named per run: a report left by an earlier run in a kept workspace
    // must not pass for this one's when ctest writes none.
    op->junit_path = op->build_dir + "/kiln-junit-" + std::to_string(uv_hrtime()) + ".xml";
    op->timeout_ms = req->timeout_ms;
    op->started_ns = uv_hrtime();
    op->fs_req.data = op;
    return uv_fs_stat(pl->host->loop, &op->fs_req, op->src_dir.c_str(), on_stat);
}

// Kills the program under way; its exit callback (or the pending fs or
// thread-pool callback) then completes the op with CANCELLED.
void ct_cancel(void *self, void *op_ptr) noexcept
{
    auto *pl = static_cast<Ctest *>(self);
    Op *op = pl->ops.running(op_ptr);
    if (!op)
        return; // already completed
    op->cancelled = true;
    if (op->proc)
        pl->host->kill_process(pl->host, op->proc);
}

// A program name from the config: present and non-empty, or the default.
int program(const kiln_host *host, const char *key, std::string &out)
{
    const char *value = nullptr;
    int r = host->config_string(host, key, &value);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    if (!*value) {
        host->log(host, KILN_LOG_ERR, "%s: must not be empty", key);
        return -EINVAL;
    }
    out = value;
    return 0;
}

int ct_init(const kiln_host *host, void **self) noexcept
{
    try {
        auto pl = std::make_unique<Ctest>();
        pl->host = host;
        int r = program(host, "cmake", pl->cmake);
        if (r == 0)
            r = program(host, "ctest", pl->ctest);
        if (r < 0)
            return r;
        *self = pl.release();
        return 0;
    } catch (...) {
        return -ENOMEM;
    }
}

void ct_fini(void *self) noexcept { delete static_cast<Ctest *>(self); }

const kiln_exec_ops kOps = {kiln_exec::run_entry<Ctest, Op, start>,
                             kiln_exec::list_entry<Ctest, Op, start>};
const char *const kConfigKeys[] = {"cmake", "ctest", nullptr};

const kiln_plugin kDescriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_EXEC, "ctest",
    "the tests directory is a CMake project: configure, build, run its ctest tests",
    kConfigKeys, ct_init, ct_fini, ct_cancel, nullptr, &kOps, nullptr, {}, nullptr};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &kDescriptor; }
