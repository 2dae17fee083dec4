// The process spawner: output captured, exit status and signals reported,
// the whole process group killed on timeout and on cancel, a missing program
// refused at start with no callback.
#include "test.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include <kiln/spawn.hpp>

using namespace kiln;

namespace {

struct Outcome {
    int calls = 0;
    int status = -1;
    int64_t exit_status = -1;
    int term_signal = -1;
    int timed_out = -1;
    int cancelled = -1;
    int truncated = -1;
    std::string out, err;
    uint64_t duration_ms = 0;
};

void record(void *arg, int status, const kiln_spawn_result *res)
{
    auto *o = static_cast<Outcome *>(arg);
    o->calls++;
    o->status = status;
    if (res) {
        o->exit_status = res->exit_status;
        o->term_signal = res->term_signal;
        o->timed_out = res->timed_out;
        o->cancelled = res->cancelled;
        o->truncated = res->truncated;
        o->out.assign(res->out, res->out_len);
        o->err.assign(res->err, res->err_len);
        o->duration_ms = res->duration_ms;
    }
}

// Run argv to completion on a fresh loop; the loop must close clean.
Outcome run(std::vector<const char *> argv, uint64_t timeout_ms = 0, size_t max_output = 0,
            bool cancel_at_once = false)
{
    argv.push_back(nullptr);
    uv_loop_t loop;
    uv_loop_init(&loop);
    Outcome o;
    kiln_spawn_request req{};
    req.argv = argv.data();
    req.timeout_ms = timeout_ms;
    req.max_output = max_output;
    kiln_process *proc = nullptr;
    int rc = spawn_process(&loop, &req, record, &o, &proc);
    if (rc != 0)
        o.status = rc;
    else if (cancel_at_once)
        kill_process(proc);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return o;
}

void test_captures_stdout_stderr_and_status(void **)
{
    Outcome o = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.exit_status, 3);
    assert_int_equal(o.term_signal, 0);
    assert_int_equal(o.timed_out, 0);
    assert_string_equal(o.out.c_str(), "out\n");
    assert_string_equal(o.err.c_str(), "err\n");
}

void test_arguments_are_not_interpreted(void **)
{
    // argv, not a shell: the metacharacters arrive as text.
    Outcome o = run({"printf", "%s", "$(touch /tmp/kiln-never); `id`"});
    assert_int_equal(o.exit_status, 0);
    assert_string_equal(o.out.c_str(), "$(touch /tmp/kiln-never); `id`");
    assert_int_equal(access("/tmp/kiln-never", F_OK), -1);
}

void test_missing_program_fails_to_start(void **)
{
    Outcome o = run({"/nonexistent/kiln-program"});
    assert_int_equal(o.calls, 0);
    assert_int_equal(o.status, UV_ENOENT);
}

void test_output_is_bounded(void **)
{
    Outcome o = run({"head", "-c", "100000", "/dev/zero"}, 0, 1000);
    assert_int_equal(o.out.size(), 1000);
    assert_int_equal(o.truncated, 1);
}

// The runner's live-log tee: every byte of both streams, as it is read
// (before max_output applies), none after the callback.
void test_tee_sees_all_output(void **)
{
    struct Teed {
        std::string out, err;
        int calls_after_done = 0;
        Outcome o;
    } t;
    const char *argv[] = {"sh", "-c", "head -c 5000 /dev/zero; echo err >&2", nullptr};
    uv_loop_t loop;
    uv_loop_init(&loop);
    kiln_spawn_request req{};
    req.argv = argv;
    req.max_output = 1000;
    SpawnTee tee{[](void *arg, int fd, const char *data, size_t len) {
                     auto *t = static_cast<Teed *>(arg);
                     t->calls_after_done += t->o.calls;
                     (fd == 1 ? t->out : t->err).append(data, len);
                 },
                 &t};
    assert_int_equal(spawn_process(&loop, &req, record, &t.o, nullptr, nullptr, &tee), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(t.o.calls, 1);
    assert_int_equal(t.o.out.size(), 1000); // the capture is bounded
    assert_int_equal(t.o.truncated, 1);
    assert_true(t.out == std::string(5000, '\0')); // the tee is not
    assert_string_equal(t.err.c_str(), "err\n");
    assert_int_equal(t.calls_after_done, 0);
}

void test_timeout_kills_the_whole_group(void **)
{
    // The child leaves a grandchild holding the pipes: only a group kill ends both.
    Outcome o = run({"sh", "-c", "sleep 30 & sleep 30; echo unreachable"}, 300);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.timed_out, 1);
    assert_int_equal(o.term_signal, SIGTERM);
    assert_true(o.duration_ms >= 250);
    assert_true(o.duration_ms < 5000);
    assert_true(o.out.empty());
}

void test_cancel(void **)
{
    Outcome o = run({"sleep", "30"}, 0, 0, true);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.cancelled, 1);
    assert_int_equal(o.timed_out, 0);
    assert_int_equal(o.term_signal, SIGTERM);
}

void test_background_leftovers_do_not_hang(void **)
{
    // The leader exits at once; what it left in its group is stopped.
    Outcome o = run({"sh", "-c", "sleep 30 & echo started"}, 0);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.exit_status, 0);
    assert_string_equal(o.out.c_str(), "started\n");
    assert_true(o.duration_ms < 5000);
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_captures_stdout_stderr_and_status),
        cmocka_unit_test(test_arguments_are_not_interpreted),
        cmocka_unit_test(test_missing_program_fails_to_start),
        cmocka_unit_test(test_output_is_bounded),
        cmocka_unit_test(test_tee_sees_all_output),
        cmocka_unit_test(test_timeout_kills_the_whole_group),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_background_leftovers_do_not_hang),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
