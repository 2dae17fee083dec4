#pragma once
// A job that filled work_dir's file system: whatever step hit ENOSPC (git
// preparing the workspace, a test writing its output) failed for want of
// space, not because of the commit, so the job ends `error` with a reason
// naming the disk rather than `failed`.  The runner itself goes on (its
// spool writes fail softly, see Runner::on_spooled).
#include <string>

#include <kiln/messages.hpp>

namespace kiln {

// When r did not pass and its error, log or a test's message says the
// device is full (strerror(ENOSPC), as git, Python and the C library word
// it): outcome error, error "runner NAME: no space left in work_dir DIR
// (...)" with the original reason after it.  True when it changed r.
bool mark_disk_full(Result &r, const std::string &runner, const std::string &work_dir);

} // namespace kiln
