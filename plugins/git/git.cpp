// git — the vcs plugin: polls branch heads, lists new commits, prepares
// workspaces.  Every git command runs through host->spawn (argv, own process
// group, timeout); operations are chains of steps, each started from the
// callback of the previous one, so nothing blocks the loop.
//
// History needs a local copy: one bare mirror per URL under a cache
// directory, fetched by explicit URL each time (no remote config).  Two
// operations never run git on the same mirror at once: the first holds it,
// the others queue in `Self::mirrors` and start when it is released.
//
// Files: git_op.hpp (state, and which file holds what).
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "git_op.hpp"

extern char **environ;

namespace {

using namespace kiln_git;

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
        auto s = std::make_unique<Self>();
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
        *self = s.release();
        return 0;
    bad:
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
    config_keys, git_init, git_fini, git_cancel, &vcs_ops, nullptr, nullptr, {}, nullptr};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }

