#pragma once
// The record of the test process groups a runner has running, one file per
// group in work_dir/groups, so that a runner started after a crash (SIGKILL,
// the OOM killer) kills what its predecessor left running before it takes a
// job.  Each test process starts in a session and process group of its own
// (spawn.hpp); while the runner lives it kills that group when the test ends
// or times out, but once the runner is dead nobody does: the tests run on,
// holding CPU, memory and ports, and write into a workspace that the next
// attempt of the job reuses.  kiln-runner(8), LEFTOVER TESTS.
//
// A record names the group by its leader's pid *and* start time, the user
// the tests run as and the boot they started in, so that a pid the kernel
// has since given to another process is never killed.
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

namespace kiln {

// One record file's content.
struct GroupEntry {
    pid_t pgid = 0;     // the leader's pid: the group and the session id
    uint64_t start = 0; // the leader's start time, clock ticks after boot (/proc/PID/stat)
    uid_t uid = 0;      // the user the tests run as
    std::string boot;   // /proc/sys/kernel/random/boot_id when it started
};

std::string format_group_entry(const GroupEntry &entry);
// False for anything but what format_group_entry writes.
bool parse_group_entry(const std::string &text, GroupEntry &entry);

// What the runner needs to know of one process.
struct ProcInfo {
    pid_t pid = 0, pgid = 0, sid = 0;
    uint64_t start = 0; // clock ticks after boot
    uid_t uid = 0;      // real uid
    bool ended = false; // a zombie: it has exited, only its parent's wait is missing
};

// Fills pid, ended, pgid, sid and start from the text of /proc/PID/stat (whose
// command name, in parentheses, may itself hold spaces and parentheses).
bool parse_proc_stat(const std::string &text, ProcInfo &info);

// What became of a recorded group's leader.  Linux keeps a pid allocated
// while any process has it as its process group or session id, so:
//  - ours: /proc/PGID is the leader, with the recorded start time;
//  - reused: /proc/PGID is another process: when the kernel gave it the pid,
//    nothing was left in our group or session; nothing of ours to kill;
//  - gone: the leader has exited; what is left of its group and session
//    may be ours (its children) or, after the pid was freed and reused by a
//    process that made a session of its own and exited, someone else's.
enum class Leader { ours, reused, gone };
Leader leader_state(const GroupEntry &g, const std::vector<ProcInfo> &procs);

// Whether process `p` is a leftover of the recorded group `g`: in its
// process group or session, started no earlier than its leader, not ended;
// when the leader is gone, also running as the recorded user (the tests'
// user runs nothing but tests, so a reused group of that user that started
// after ours is all that is left to confuse it with).
bool is_leftover(const GroupEntry &g, const ProcInfo &p, Leader leader);

class GroupRecord {
  public:
    // `dir`: where the record files go (created when the first is written).
    GroupRecord(uv_loop_t *loop, std::string dir);
    GroupRecord(const GroupRecord &) = delete;
    GroupRecord &operator=(const GroupRecord &) = delete;

    // Blocking (reads /proc and the record): call at start-up, before the
    // loop runs and before any job is taken.  SIGKILLs every process still
    // running of each group an earlier run recorded, logs what it killed,
    // and removes the records.  Returns how many processes it killed.
    size_t kill_leftovers();

    // `pid` was just started by us and not reaped yet (so /proc/PID is it):
    // record its group, on the thread pool (atomic_file).  Reading /proc is
    // not disk I/O; it happens here, while the pid is surely ours.
    void add(pid_t pid, uid_t uid);
    // That process has ended (and the spawner killed its group): remove its
    // record, once it is written if the write is still under way.
    void remove(pid_t pid);

    const std::string &dir() const { return shared_->dir; }

  private:
    struct Pending {
        std::string path;
        bool writing = true; // its write is on the thread pool
        bool ended = false;  // remove() came first: unlink once written
    };
    // Shared with the thread-pool callbacks, which may outlive this object.
    struct Shared {
        uv_loop_t *loop;
        std::string dir;
        std::string boot;
        std::map<pid_t, Pending> pending;
    };
    std::shared_ptr<Shared> shared_;
};

// The processes in /proc now (those that vanish while being read are left
// out); blocking.
std::vector<ProcInfo> list_processes();

// This boot's id; "" when it cannot be read.
std::string current_boot_id();

} // namespace kiln
