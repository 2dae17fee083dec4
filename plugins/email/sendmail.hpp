#pragma once
// Piping one message into sendmail(8): the program started with uv_spawn by
// argv (never a shell) in a process group of its own, the message written
// to its stdin, its stdout and stderr captured (bounded) for the error
// line, and a timeout that kills the whole group.  The host's spawn has no
// stdin, hence this; it would shrink to a call if host->spawn grew a
// `stdin` buffer in struct kiln_spawn_request.
#include <cstdint>
#include <string>
#include <vector>

#include <uv.h>

namespace kiln_sendmail {

// status 0: exit status 0 (the MTA took the message).  Otherwise -errno
// and a one-line reason: -ENOENT/-EACCES (cannot run it), -EAGAIN (exit
// status != 0: "<program> exited with status N: <first line of stderr>"),
// -ETIMEDOUT, -EIO (killed by a signal), -ECANCELED.
using DoneFn = void (*)(void *arg, int status, const std::string &error);

struct Run; // one running (or ending) sendmail; frees itself

// Starts argv (argv[0] a path, or a name looked up in PATH).  The callback
// runs exactly once, later, from the loop, even when the program cannot be
// started.  Returns 0, or -ENOMEM/-EINVAL (then no callback).
int start(uv_loop_t *loop, const std::vector<std::string> &argv, std::string message,
          uint64_t timeout_ms, DoneFn done, void *arg, Run **run) noexcept;

// Kill its process group; the callback runs once, later, with -ECANCELED
// (or its real result when it had already ended).  A run whose callback
// has run is not touched: do not call this after it.
void cancel(Run *run) noexcept;

} // namespace kiln_sendmail
