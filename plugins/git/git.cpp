// git — the vcs plugin: polls branch heads, lists new commits, prepares
// workspaces.  Every git command runs through host->spawn (argv, own process
// group, timeout); operations are chains of steps, each started from the
// callback of the previous one, so nothing blocks the loop.
//
// History needs a local copy: one bare mirror per URL under a cache
// directory, fetched by explicit URL each time (no remote config).  Two
// operations never run git on the same mirror at once: the first holds it,
// the others queue in `Self::mirrors` and start when it is released.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <kiln/plugin.h>
#include <uv.h>

#include "git_util.hpp"
#include "op_set.hpp"

extern char **environ;

namespace {

using namespace kiln_git;

struct Op;

struct Self {
    const kiln_host *host = nullptr;
    std::string git = "git";
    uint64_t timeout_ms = 5 * 60 * 1000;
    std::string cache_dir; // when a request names none
    std::vector<std::string> env;
    std::vector<const char *> envp;
    std::map<std::string, std::deque<Op *>> mirrors; // present: held; deque: waiters
    kiln_ops::OpSet<Op> live;                        // the running polls and prepares
};

using Step = std::function<void(Op *, const kiln_spawn_result &)>;

struct Op {
    Self *self = nullptr;
    bool is_poll = false;
    kiln_vcs_poll_cb poll_cb = nullptr;
    kiln_done_cb done_cb = nullptr;
    void *arg = nullptr;

    std::string url, branch, since, commit, workspace, cache_dir, mirror;
    uint32_t max_commits = 0;

    std::string head; // empty: the branch is gone
    std::vector<std::string> commits;
    int since_found = 1, truncated = 0;

    std::string what;                     // the running step, for error text
    std::vector<std::string> argv;        // kept alive while git runs
    kiln_process *proc = nullptr;
    Step next;
    void (*after_mirror)(Op *) = nullptr; // what to do once the mirror exists
    bool holds_mirror = false, waiting = false, cancelled = false;
    uv_fs_t fs;
    std::vector<std::string> mkdirs;
    size_t mkdir_at = 0;
    uv_timer_t timer; // only to defer the callback of a cancelled waiter
    bool timer_used = false;
};

void release_mirror(Op *op);

// A fetch may start an automatic gc.  Detached, it would outlive the fetch,
// escape our per-mirror queue and timeout (or die half-way when the host
// kills the process group): run it in the foreground instead.
const char kForegroundGc[] = "gc.autoDetach=false";

// The one place an operation ends: callback, then the op is freed.
void finish(Op *op, int status, const std::string &error)
{
    Self *s = op->self;
    s->live.remove(op);
    if (op->holds_mirror)
        release_mirror(op);
    if (status < 0 && status != -ECANCELED)
        s->host->log(s->host, KILN_LOG_ERR, "%s", error.c_str());
    const char *err = status < 0 ? error.c_str() : nullptr;
    if (op->is_poll) {
        std::vector<const char *> list;
        for (const std::string &c : op->commits)
            list.push_back(c.c_str());
        kiln_vcs_poll_result res = {op->head.empty() ? nullptr : op->head.c_str(), list.data(),
                                    list.size(), op->since_found, op->truncated};
        op->poll_cb(op->arg, status, err, status < 0 ? nullptr : &res);
    } else {
        op->done_cb(op->arg, status, err);
    }
    if (op->timer_used)
        uv_close(reinterpret_cast<uv_handle_t *>(&op->timer),
                 [](uv_handle_t *h) { delete static_cast<Op *>(h->data); });
    else
        delete op;
}

void on_spawned(void *arg, int status, const kiln_spawn_result *res) noexcept
{
    Op *op = static_cast<Op *>(arg);
    op->proc = nullptr;
    try {
        if (op->cancelled)
            return finish(op, -ECANCELED, op->what + ": cancelled");
        if (status < 0)
            return finish(op, status, op->what + ": " + uv_strerror(status));
        if (res->timed_out || res->term_signal)
            return finish(op, res->timed_out ? -ETIMEDOUT : -EIO,
                          op->what + ": " + describe_failure(*res));
        Step next = std::move(op->next);
        next(op, *res);
    } catch (...) {
        finish(op, -ENOMEM, op->what + ": out of memory");
    }
}

// Start `git ARGS...`; `next` gets its result unless it could not run.
int run_git(Op *op, std::string what, std::vector<std::string> args, Step next)
{
    Self *s = op->self;
    op->what = std::move(what);
    op->argv = std::move(args);
    op->argv.insert(op->argv.begin(), s->git);
    std::vector<const char *> argv;
    for (const std::string &a : op->argv)
        argv.push_back(a.c_str());
    argv.push_back(nullptr);
    kiln_spawn_request req = {argv.data(), nullptr, s->envp.data(), s->timeout_ms, 0};
    op->next = std::move(next);
    return s->host->spawn(s->host, &req, on_spawned, op, &op->proc);
}

// run_git from inside a callback, where failing to start ends the operation.
void chain(Op *op, std::string what, std::vector<std::string> args, Step next)
{
    std::string w = what;
    int rc = run_git(op, std::move(what), std::move(args), std::move(next));
    if (rc < 0)
        finish(op, rc, w + ": cannot start git: " + uv_strerror(rc));
}

// True when git exited 0; otherwise ends the operation with why.
bool succeeded(Op *op, const kiln_spawn_result &r)
{
    if (r.exit_status == 0)
        return true;
    finish(op, -EIO, op->what + ": " + describe_failure(r));
    return false;
}

// ---- the mirror: held by one operation at a time ----

void fs_step(Op *op, int rc)
{
    if (rc < 0)
        finish(op, rc, "cache dir " + op->cache_dir + ": " + uv_strerror(rc));
}

void on_mirror_stat(uv_fs_t *req) noexcept
{
    Op *op = static_cast<Op *>(req->data);
    int rc = static_cast<int>(req->result);
    uv_fs_req_cleanup(req);
    if (op->cancelled)
        return finish(op, -ECANCELED, "cancelled");
    if (rc == 0)
        return op->after_mirror(op);
    if (rc != UV_ENOENT)
        return finish(op, rc, "mirror " + op->mirror + ": " + uv_strerror(rc));
    chain(op, "init " + op->mirror, {"init", "-q", "--bare", "--", op->mirror},
          [](Op *o, const kiln_spawn_result &r) {
              if (succeeded(o, r))
                  o->after_mirror(o);
          });
}

// The cache dir must be ours and not writable by others: a mirror another
// user can swap would feed us their commits.
void on_cache_lstat(uv_fs_t *req) noexcept
{
    Op *op = static_cast<Op *>(req->data);
    int rc = static_cast<int>(req->result);
    uv_stat_t st = req->statbuf;
    uv_fs_req_cleanup(req);
    if (op->cancelled)
        return finish(op, -ECANCELED, "cancelled");
    if (rc < 0)
        return fs_step(op, rc);
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & S_IWOTH))
        return finish(op, -EPERM,
                      "cache dir " + op->cache_dir +
                          ": not a directory of ours closed to other users, refusing it");
    fs_step(op, uv_fs_stat(op->self->host->loop, &op->fs, op->mirror.c_str(), on_mirror_stat));
}

// mkdir -p of the cache dir, one component per thread-pool request.  An
// error on a parent is ignored (it may exist but be unwritable): the
// final lstat decides.
void on_mkdir(uv_fs_t *req) noexcept
{
    Op *op = static_cast<Op *>(req->data);
    int rc = static_cast<int>(req->result);
    uv_fs_req_cleanup(req);
    if (op->cancelled)
        return finish(op, -ECANCELED, "cancelled");
    bool last = ++op->mkdir_at >= op->mkdirs.size();
    if (rc < 0 && rc != UV_EEXIST && last)
        return fs_step(op, rc);
    uv_loop_t *loop = op->self->host->loop;
    if (!last)
        return fs_step(op, uv_fs_mkdir(loop, &op->fs, op->mkdirs[op->mkdir_at].c_str(), 0700,
                                       on_mkdir));
    fs_step(op, uv_fs_lstat(loop, &op->fs, op->cache_dir.c_str(), on_cache_lstat));
}

// First step once the mirror is held: make sure it exists.  0 or -errno.
int start_mirror(Op *op)
{
    op->fs.data = op;
    op->mkdirs = path_prefixes(op->cache_dir);
    op->mkdir_at = 0;
    if (op->mkdirs.empty())
        return -EINVAL;
    return uv_fs_mkdir(op->self->host->loop, &op->fs, op->mkdirs[0].c_str(), 0700, on_mkdir);
}

// Hold the mirror and start, or queue behind its holder.  0 or -errno
// (then nothing was started and the op holds nothing).
int acquire_mirror(Op *op)
{
    auto it = op->self->mirrors.find(op->mirror);
    if (it != op->self->mirrors.end()) {
        it->second.push_back(op);
        op->waiting = true;
        return 0;
    }
    op->self->mirrors.emplace(op->mirror, std::deque<Op *>());
    op->holds_mirror = true;
    int rc = start_mirror(op);
    if (rc < 0) {
        op->holds_mirror = false;
        op->self->mirrors.erase(op->mirror);
    }
    return rc;
}

void release_mirror(Op *op)
{
    op->holds_mirror = false;
    auto it = op->self->mirrors.find(op->mirror);
    if (it == op->self->mirrors.end())
        return;
    if (it->second.empty()) {
        op->self->mirrors.erase(it);
        return;
    }
    Op *next = it->second.front();
    it->second.pop_front();
    next->waiting = false;
    next->holds_mirror = true;
    int rc = start_mirror(next);
    if (rc < 0)
        finish(next, rc, "cache dir " + next->cache_dir + ": " + uv_strerror(rc));
}

// ---- poll ----

void poll_rev_list(Op *op, const kiln_spawn_result &r)
{
    if (!succeeded(op, r))
        return;
    op->commits.clear();
    for (const std::string &line : output_lines(r))
        if (is_commit_id(line))
            op->commits.push_back(line);
    // We asked for max_commits + 1: one more means older ones were left out.
    if (op->commits.size() > op->max_commits) {
        op->commits.erase(op->commits.begin(),
                          op->commits.end() - static_cast<long>(op->max_commits));
        op->truncated = 1;
    }
    if (op->commits.empty())
        op->commits.push_back(op->head);
    finish(op, 0, "");
}

void poll_is_ancestor(Op *op, const kiln_spawn_result &r)
{
    if (r.exit_status != 0) {
        // 1: force-pushed past `since`; other: `since` unknown here.  Both
        // mean the caller's history no longer leads to head.
        op->since_found = 0;
        op->commits = {op->head};
        return finish(op, 0, "");
    }
    // --max-count applies before --reverse: the newest N+1, oldest first.
    chain(op, "rev-list " + op->since + ".." + op->head,
          {"-C", op->mirror, "rev-list", "--first-parent", "--reverse",
           "--max-count=" + std::to_string(uint64_t(op->max_commits) + 1),
           op->since + ".." + op->head, "--"},
          poll_rev_list);
}

void poll_fetch(Op *op)
{
    chain(op, "fetch " + redact_url(op->url),
          {"-c", kForegroundGc, "-C", op->mirror, "fetch", "-q", "--prune", "--no-tags", "--", op->url,
           "+refs/heads/" + op->branch + ":refs/heads/" + op->branch},
          [](Op *o, const kiln_spawn_result &r) {
              if (succeeded(o, r))
                  chain(o, "merge-base " + o->since + " " + o->head,
                        {"-C", o->mirror, "merge-base", "--is-ancestor", o->since, o->head},
                        poll_is_ancestor);
          });
}

void poll_ls_remote(Op *op, const kiln_spawn_result &r)
{
    if (!succeeded(op, r))
        return;
    const std::string ref = "refs/heads/" + op->branch;
    for (const std::string &line : output_lines(r)) {
        size_t tab = line.find('\t');
        if (tab != std::string::npos && line.compare(tab + 1, std::string::npos, ref) == 0 &&
            is_commit_id(line.substr(0, tab)))
            op->head = line.substr(0, tab);
    }
    if (op->head.empty() || op->since.empty() || op->head == op->since) {
        if (!op->head.empty() && op->since.empty())
            op->commits = {op->head};
        return finish(op, 0, "");
    }
    op->after_mirror = poll_fetch;
    int rc = acquire_mirror(op);
    if (rc < 0)
        finish(op, rc, "cache dir " + op->cache_dir + ": " + uv_strerror(rc));
}

