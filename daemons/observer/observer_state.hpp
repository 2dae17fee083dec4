#pragma once
// What kiln-observer remembers across restarts: per watched (repo, branch)
// the last commit the dispatcher acknowledged, in STATE_DIR/handed-over.
//
// The file is plain text so an operator can read it, and edit it to replay
// or skip history (remove a line: the branch starts again from its head):
//
//   # kiln-observer: last commit acknowledged per repo and branch
//   example main 0123456789abcdef0123456789abcdef01234567
//
// One "REPO BRANCH COMMIT" line per watch, separated by single spaces (repo
// names and branches are validated and cannot hold spaces); '#' lines and
// empty lines are ignored.  It is always replaced whole (write to a temp
// file, fsync, rename), so a reader sees the old or the new content, never a
// mix; anything else in it is corruption and stops start-up rather than
// silently forgetting what was handed over.
#include <map>
#include <memory>
#include <string>
#include <utility>

#include <uv.h>

namespace kiln {

// (repo, branch) → commit id.
using WatchKey = std::pair<std::string, std::string>;
using HandedOver = std::map<WatchKey, std::string>;

// The file's content for `state`, lines sorted by repo then branch.
std::string format_handed_over(const HandedOver &state);

// Parse a state file's content.  On failure returns false with `error` as
// "FILE:LINE: why" (wrong field count, invalid name, branch or commit id, a
// watch listed twice).  `file` only names the file in errors.
bool parse_handed_over(const std::string &text, const std::string &file, HandedOver &out,
                       std::string &error);

// The state file on disk: loaded once (blocking, before the loop runs),
// then saved off the loop.  Saves coalesce: while one write is in flight,
// later saves only replace the content of the one next write, so the disk
// sees at most two writes however fast the state changes, and the last
// write always carries the newest state.
class StateFile {
  public:
    StateFile(uv_loop_t *loop, std::string path);

    const std::string &path() const { return path_; }

    // Blocking.  A missing file is an empty state (nothing handed over
    // yet).  False with `error` ("FILE:LINE: why" or "FILE: strerror") when
    // the file is unreadable or corrupt.
    bool load(HandedOver &out, std::string &error) const;
    // Blocking: write `state` now (start-up, to prove the directory is
    // writable before anything depends on it).  0 or -errno.
    int write_now(const HandedOver &state) const;
    // Write `state` on the thread pool (see the class comment).  A failed
    // write is logged; the next save tries again.
    void save(const HandedOver &state);
    // True while a write is in flight or queued.
    bool busy() const { return writer_->in_flight; }

  private:
    // Shared with the write's completion, which may run after the
    // StateFile is gone (during the final drain of the loop).
    struct Writer {
        uv_loop_t *loop;
        std::string path;
        bool in_flight = false;
        bool queued = false;
        std::string next; // content of the queued write
        bool failing = false;
    };
    static void start_write(const std::shared_ptr<Writer> &w, std::string content);

    std::string path_;
    std::shared_ptr<Writer> writer_;
};

} // namespace kiln
