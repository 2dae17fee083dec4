// The steps of the git plugin's two operations, poll and prepare: each
// step is started from the callback of the previous one.
#include <cerrno>

#include "git_op.hpp"

namespace kiln_git {

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

int git_poll(void *self, const kiln_vcs_poll_request *req, kiln_vcs_poll_cb cb, void *arg,
             void **opp) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!req || !cb || !req->url || !*req->url || !req->branch ||
        !is_branch_name(req->branch) || req->max_commits == 0 ||
        (req->since && *req->since && !is_commit_id(req->since)))
        return -EINVAL;
    return s->live.start(opp, [&](Op *o) {
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
    return s->live.start(opp, [&](Op *o) {
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

} // namespace kiln_git