// The cache directory a request names (or the plugin's), and the URL's
// mirror in it.
void set_mirror(Op *op, const char *cache_dir)
{
    op->cache_dir = cache_dir && *cache_dir ? cache_dir : op->self->cache_dir;
    while (op->cache_dir.size() > 1 && op->cache_dir.back() == '/')
        op->cache_dir.pop_back();
    op->mirror = op->cache_dir + "/" + mirror_name(op->url);
}

int git_poll(void *self, const kiln_vcs_poll_request *req, kiln_vcs_poll_cb cb, void *arg,
             void **opp) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!req || !cb || !req->url || !*req->url || !req->branch ||
        !is_branch_name(req->branch) || req->max_commits == 0 ||
        (req->since && *req->since && !is_commit_id(req->since)))
        return -EINVAL;
    Op *op = new (std::nothrow) Op();
    if (!op)
        return -ENOMEM;
    return s->live.start(op, opp, [&](Op *o) {
        o->self = s;
        o->is_poll = true;
        o->poll_cb = cb;
        o->arg = arg;
        o->url = req->url;
        o->branch = req->branch;
        o->since = req->since ? req->since : "";
        o->max_commits = req->max_commits;
        set_mirror(o, req->cache_dir);
        return run_git(o, "ls-remote " + redact_url(o->url),
                       {"ls-remote", "--", o->url, "refs/heads/" + o->branch}, poll_ls_remote);
    });
}

// ---- prepare ----

void prepare_checkout(Op *op)
{
    // A clone, not `git worktree add`: a worktree keeps its metadata inside
    // the mirror (entries to prune once the runner deletes the workspace)
    // and its .git points into the mirror, so the tests could change it.
    // --shared borrows the mirror's objects through alternates (no copy)
    // while refs, index and config are the workspace's own.  The price: the
    // mirror must not prune those objects; unreachable ones go only after
    // gc.pruneExpire (two weeks), far beyond any job.  "--" after the
    // (validated) commit keeps it from being read as a path.  An empty
    // --template skips copying git's sample hooks: ~10 ms a job.
    chain(op, "clone " + op->mirror,
          {"clone", "-q", "--shared", "--no-checkout", "--template=", "--", op->mirror, op->workspace},
          [](Op *o, const kiln_spawn_result &r) {
              if (!succeeded(o, r))
                  return;
              release_mirror(o); // the rest only reads it
              chain(o, "checkout " + o->commit,
                    {"-C", o->workspace, "checkout", "-q", "--detach", o->commit, "--"},
                    [](Op *o2, const kiln_spawn_result &r2) {
                        if (succeeded(o2, r2))
                            finish(o2, 0, "");
                    });
          });
}

void prepare_have_commit(Op *op)
{
    chain(op, "cat-file " + op->commit,
          {"-C", op->mirror, "cat-file", "-e", op->commit + "^{commit}"},
          [](Op *o, const kiln_spawn_result &r) {
              if (r.exit_status == 0)
                  return prepare_checkout(o);
              // Not here yet: fetch every branch; only new objects come over.
              chain(o, "fetch " + redact_url(o->url),
                    {"-c", kForegroundGc, "-C", o->mirror, "fetch", "-q", "--no-tags", "--", o->url,
                     "+refs/heads/*:refs/heads/*"},
                    [](Op *o2, const kiln_spawn_result &r2) {
                        if (!succeeded(o2, r2))
                            return;
                        chain(o2, "cat-file " + o2->commit,
                              {"-C", o2->mirror, "cat-file", "-e", o2->commit + "^{commit}"},
                              [](Op *o3, const kiln_spawn_result &r3) {
                                  if (r3.exit_status != 0)
                                      return finish(o3, -ENOENT,
                                                    "commit " + o3->commit + " not found in " +
                                                        redact_url(o3->url));
                                  prepare_checkout(o3);
                              });
                    });
          });
}

