#pragma once
// Running programs without blocking the loop: uv_spawn with an argv (never a
// shell), in a process group of its own so that a timeout or a cancel kills
// everything the program started, with stdout and stderr captured up to a
// limit.  This is the implementation behind kiln_host.spawn.
#include <sys/types.h>

#include <uv.h>

#include <kiln/plugin.h>

namespace kiln {

// The user a process runs as when the daemon (root) starts it for another
// one: libuv's setgid + setuid in the child, after setgroups(0, NULL), so
// none of the daemon's supplementary groups are kept.
struct SpawnUser {
    uid_t uid;
    gid_t gid;
};

// A copy of the output as it arrives, for the runner's live logs: called
// from the loop with each read of stdout (fd 1) or stderr (fd 2), before
// max_output applies, until the callback has run.  Not part of the plugin
// ABI: the host adds it to the spawns of the exec plugins.
struct SpawnTee {
    void (*on_output)(void *arg, int fd, const char *data, size_t len) = nullptr;
    void *arg = nullptr;
};

// 0 or -errno (then cb is never called).  cb runs exactly once, from the
// loop, after the process has exited and both pipes are drained.  `as`:
// run as that user (the caller must be root); NULL: as the daemon.  `tee`:
// see SpawnTee (copied; its arg must outlive the process).
int spawn_process(uv_loop_t *loop, const kiln_spawn_request *req, kiln_spawn_cb cb, void *arg,
                  kiln_process **proc, const SpawnUser *as = nullptr,
                  const SpawnTee *tee = nullptr);

// The pid of a process spawn_process() started, which is also its process
// group and session id; valid until its callback has run.
pid_t process_pid(const kiln_process *proc);

// SIGTERM to the whole process group, SIGKILL after a short grace; the
// callback still runs once, with cancelled = 1.
void kill_process(kiln_process *proc);

} // namespace kiln
