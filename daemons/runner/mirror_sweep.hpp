#pragma once
// mirror_keep_days: the vcs plugins keep one mirror per repository under
// work_dir/cache/VCS/ (the git plugin touches a mirror's directory each time
// an operation takes it, so its mtime is its last use).  A sweep removes the
// mirrors unused for longer than the limit, except those a workspace still
// borrows objects from (git clone --shared: the workspace's
// .git/objects/info/alternates names the mirror).  Blocking file work: the
// Runner calls it on the thread pool, and starts no job while it runs.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace kiln {

struct SweepOutcome {
    std::vector<std::string> removed; // mirror directories
    std::vector<std::string> errors;  // one line each
};

// The mirror directories the workspaces under `workspaces_dir` borrow from.
std::set<std::string> mirrors_in_use(const std::string &workspaces_dir);
// Removes every directory cache_root/*/* last modified before now_s - keep_s,
// except those in `in_use`.
SweepOutcome sweep_mirrors(const std::string &cache_root, int64_t now_s, uint64_t keep_s,
                           const std::set<std::string> &in_use);
// rm -rf without following symlinks; "" or why not.
std::string remove_tree(const std::string &path);

} // namespace kiln
