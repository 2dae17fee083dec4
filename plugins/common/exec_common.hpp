#pragma once
// Small pieces the exec plugins (unittest, script, ctest) share.  Header-only
// because a plugin links nothing of Kiln: each .so gets its own copy.
#include <cerrno>
#include <new>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <kiln/plugin.h>

#include "op_set.hpp"

namespace kiln_exec {

// One test's result, owning its strings; kiln_test_result only borrows.
struct TestRecord {
    std::string name;
    int outcome = KILN_PASSED;
    uint64_t duration_ms = 0;
    std::string message; // empty: no message (handed over as NULL)
};

// The borrowed view a kiln_exec_result hands to the host.  Valid as long as
// `records` is neither modified nor destroyed.
inline std::vector<kiln_test_result> result_view(const std::vector<TestRecord> &records)
{
    std::vector<kiln_test_result> view;
    view.reserve(records.size());
    for (const TestRecord &r : records)
        view.push_back({r.name.c_str(), r.outcome, r.duration_ms,
                        r.message.empty() ? nullptr : r.message.c_str()});
    return view;
}

// Outcome of a whole run from its tests, when nothing stopped it early:
// FAILED if any test failed or errored, PASSED otherwise.
inline int overall_outcome(const std::vector<TestRecord> &records)
{
    for (const TestRecord &r : records)
        if (r.outcome == KILN_FAILED || r.outcome == KILN_ERROR)
            return KILN_FAILED;
    return KILN_PASSED;
}

inline std::string join_path(const std::string &a, const std::string &b)
{
    if (a.empty() || (!b.empty() && b[0] == '/'))
        return b;
    return a.back() == '/' ? a + b : a + "/" + b;
}

// "tests directory 'tests' not found in workspace" and friends, from the
// errno of the stat/scandir of that directory.
inline std::string tests_dir_error(const std::string &tests_dir, int status)
{
    if (status == UV_ENOENT)
        return "tests directory '" + tests_dir + "' not found in workspace";
    if (status == UV_ENOTDIR)
        return "tests directory '" + tests_dir + "' is not a directory";
    return "tests directory '" + tests_dir + "': " + uv_strerror(status);
}

inline std::string describe_exit(const kiln_spawn_result &res)
{
    if (res.term_signal != 0)
        return "killed by signal " + std::to_string(res.term_signal);
    return "exit status " + std::to_string(res.exit_status);
}

// Copies the borrowed `only` list of a request; false when it is present but
// empty (NULL means "all"; an empty shard is a caller bug, refused with -EINVAL).
inline bool copy_only(const kiln_exec_request &req, std::vector<std::string> &only)
{
    if (req.only == nullptr)
        return true;
    if (req.n_only == 0)
        return false;
    for (size_t i = 0; i < req.n_only; i++)
        only.emplace_back(req.only[i] ? req.only[i] : "");
    return true;
}

inline void append_line(std::string &log, const char *data, size_t len)
{
    log.append(data, len);
    if (len > 0 && data[len - 1] != '\n')
        log += '\n';
}

// The exec ops' run and list entry points, alike in every exec plugin: a new
// Op of the plugin's own type holding the callback, started through the
// plugin's `ops` set (start-or-delete, see op_set.hpp) by its Start(), which
// fills in and begins the op.  No exception leaves.
template <class Plugin, class Op, int (*Start)(Plugin *, const kiln_exec_request *, Op *)>
int run_entry(void *self, const kiln_exec_request *req, kiln_exec_cb cb, void *arg,
              void **op_out) noexcept
{
    if (!cb)
        return -EINVAL;
    auto *pl = static_cast<Plugin *>(self);
    return pl->ops.start(op_out, [&](Op *op) {
        op->run_cb = cb;
        op->arg = arg;
        return Start(pl, req, op);
    });
}

template <class Plugin, class Op, int (*Start)(Plugin *, const kiln_exec_request *, Op *)>
int list_entry(void *self, const kiln_exec_request *req, kiln_list_cb cb, void *arg,
               void **op_out) noexcept
{
    if (!cb)
        return -EINVAL;
    auto *pl = static_cast<Plugin *>(self);
    return pl->ops.start(op_out, [&](Op *op) {
        op->list_mode = true;
        op->list_cb = cb;
        op->arg = arg;
        return Start(pl, req, op);
    });
}

} // namespace kiln_exec
