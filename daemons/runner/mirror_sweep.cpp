#include "mirror_sweep.hpp"

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace kiln {

namespace {

std::vector<std::string> subdirs(const std::string &dir)
{
    std::vector<std::string> out;
    DIR *d = opendir(dir.c_str());
    if (!d)
        return out;
    while (const dirent *e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..")
            continue;
        struct stat st;
        std::string path = dir + "/" + name;
        if (lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
            out.push_back(path);
    }
    closedir(d);
    return out;
}

// ".../cache/git/abc.git/objects" -> ".../cache/git/abc.git", resolved.
std::string mirror_of_alternate(std::string line)
{
    while (!line.empty() && (line.back() == '\n' || line.back() == '/'))
        line.pop_back();
    const std::string tail = "/objects";
    if (line.size() > tail.size() && line.compare(line.size() - tail.size(), tail.size(), tail) == 0)
        line.resize(line.size() - tail.size());
    char buf[PATH_MAX];
    return realpath(line.c_str(), buf) ? std::string(buf) : line;
}

std::string resolved(const std::string &path)
{
    char buf[PATH_MAX];
    return realpath(path.c_str(), buf) ? std::string(buf) : path;
}

} // namespace

std::set<std::string> mirrors_in_use(const std::string &workspaces_dir)
{
    std::set<std::string> out;
    for (const std::string &ws : subdirs(workspaces_dir)) {
        std::ifstream in(ws + "/.git/objects/info/alternates");
        std::string line;
        while (std::getline(in, line))
            if (!line.empty() && line[0] != '#')
                out.insert(mirror_of_alternate(line));
    }
    return out;
}

std::string remove_tree(const std::string &path)
{
    int rc = nftw(
        path.c_str(),
        [](const char *p, const struct stat *, int type, struct FTW *) noexcept -> int {
            int r = type == FTW_DP ? rmdir(p) : unlink(p);
            return r == 0 || errno == ENOENT ? 0 : errno;
        },
        32, FTW_DEPTH | FTW_PHYS);
    if (rc == 0)
        return "";
    return path + ": " + strerror(rc > 0 ? rc : errno);
}

SweepOutcome sweep_mirrors(const std::string &cache_root, int64_t now_s, uint64_t keep_s,
                           const std::set<std::string> &in_use)
{
    SweepOutcome out;
    for (const std::string &vcs_dir : subdirs(cache_root))
        for (const std::string &mirror : subdirs(vcs_dir)) {
            struct stat st;
            if (lstat(mirror.c_str(), &st) != 0)
                continue;
            if (now_s - static_cast<int64_t>(st.st_mtime) <= static_cast<int64_t>(keep_s))
                continue;
            if (in_use.count(resolved(mirror)))
                continue; // a kept or running workspace borrows its objects
            // Renamed first, so a half-removed mirror never looks usable.
            std::string trash = vcs_dir + "/.removing-" + std::to_string(getpid()) + "-" +
                                std::to_string(out.removed.size() + out.errors.size());
            if (rename(mirror.c_str(), trash.c_str()) != 0) {
                out.errors.push_back(mirror + ": " + strerror(errno));
                continue;
            }
            std::string why = remove_tree(trash);
            if (why.empty())
                out.removed.push_back(mirror);
            else
                out.errors.push_back(why);
        }
    return out;
}

} // namespace kiln