int git_prepare(void *self, const kiln_vcs_prepare_request *req, kiln_done_cb cb, void *arg,
                void **opp) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!req || !cb || !req->url || !*req->url || !req->commit ||
        !is_commit_id(req->commit) || !req->workspace || !*req->workspace)
        return -EINVAL;
    Op *op = new (std::nothrow) Op();
    if (!op)
        return -ENOMEM;
    return s->live.start(op, opp, [&](Op *o) {
        o->self = s;
        o->done_cb = cb;
        o->arg = arg;
        o->url = req->url;
        o->commit = req->commit;
        o->workspace = req->workspace;
        set_mirror(o, req->cache_dir);
        o->after_mirror = prepare_have_commit;
        return acquire_mirror(o);
    });
}

// ---- lifecycle ----

void git_cancel(void *self, void *opp) noexcept
{
    Self *s = static_cast<Self *>(self);
    Op *op = s->live.running(opp);
    if (!op || op->cancelled)
        return;
    op->cancelled = true;
    if (op->proc) {
        s->host->kill_process(s->host, op->proc); // on_spawned finishes it
    } else if (op->waiting) {
        // Queued behind another op: nothing of ours runs, so finish from a
        // zero timer (never from inside cancel itself).
        std::deque<Op *> &q = s->mirrors[op->mirror];
        for (auto it = q.begin(); it != q.end(); ++it)
            if (*it == op) {
                q.erase(it);
                break;
            }
        op->waiting = false;
        uv_timer_init(s->host->loop, &op->timer);
        op->timer.data = op;
        op->timer_used = true;
        uv_timer_start(&op->timer,
                       [](uv_timer_t *t) {
                           finish(static_cast<Op *>(t->data), -ECANCELED, "cancelled");
                       },
                       0, 0);
    } // else a uv_fs request is in flight: its callback sees `cancelled`
}

int git_init(const kiln_host *host, void **self) noexcept
{
    try {
        Self *s = new Self();
        s->host = host;
        const char *str = nullptr;
        int rc;
        if ((rc = host->config_string(host, "git", &str)) == 0 && *str)
            s->git = str;
        else if (rc == -EINVAL)
            goto bad;
        if ((rc = host->config_duration_ms(host, "timeout", &s->timeout_ms)) == -EINVAL)
            goto bad;
        if ((rc = host->config_string(host, "cache_dir", &str)) == 0 && *str) {
            s->cache_dir = str;
        } else if (rc == -EINVAL) {
            goto bad;
        } else {
            const char *tmp = getenv("TMPDIR");
            s->cache_dir = std::string(tmp && tmp[0] == '/' ? tmp : "/tmp") +
                           "/kiln-git-cache-" + std::to_string(getuid());
        }
        while (s->cache_dir.size() > 1 && s->cache_dir.back() == '/')
            s->cache_dir.pop_back();
        // Inherit the environment, minus what would point git at another
        // repository, and never let git wait for a password on a terminal.
        for (char **e = environ; *e; e++) {
            static const char *const drop[] = {"GIT_DIR=", "GIT_WORK_TREE=", "GIT_INDEX_FILE=",
                                               "GIT_OBJECT_DIRECTORY=", "GIT_COMMON_DIR=",
                                               "GIT_ALTERNATE_OBJECT_DIRECTORIES=",
                                               "GIT_NAMESPACE=", "GIT_TERMINAL_PROMPT=",
                                               "GIT_CEILING_DIRECTORIES="};
            bool keep = true;
            for (const char *d : drop)
                keep = keep && strncmp(*e, d, strlen(d)) != 0;
            if (keep)
                s->env.push_back(*e);
        }
        s->env.push_back("GIT_TERMINAL_PROMPT=0");
        for (const std::string &e : s->env)
            s->envp.push_back(e.c_str());
        s->envp.push_back(nullptr);
        *self = s;
        return 0;
    bad:
        delete s;
        return -EINVAL;
    } catch (...) {
        return -ENOMEM;
    }
}

void git_fini(void *self) noexcept { delete static_cast<Self *>(self); }

const char *const config_keys[] = {"git", "timeout", "cache_dir", nullptr};
const kiln_vcs_ops vcs_ops = {git_poll, git_prepare};
const kiln_plugin descriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_VCS, "git",
    "git repositories: poll branch heads, prepare workspaces from a local mirror",
    config_keys, git_init, git_fini, git_cancel, &vcs_ops, nullptr, nullptr, {}};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }
