// The record of running test process groups, and the start-up kill of what
// an earlier run left (group_record.hpp).
#include "group_record.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <climits>
#include <set>
#include <sstream>

#include <kiln/atomic_file.hpp>
#include <kiln/log.hpp>

namespace kiln {

namespace {

using ull = unsigned long long;

constexpr const char *kPrefix = "group-";
// Rounds of "find what is left, SIGKILL it" at start-up: a process may fork
// between the scan and its kill; its child is found by the next round.
constexpr int kKillRounds = 20;

bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

// Real uid from /proc/PID/status ("Uid:\treal\teffective\t...").
bool read_uid(const std::string &status, uid_t &uid)
{
    size_t at = status.find("\nUid:");
    if (at == std::string::npos)
        return false;
    char *end = nullptr;
    unsigned long v = strtoul(status.c_str() + at + 5, &end, 10);
    if (end == status.c_str() + at + 5)
        return false;
    uid = static_cast<uid_t>(v);
    return true;
}

bool read_proc(pid_t pid, ProcInfo &info)
{
    std::string stat, status;
    std::string base = "/proc/" + std::to_string(pid);
    return read_whole_file(base + "/stat", stat) == 0 && parse_proc_stat(stat, info) &&
           read_whole_file(base + "/status", status) == 0 && read_uid(status, info.uid);
}

} // namespace

std::string format_group_entry(const GroupEntry &e)
{
    return "kiln-runner test group " + std::to_string(e.pgid) + " start " +
           std::to_string(e.start) + " uid " + std::to_string(e.uid) + " boot " + e.boot + "\n";
}

bool parse_group_entry(const std::string &text, GroupEntry &e)
{
    std::istringstream in(text);
    std::string w[6], boot, extra;
    long long pgid = 0;
    unsigned long long start = 0, uid = 0;
    if (!(in >> w[0] >> w[1] >> w[2] >> pgid >> w[3] >> start >> w[4] >> uid >> w[5] >> boot) ||
        in >> extra)
        return false;
    if (w[0] != "kiln-runner" || w[1] != "test" || w[2] != "group" || w[3] != "start" ||
        w[4] != "uid" || w[5] != "boot" || pgid <= 1 || pgid > INT32_MAX || uid > UINT32_MAX)
        return false;
    e.pgid = static_cast<pid_t>(pgid);
    e.start = start;
    e.uid = static_cast<uid_t>(uid);
    e.boot = boot;
    return true;
}

bool parse_proc_stat(const std::string &text, ProcInfo &info)
{
    // "pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt
    //  majflt cmajflt utime stime cutime cstime priority nice num_threads
    //  itrealvalue starttime ...": comm is whatever the process named itself,
    // so fields are counted from its last ')'.
    size_t close = text.rfind(')');
    if (close == std::string::npos || close + 2 >= text.size())
        return false;
    long long pid = 0;
    if (sscanf(text.c_str(), "%lld (", &pid) != 1 || pid <= 0)
        return false;
    char state = 0;
    long long ppid, pgrp, session;
    int n = 0;
    if (sscanf(text.c_str() + close + 2, "%c %lld %lld %lld%n", &state, &ppid, &pgrp, &session,
               &n) != 4)
        return false;
    // Fields 7..21 skipped, then starttime (22).
    const char *p = text.c_str() + close + 2 + n;
    for (int field = 7; field <= 21; field++) {
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++;
    }
    char *end = nullptr;
    unsigned long long start = strtoull(p, &end, 10);
    if (end == p)
        return false;
    info.pid = static_cast<pid_t>(pid);
    info.ended = state == 'Z' || state == 'X';
    info.pgid = static_cast<pid_t>(pgrp);
    info.sid = static_cast<pid_t>(session);
    info.start = start;
    return true;
}

Leader leader_state(const GroupEntry &g, const std::vector<ProcInfo> &procs)
{
    for (const ProcInfo &p : procs)
        if (p.pid == g.pgid)
            return p.start == g.start ? Leader::ours : Leader::reused;
    return Leader::gone;
}

bool is_leftover(const GroupEntry &g, const ProcInfo &p, Leader leader)
{
    if (leader == Leader::reused || p.ended || p.start < g.start)
        return false;
    if (p.pgid != g.pgid && p.sid != g.pgid)
        return false;
    return leader == Leader::ours || p.uid == g.uid;
}

std::vector<ProcInfo> list_processes()
{
    std::vector<ProcInfo> out;
    DIR *d = opendir("/proc");
    if (!d)
        return out;
    while (struct dirent *ent = readdir(d)) {
        ProcInfo info;
        if (all_digits(ent->d_name) && read_proc(atoi(ent->d_name), info))
            out.push_back(info);
    }
    closedir(d);
    return out;
}

std::string current_boot_id()
{
    std::string id;
    if (read_whole_file("/proc/sys/kernel/random/boot_id", id) != 0)
        return "";
    while (!id.empty() && (id.back() == '\n' || id.back() == ' '))
        id.pop_back();
    return id;
}

GroupRecord::GroupRecord(uv_loop_t *loop, std::string dir)
    : shared_(std::make_shared<Shared>(Shared{loop, std::move(dir), current_boot_id(), {}}))
{
}

size_t GroupRecord::kill_leftovers()
{
    const std::string &dir = shared_->dir;
    std::vector<std::string> files;
    if (DIR *d = opendir(dir.c_str())) {
        while (struct dirent *ent = readdir(d))
            if (strncmp(ent->d_name, kPrefix, strlen(kPrefix)) == 0)
                files.push_back(ent->d_name);
        closedir(d);
    } else if (errno != ENOENT) {
        log_warning("%s: cannot read the record of test process groups: %s; tests a crashed "
                    "run left are not killed",
                    dir.c_str(), strerror(errno));
        return 0;
    }
    size_t total = 0;
    for (const std::string &name : files) {
        std::string path = dir + "/" + name, text;
        GroupEntry g;
        // A write torn by the crash (write_file_atomic's temporary file, or
        // anything unreadable) names nothing we could check.
        if (name.find(".tmp") != std::string::npos || read_whole_file(path, text) != 0 ||
            !parse_group_entry(text, g)) {
            if (name.find(".tmp") == std::string::npos)
                log_warning("%s: not a test process group record; removed", path.c_str());
            unlink(path.c_str());
            continue;
        }
        if (g.boot != shared_->boot) { // rebooted since: nothing of it runs
            unlink(path.c_str());
            continue;
        }
        size_t killed = 0;
        std::set<pid_t> seen, refused;
        Leader leader = Leader::gone;
        for (int round = 0; round < kKillRounds; round++) {
            std::vector<ProcInfo> procs = list_processes();
            if (round == 0)
                leader = leader_state(g, procs);
            else if (leader_state(g, procs) == Leader::reused)
                break; // the leader ended and its pid was taken meanwhile
            bool any = false;
            for (const ProcInfo &p : procs) {
                if (!is_leftover(g, p, leader) || p.pid == getpid())
                    continue;
                if (refused.count(p.pid))
                    continue;
                any = true;
                if (::kill(p.pid, SIGKILL) != 0 && errno != ESRCH) {
                    log_warning("test process %d (group %d): kill: %s", static_cast<int>(p.pid),
                                static_cast<int>(g.pgid), strerror(errno));
                    refused.insert(p.pid);
                } else if (seen.insert(p.pid).second) {
                    killed++;
                }
            }
            if (!any)
                break;
            usleep(10 * 1000); // SIGKILL takes effect asynchronously
        }
        if (killed)
            log_notice("leftover test process group %d of an earlier run (uid %u): killed %zu "
                       "process(es)",
                       static_cast<int>(g.pgid), static_cast<unsigned>(g.uid), killed);
        else
            log_debug("test process group %d of an earlier run: nothing left of it%s",
                      static_cast<int>(g.pgid),
                      leader == Leader::reused ? " (its pid is another process's now)" : "");
        total += killed;
        unlink(path.c_str());
    }
    return total;
}

void GroupRecord::add(pid_t pid, uid_t uid)
{
    ProcInfo info;
    std::string stat;
    if (read_whole_file("/proc/" + std::to_string(pid) + "/stat", stat) != 0 ||
        !parse_proc_stat(stat, info)) {
        log_warning("test process %d: cannot read /proc/%d/stat; not recorded (a crash of this "
                    "runner would leave it running)",
                    static_cast<int>(pid), static_cast<int>(pid));
        return;
    }
    GroupEntry e{pid, info.start, uid, shared_->boot};
    std::string path = shared_->dir + "/" + kPrefix + std::to_string(pid) + "-" +
                       std::to_string(info.start);
    shared_->pending[pid] = Pending{path};
    std::shared_ptr<Shared> shared = shared_;
    write_file_atomic_async(shared->loop, path, format_group_entry(e), [shared, pid, path](int rc) {
        auto it = shared->pending.find(pid);
        if (rc != 0)
            log_warning("%s: cannot record test process group %d: %s", path.c_str(),
                        static_cast<int>(pid), uv_strerror(rc));
        if (it == shared->pending.end() || it->second.path != path)
            return;
        it->second.writing = false;
        if (!it->second.ended)
            return;
        shared->pending.erase(it);
        if (rc == 0)
            remove_file_async(shared->loop, path, {});
    });
}

void GroupRecord::remove(pid_t pid)
{
    auto it = shared_->pending.find(pid);
    if (it == shared_->pending.end())
        return;
    if (it->second.writing) {
        it->second.ended = true;
        return;
    }
    std::string path = it->second.path;
    shared_->pending.erase(it);
    remove_file_async(shared_->loop, path, [path](int rc) {
        // Left behind, it is checked and removed at the next start.
        if (rc != 0 && rc != UV_ENOENT)
            log_warning("%s: cannot remove: %s", path.c_str(), uv_strerror(rc));
    });
}

} // namespace kiln
