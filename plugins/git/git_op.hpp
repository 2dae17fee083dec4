#pragma once
// The git plugin's state and operations, shared by its files:
//   git.cpp        the descriptor, init, fini, cancel
//   git_op.cpp     how an operation runs git and ends; the mirror it holds
//   git_steps.cpp  the steps of poll and prepare
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <kiln/plugin.h>
#include <uv.h>

#include "git_util.hpp"
#include "op_set.hpp"

namespace kiln_git {

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

// A fetch may start an automatic gc.  Detached, it would outlive the fetch,
// escape our per-mirror queue and timeout (or die half-way when the host
// kills the process group): run it in the foreground instead.
inline constexpr char kForegroundGc[] = "gc.autoDetach=false";

// ---- git_op.cpp ----

// The one place an operation ends: callback, then the op is freed.
void finish(Op *op, int status, const std::string &error);
// Start `git ARGS...`; `next` gets its result unless it could not run.
int run_git(Op *op, std::string what, std::vector<std::string> args, Step next);
// run_git from inside a callback, where failing to start ends the operation.
void chain(Op *op, std::string what, std::vector<std::string> args, Step next);
// True when git exited 0; otherwise ends the operation with why.
bool succeeded(Op *op, const kiln_spawn_result &r);
// Hold the mirror and start (op->after_mirror once it exists), or queue
// behind its holder.  0 or -errno (then nothing was started).
int acquire_mirror(Op *op);
void release_mirror(Op *op);
// The cache directory a request names (or the plugin's), and the URL's mirror in it.
void set_mirror(Op *op, const char *cache_dir);

// ---- git_steps.cpp: the vcs ops ----

int git_poll(void *self, const kiln_vcs_poll_request *req, kiln_vcs_poll_cb cb, void *arg,
             void **opp) noexcept;
int git_prepare(void *self, const kiln_vcs_prepare_request *req, kiln_done_cb cb, void *arg,
                void **opp) noexcept;

} // namespace kiln_git
