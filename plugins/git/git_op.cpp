// How a git operation runs git and ends, and the mirror it holds: one bare
// mirror per URL, used by one operation at a time (see git.cpp).
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "git_op.hpp"

namespace kiln_git {

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
    kiln_ops::guarded([&] {
        if (op->cancelled)
            return finish(op, -ECANCELED, op->what + ": cancelled");
        if (status < 0)
            return finish(op, status, op->what + ": " + uv_strerror(status));
        if (res->timed_out || res->term_signal)
            return finish(op, res->timed_out ? -ETIMEDOUT : -EIO,
                          op->what + ": " + describe_failure(*res));
        Step next = std::move(op->next);
        next(op, *res);
    }, [&](const char *why) { finish(op, -ENOMEM, op->what + ": " + why); });
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

// A mirror's mtime is its last use: kiln-runner removes mirrors unused for
// mirror_keep_days (kiln-runner(8), DISK).  Failing to touch it costs
// nothing now, so it is not an error.
void touch_mirror(Op *op)
{
    double now = static_cast<double>(time(nullptr));
    int rc = uv_fs_utime(op->self->host->loop, &op->fs, op->mirror.c_str(), now, now,
                         [](uv_fs_t *req) noexcept {
                             Op *o = static_cast<Op *>(req->data);
                             uv_fs_req_cleanup(req);
                             if (o->cancelled)
                                 return finish(o, -ECANCELED, "cancelled");
                             o->after_mirror(o);
                         });
    if (rc < 0)
        op->after_mirror(op);
}

void on_mirror_stat(uv_fs_t *req) noexcept
{
    Op *op = static_cast<Op *>(req->data);
    int rc = static_cast<int>(req->result);
    uv_fs_req_cleanup(req);
    if (op->cancelled)
        return finish(op, -ECANCELED, "cancelled");
    if (rc == 0)
        return touch_mirror(op);
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

// The cache directory a request names (or the plugin's), and the URL's
// mirror in it.
void set_mirror(Op *op, const char *cache_dir)
{
    op->cache_dir = cache_dir && *cache_dir ? cache_dir : op->self->cache_dir;
    while (op->cache_dir.size() > 1 && op->cache_dir.back() == '/')
        op->cache_dir.pop_back();
    op->mirror = op->cache_dir + "/" + mirror_name(op->url);
}

} // namespace kiln_git
