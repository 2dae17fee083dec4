// The steps of one job: clean, prepare the workspace, run the tests, clean.
#include "job_run.hpp"

#include <sys/stat.h>

#include <cstdio>

#include <kiln/daemon.hpp>
#include <kiln/log.hpp>
#include <kiln/spawn.hpp>

#include "sandbox.hpp"

namespace kiln {

// Each step is entered from a C callback (libuv or a plugin): no exception
// may unwind through it.  A step that throws ends the job as an error, so
// `done` still follows.
template <typename Fn> void JobRun::guard(JobRun *self, Fn &&fn) noexcept
{
    std::string why;
    try {
        fn();
        return;
    } catch (const std::exception &e) {
        why = e.what();
    } catch (...) {
        why = "unknown exception";
    }
    try {
        self->fail("runner: " + why);
    } catch (...) {
        log_err("job %llu: cannot report an internal error", (unsigned long long)self->job_id());
    }
}

JobRun::JobRun(uv_loop_t *loop, Assign assign, const Plugin &vcs, const Plugin &exec,
               std::string workspace, std::string cache_dir, bool keep_workspace, size_t max_log,
               Done done)
    : loop_(loop), assign_(std::move(assign)), vcs_(vcs), exec_(exec),
      workspace_(std::move(workspace)), cache_dir_(std::move(cache_dir)),
      keep_workspace_(keep_workspace), max_log_(max_log), done_(std::move(done))
{
    result_.job_id = assign_.job_id;
    result_.attempt = assign_.attempt;
    result_.commit = assign_.spec.commit;
}

void JobRun::isolate(bool sandbox, std::optional<SpawnUser> owner)
{
    sandbox_ = sandbox;
    owner_ = owner;
}

void JobRun::start()
{
    result_.started_unix_ms = unix_ms();
    log_info("job %llu: %s %.12s: preparing %s", static_cast<unsigned long long>(job_id()),
             assign_.spec.repo.c_str(), assign_.spec.commit.c_str(), workspace_.c_str());
    clean_then(Step::preparing);
}

// Remove the workspace (a leftover of an earlier attempt, or this job's own)
// with rm -rf in a child: a big tree must not stall the loop.
void JobRun::clean_then(Step next)
{
    step_ = next == Step::preparing ? Step::cleaning : Step::removing;
    const char *argv[] = {"rm", "-rf", "--", workspace_.c_str(), nullptr};
    kiln_spawn_request req{};
    req.argv = argv;
    req.timeout_ms = 10 * 60 * 1000;
    auto on_removed = [](void *arg, int status, const kiln_spawn_result *res) noexcept {
        auto *self = static_cast<JobRun *>(arg);
        self->cleaner_ = nullptr;
        guard(self, [&] {
            if (status != 0 || res->exit_status != 0 || res->term_signal)
                log_warning("job %llu: could not remove %s",
                            static_cast<unsigned long long>(self->job_id()),
                            self->workspace_.c_str());
            if (self->step_ == Step::cleaning)
                self->cancelled_ ? self->fail("cancelled") : self->prepare();
            else
                self->finish();
        });
    };
    int rc = spawn_process(loop_, &req, on_removed, this, &cleaner_);
    if (rc != 0) {
        log_warning("job %llu: rm: %s", static_cast<unsigned long long>(job_id()), uv_strerror(rc));
        // Nothing started, so nothing calls back: go on from the next tick.
        auto *idle = new uv_idle_t;
        uv_idle_init(loop_, idle);
        idle->data = this;
        uv_idle_start(idle, [](uv_idle_t *h) noexcept {
            auto *self = static_cast<JobRun *>(h->data);
            uv_close(reinterpret_cast<uv_handle_t *>(h),
                     [](uv_handle_t *hh) noexcept { delete reinterpret_cast<uv_idle_t *>(hh); });
            guard(self, [self] {
                if (self->step_ != Step::cleaning)
                    self->finish();
                else
                    self->cancelled_ ? self->fail("cancelled") : self->prepare();
            });
        });
    }
}

void JobRun::prepare()
{
    step_ = Step::preparing;
    kiln_vcs_prepare_request req{};
    req.url = assign_.spec.url.c_str();
    req.commit = assign_.spec.commit.c_str();
    req.workspace = workspace_.c_str();
    req.cache_dir = cache_dir_.c_str();
    auto on_prepared = [](void *arg, int status, const char *error) noexcept {
        auto *self = static_cast<JobRun *>(arg);
        self->op_ = nullptr;
        guard(self, [&] {
            if (status != 0)
                self->fail(std::string("workspace: ") + (error ? error : uv_strerror(status)));
            else if (self->sandbox_)
                self->read_alternates();
            else
                self->chown_workspace();
        });
    };
    int rc = vcs_.vcs().prepare(vcs_.self(), &req, on_prepared, this, &op_);
    if (rc != 0)
        fail(std::string("workspace: cannot start: ") + uv_strerror(rc));
}

// A clone made with --shared (the git plugin's) reads its objects from the
// mirror through .git/objects/info/alternates; the sandbox hides the
// mirror with the rest of work_dir, so those directories are bound back
// read-only.  A small file, read on the thread pool all the same.
void JobRun::read_alternates()
{
    step_ = Step::isolating;
    struct Work {
        uv_work_t req;
        std::weak_ptr<JobRun *> run;
        std::string workspace;
        std::vector<std::string> dirs;
        std::string error; // what went wrong on the pool thread
    };
    auto *w = new Work;
    w->req.data = w;
    w->run = alive_;
    w->workspace = workspace_;
    auto work = [](uv_work_t *req) noexcept {
        auto *w = static_cast<Work *>(req->data);
        try { // on a pool thread: nothing may unwind into libuv
            std::string objects = w->workspace + "/.git/objects", text;
            if (FILE *f = fopen((objects + "/info/alternates").c_str(), "re")) {
                char buf[4096];
                size_t n;
                while ((n = fread(buf, 1, sizeof buf, f)) > 0 && text.size() < (1u << 20))
                    text.append(buf, n);
                fclose(f);
            }
            for (const std::string &dir : parse_alternates(text, objects)) {
                struct stat st;
                // bwrap refuses to bind what does not exist; git would skip it too.
                if (!path_within(dir, w->workspace) && stat(dir.c_str(), &st) == 0 &&
                    S_ISDIR(st.st_mode))
                    w->dirs.push_back(dir);
            }
        } catch (const std::exception &e) {
            w->error = e.what();
        }
    };
    auto after = [](uv_work_t *req, int) noexcept {
        std::unique_ptr<Work> w(static_cast<Work *>(req->data));
        auto alive = w->run.lock();
        if (!alive)
            return; // the run is gone (the runner is shutting down)
        JobRun *self = *alive;
        guard(self, [&] {
            if (!w->error.empty())
                return self->fail("workspace: cannot read its git alternates: " + w->error);
            self->read_only_ = std::move(w->dirs);
            self->cancelled_ ? self->fail("cancelled") : self->chown_workspace();
        });
    };
    int rc = uv_queue_work(loop_, &w->req, work, after);
    if (rc != 0) {
        delete w;
        fail(std::string("workspace: cannot read its git alternates: ") + uv_strerror(rc));
    }
}

// With test_user: the workspace was made by the runner's user; the tests,
// running as test_user, must be able to write in it.  chown in a child
// (a big tree must not stall the loop), -P -h: a symlink in the checkout is
// changed itself, never what it points to.
void JobRun::chown_workspace()
{
    if (!owner_)
        return run_tests();
    step_ = Step::isolating;
    std::string ids = std::to_string(owner_->uid) + ":" + std::to_string(owner_->gid);
    const char *argv[] = {"chown", "-R", "-P", "-h", "--", ids.c_str(), workspace_.c_str(),
                          nullptr};
    kiln_spawn_request req{};
    req.argv = argv;
    req.timeout_ms = 10 * 60 * 1000;
    req.max_output = 4096;
    auto on_chowned = [](void *arg, int, const kiln_spawn_result *res) noexcept {
        auto *self = static_cast<JobRun *>(arg);
        self->cleaner_ = nullptr;
        guard(self, [&] {
            if (self->cancelled_)
                return self->fail("cancelled");
            if (res->exit_status != 0 || res->term_signal) {
                std::string err(res->err, res->err_len);
                while (!err.empty() && err.back() == '\n')
                    err.pop_back();
                return self->fail("workspace: cannot hand it to the test user: chown: " +
                                  (err.empty() ? "exit status " + std::to_string(res->exit_status)
                                               : err));
            }
            self->run_tests();
        });
    };
    int rc = spawn_process(loop_, &req, on_chowned, this, &cleaner_);
    if (rc != 0)
        fail(std::string("workspace: cannot run chown: ") + uv_strerror(rc));
}

void JobRun::run_tests()
{
    if (cancelled_) {
        fail("cancelled");
        return;
    }
    if (assign_.list)
        return list_tests();
    step_ = Step::running;
    if (send_log_)
        live_ = std::make_shared<LiveLog>(loop_, job_id(), attempt(), max_log_, send_log_);
    // "job N: running tests" is what the integration tests look for in logs.
    log_info("job %llu: running tests with %s%s", static_cast<unsigned long long>(job_id()),
             exec_.name().c_str(),
             assign_.tests.empty()
                 ? ""
                 : (" (" + std::to_string(assign_.tests.size()) + " of them)").c_str());
    // A shard runs just its tests; the names are borrowed for the call only.
    std::vector<const char *> only;
    for (const std::string &name : assign_.tests)
        only.push_back(name.c_str());
    kiln_exec_request req{};
    req.workspace = workspace_.c_str();
    req.tests_dir = "tests";
    req.timeout_ms = assign_.spec.timeout_ms;
    req.only = only.empty() ? nullptr : only.data();
    req.n_only = only.size();
    auto on_ran = [](void *arg, const kiln_exec_result *res) noexcept {
        auto *self = static_cast<JobRun *>(arg);
        self->op_ = nullptr;
        guard(self, [&] {
            Result &r = self->result_;
            r.outcome = outcome_from_plugin(res->outcome);
            r.error = res->error ? res->error : "";
            // What followers saw is the log: the same bytes.  A plugin whose
            // tests wrote nothing through the host has only its own log.
            if (self->live_ && !self->live_->bytes().empty()) {
                self->live_->finish();
                r.log = self->live_->bytes();
            } else {
                r.log = bounded_log(res->log, res->log_len, self->max_log_);
            }
            for (size_t i = 0; i < res->n_tests; i++) {
                const kiln_test_result &t = res->tests[i];
                r.tests.push_back({t.name ? t.name : "?", outcome_from_plugin(t.outcome),
                                   t.duration_ms, t.message ? t.message : ""});
            }
            self->keep_workspace_ ? self->finish() : self->clean_then(Step::finished);
        });
    };
    int rc = exec_.exec().run(exec_.self(), &req, on_ran, this, &op_);
    if (rc != 0)
        fail(std::string("tests: cannot start: ") + uv_strerror(rc));
}

void JobRun::list_tests()
{
    step_ = Step::running;
    log_info("job %llu: listing tests with %s", static_cast<unsigned long long>(job_id()),
             exec_.name().c_str());
    if (!exec_.exec().list) // the Runner refuses such assigns; this is a second line
        return fail("plugin " + exec_.name() + " cannot list tests");
    kiln_exec_request req{};
    req.workspace = workspace_.c_str();
    req.tests_dir = "tests";
    req.timeout_ms = assign_.spec.timeout_ms;
    auto on_listed = [](void *arg, int status, const char *error, const char *const *tests,
                        size_t n) noexcept {
        auto *self = static_cast<JobRun *>(arg);
        self->op_ = nullptr;
        guard(self, [&] {
            if (status != 0)
                return self->fail(std::string("list: ") + (error ? error : uv_strerror(status)));
            self->result_.outcome = KILN_PASSED;
            for (size_t i = 0; i < n; i++)
                self->listed_.emplace_back(tests[i] ? tests[i] : "");
            self->keep_workspace_ ? self->finish() : self->clean_then(Step::finished);
        });
    };
    int rc = exec_.exec().list(exec_.self(), &req, on_listed, this, &op_);
    if (rc != 0)
        fail(std::string("list: cannot start: ") + uv_strerror(rc));
}

std::string JobRun::bounded_log(const char *log, size_t len, size_t max)
{
    if (!log)
        return {};
    if (len <= max)
        return std::string(log, len);
    // The end of a log says why a run failed; the start says what it was.
    size_t head = max / 4, tail = max - head;
    return std::string(log, head) + "\n[kiln: " + std::to_string(len - head - tail) +
           " bytes of log dropped]\n" + std::string(log + len - tail, tail);
}

void JobRun::fail(const std::string &why)
{
    result_.outcome = cancelled_ ? KILN_CANCELLED : KILN_ERROR;
    // A cancelled step fails with its own words ("workspace: ...
    // cancelled"); the reason is the cancel.
    result_.error = cancelled_ ? "cancelled" : why;
    log_warning("job %llu: %s", static_cast<unsigned long long>(job_id()), why.c_str());
    keep_workspace_ || step_ == Step::cleaning ? finish() : clean_then(Step::finished);
}

void JobRun::finish()
{
    if (step_ == Step::finished && !done_)
        return;
    step_ = Step::finished;
    result_.finished_unix_ms = unix_ms();
    auto done = std::move(done_);
    done_ = nullptr;
    if (!done)
        return;
    if (!assign_.list)
        return done(*this, std::move(result_)); // may destroy this
    // A listing that did not complete says why; the dispatcher then runs the
    // commit unsharded.
    TestList list{0, assign_.job_id, assign_.attempt, assign_.spec.commit, {}, {}};
    if (result_.outcome == KILN_PASSED)
        list.tests = std::move(listed_);
    else
        list.error = result_.error.empty() ? kiln_outcome_name(result_.outcome) : result_.error;
    done(*this, std::move(list)); // may destroy this
}

void JobRun::cancel()
{
    if (cancelled_)
        return;
    cancelled_ = true;
    if (op_ && step_ == Step::preparing)
        vcs_.cancel(op_);
    else if (op_ && step_ == Step::running)
        exec_.cancel(op_);
    else if (cleaner_)
        kill_process(cleaner_);
}

} // namespace kiln
