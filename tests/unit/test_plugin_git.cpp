// The git plugin against real repositories in a temp dir: the plugin is
// loaded by the real loader and runs real git through the host's spawner.
// The tests build the upstream repository with git too, by argv (run() in
// test.hpp), never a shell.  Each test counts callbacks, runs the loop with
// a 20 s guard and ends with uv_loop_close() == 0 (in teardown).
#include <sys/stat.h>
#include <sys/time.h>
#include <filesystem> // before test.hpp: cmocka's macros clash with <ios>
#include <fstream>
#include <iterator>
#include <system_error>

#include "test.hpp"

#include <kiln/config.hpp>
#include <kiln/plugin_loader.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

// What one operation called back with.
struct Result {
    int calls = 0;
    int status = 1;
    std::string error;
    bool has_head = false;
    std::string head;
    std::vector<std::string> commits;
    int since_found = -1, truncated = -1;
};

struct State {
    std::string tmp, up; // temp dir, upstream repository
    std::string cache;
    uv_loop_t loop;
    std::unique_ptr<kiln::Plugin> plugin;
    Result r[3];
    std::unique_ptr<kiln::Plugin> other; // loaded with another config by one test
};

// git with these arguments (the repository named by -C), as author and
// committer "t"; its output.
std::string git(const std::vector<std::string> &args)
{
    std::vector<std::string> argv = {"git"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, {"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t",
                      "GIT_COMMITTER_EMAIL=t@t"});
}

// Commit to the upstream's main branch; returns the new commit id.
std::string commit(State *s, const std::string &content)
{
    std::ofstream(s->up + "/a.txt", std::ios::binary | std::ios::trunc) << content;
    git({"-C", s->up, "add", "a.txt"});
    git({"-C", s->up, "commit", "-q", "-m", content});
    return git({"-C", s->up, "rev-parse", "HEAD"});
}

void on_poll(void *arg, int status, const char *error, const kiln_vcs_poll_result *res)
{
    Result *r = static_cast<Result *>(arg);
    r->calls++;
    r->status = status;
    r->error = error ? error : "";
    if (res) {
        r->has_head = res->head != nullptr;
        r->head = res->head ? res->head : "";
        r->commits.assign(res->commits, res->commits + res->n_commits);
        r->since_found = res->since_found;
        r->truncated = res->truncated;
    }
}

void on_done(void *arg, int status, const char *error)
{
    Result *r = static_cast<Result *>(arg);
    r->calls++;
    r->status = status;
    r->error = error ? error : "";
}

// Run the loop until each of the first `n` results has its callback, or
// 20 s have passed (then the test fails).
void wait_for(State *s, int n)
{
    uv_timer_t guard;
    bool expired = false;
    uv_timer_init(&s->loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, [](uv_timer_t *t) { *static_cast<bool *>(t->data) = true; }, 20000, 0);
    auto pending = [&] {
        for (int i = 0; i < n; i++)
            if (s->r[i].calls == 0)
                return true;
        return false;
    };
    while (pending() && !expired)
        uv_run(&s->loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t *>(&guard), nullptr);
    uv_run(&s->loop, UV_RUN_DEFAULT); // let the spawner close its handles
    assert_false(expired);
    for (int i = 0; i < n; i++)
        assert_int_equal(s->r[i].calls, 1);
}

int poll(State *s, int i, const std::string &branch, const char *since, uint32_t max = 10)
{
    s->r[i] = Result();
    kiln_vcs_poll_request req = {s->up.c_str(), branch.c_str(), since, max, nullptr};
    void *op = nullptr;
    return s->plugin->vcs().poll(s->plugin->self(), &req, on_poll, &s->r[i], &op);
}

int prepare(State *s, int i, const std::string &c, const std::string &ws, void **op = nullptr)
{
    s->r[i] = Result();
    std::string w = s->tmp + "/" + ws, cache = s->tmp + "/runner-cache";
    kiln_vcs_prepare_request req = {s->up.c_str(), c.c_str(), w.c_str(), cache.c_str()};
    void *o = nullptr;
    return s->plugin->vcs().prepare(s->plugin->self(), &req, on_done, &s->r[i], op ? op : &o);
}

std::unique_ptr<kiln::Plugin> load(State *s, const std::string &config)
{
    try {
        return kiln::load_plugin(&s->loop, {KILN_TEST_PLUGIN_DIR}, "git", KILN_PLUGIN_VCS,
                                 kiln::parse_config_string(config, "test.toml"), "kiln-test");
    } catch (const std::exception &e) {
        fprintf(stderr, "load_plugin: %s\n", e.what());
        return nullptr;
    }
}

int setup(void **state)
{
    State *s = new State();
    char tmpl[] = "/tmp/kiln-test-git-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    s->tmp = tmpl;
    s->up = s->tmp + "/up";
    git({"init", "-q", "-b", "main", s->up});
    assert_int_equal(uv_loop_init(&s->loop), 0);
    std::string text = "cache_dir = \"" + s->tmp + "/poll-cache\"\ntimeout = \"30s\"\n";
    s->plugin = load(s, text);
    *state = s;
    return s->plugin ? 0 : -1;
}

int teardown(void **state)
{
    State *s = static_cast<State *>(*state);
    s->plugin.reset();
    s->other.reset();
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop);
    std::error_code ec;
    std::filesystem::remove_all(s->tmp, ec);
    delete s;
    assert_int_equal(rc, 0);
    return 0;
}

void test_poll_head_only(void **state)
{
    State *s = static_cast<State *>(*state);
    std::string a = commit(s, "one");
    assert_int_equal(poll(s, 0, "main", nullptr), 0);
    assert_int_equal(s->r[0].calls, 0); // never from inside the start call
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    assert_string_equal(S(s->r[0].head), S(a));
    assert_int_equal(s->r[0].commits.size(), 1);
    assert_string_equal(S(s->r[0].commits[0]), S(a));
    assert_int_equal(s->r[0].since_found, 1);

    assert_int_equal(poll(s, 0, "main", a.c_str()), 0); // nothing new
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    assert_int_equal(s->r[0].commits.size(), 0);
    assert_int_equal(s->r[0].since_found, 1);
}

void test_poll_new_commits(void **state)
{
    State *s = static_cast<State *>(*state);
    std::string a = commit(s, "one"), b = commit(s, "two"), c = commit(s, "three");
    assert_int_equal(poll(s, 0, "main", a.c_str()), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    assert_string_equal(S(s->r[0].head), S(c));
    assert_int_equal(s->r[0].commits.size(), 2);
    assert_string_equal(S(s->r[0].commits[0]), S(b)); // oldest first
    assert_string_equal(S(s->r[0].commits[1]), S(c));
    assert_int_equal(s->r[0].since_found, 1);
    assert_int_equal(s->r[0].truncated, 0);

    std::string d = commit(s, "four"); // the mirror exists now: an incremental fetch
    assert_int_equal(poll(s, 0, "main", a.c_str(), 2), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].commits.size(), 2); // the newest two of three
    assert_string_equal(S(s->r[0].commits[0]), S(c));
    assert_string_equal(S(s->r[0].commits[1]), S(d));
    assert_int_equal(s->r[0].truncated, 1);
}

void test_poll_force_push(void **state)
{
    State *s = static_cast<State *>(*state);
    commit(s, "one");
    std::string b = commit(s, "two");
    git({"-C", s->up, "checkout", "-q", "--orphan", "other"});
    git({"-C", s->up, "commit", "-q", "-m", "unrelated"});
    git({"-C", s->up, "branch", "-f", "main", "other"});
    git({"-C", s->up, "checkout", "-q", "main"});
    std::string x = git({"-C", s->up, "rev-parse", "main"});
    assert_int_equal(poll(s, 0, "main", b.c_str()), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    assert_string_equal(S(s->r[0].head), S(x));
    assert_int_equal(s->r[0].since_found, 0);
    assert_int_equal(s->r[0].commits.size(), 1);
    assert_string_equal(S(s->r[0].commits[0]), S(x));
}

void test_poll_missing_branch_and_bad_input(void **state)
{
    State *s = static_cast<State *>(*state);
    commit(s, "one");
    assert_int_equal(poll(s, 0, "gone", nullptr), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    assert_false(s->r[0].has_head);
    assert_int_equal(s->r[0].commits.size(), 0);

    assert_int_equal(poll(s, 0, "main", "not-a-commit"), -EINVAL);
    assert_int_equal(poll(s, 0, "--upload-pack=x", nullptr), -EINVAL);
    assert_int_equal(poll(s, 0, "a..b", nullptr), -EINVAL);
    assert_int_equal(poll(s, 0, "main", nullptr, 0), -EINVAL);
    assert_int_equal(s->r[0].calls, 0); // refused ops never call back

    s->up = s->tmp + "/nonexistent";
    assert_int_equal(poll(s, 0, "main", nullptr), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, -EIO);
    assert_true(s->r[0].error.find("ls-remote " + s->up + ": exit status 128: ") == 0);
}

void test_prepare(void **state)
{
    State *s = static_cast<State *>(*state);
    std::string a = commit(s, "one");
    assert_int_equal(prepare(s, 0, a, "ws1"), 0);
    assert_int_equal(s->r[0].calls, 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    assert_string_equal(S(git({"-C", s->tmp + "/ws1", "rev-parse", "HEAD"})), S(a));
    assert_string_equal(S(read_file(s->tmp + "/ws1/a.txt")), "one");

    std::string b = commit(s, "two"); // not in the mirror yet: fetched into it
    assert_int_equal(prepare(s, 0, b, "ws2"), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    assert_string_equal(S(git({"-C", s->tmp + "/ws2", "rev-parse", "HEAD"})), S(b));
    assert_string_equal(S(read_file(s->tmp + "/ws2/a.txt")), "two");
    assert_string_equal(S(git({"-C", s->tmp + "/ws2", "status", "--porcelain"})), "");
    auto mirrors = std::filesystem::directory_iterator(s->tmp + "/runner-cache");
    assert_int_equal(std::distance(begin(mirrors), end(mirrors)), 1); // one mirror

    assert_int_equal(prepare(s, 0, "HEAD", "ws3"), -EINVAL);
    assert_int_equal(prepare(s, 0, "--upload-pack=touch", "ws3"), -EINVAL);
    std::string upper = a;
    upper[0] = 'A', upper[1] = 'B';
    assert_int_equal(prepare(s, 0, upper, "ws3"), -EINVAL);
    assert_int_equal(s->r[0].calls, 0);

    assert_int_equal(prepare(s, 0, std::string(40, '0'), "ws3"), 0); // well-formed, absent
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, -ENOENT);
}

// Each use of a mirror touches its directory: its mtime is its last use,
// which kiln-runner's mirror sweep (mirror_keep_days) goes by.  A prepare of
// a commit the mirror has already fetches nothing, yet counts as a use.
void test_prepare_touches_mirror(void **state)
{
    State *s = static_cast<State *>(*state);
    std::string a = commit(s, "one");
    assert_int_equal(prepare(s, 0, a, "ws1"), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    auto mirrors = std::filesystem::directory_iterator(s->tmp + "/runner-cache");
    std::string mirror = begin(mirrors)->path().string();
    time_t old = time(nullptr) - 100 * 86400;
    struct timeval tv[2] = {{old, 0}, {old, 0}};
    assert_int_equal(utimes(mirror.c_str(), tv), 0);
    assert_int_equal(prepare(s, 0, a, "ws2"), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, 0);
    struct stat st;
    assert_int_equal(stat(mirror.c_str(), &st), 0);
    assert_true(st.st_mtime > time(nullptr) - 60);
}

// Three operations on one mirror at once: they queue, all complete.
void test_concurrent_on_one_mirror(void **state)
{
    State *s = static_cast<State *>(*state);
    std::string a = commit(s, "one"), b = commit(s, "two");
    assert_int_equal(prepare(s, 0, a, "ws1"), 0);
    assert_int_equal(prepare(s, 1, b, "ws2"), 0);
    s->r[2] = Result();
    s->cache = s->tmp + "/runner-cache"; // the same mirror as the prepares
    kiln_vcs_poll_request req = {s->up.c_str(), "main", a.c_str(), 10, s->cache.c_str()};
    void *op = nullptr;
    assert_int_equal(s->plugin->vcs().poll(s->plugin->self(), &req, on_poll, &s->r[2], &op), 0);
    wait_for(s, 3);
    assert_int_equal(s->r[0].status, 0);
    assert_int_equal(s->r[1].status, 0);
    assert_int_equal(s->r[2].status, 0);
    assert_int_equal(s->r[2].commits.size(), 1);
    assert_string_equal(S(s->r[2].commits[0]), S(b));
    assert_string_equal(S(git({"-C", s->tmp + "/ws2", "rev-parse", "HEAD"})), S(b));
}

// Cancelling a running prepare kills its git; cancelling one queued behind
// it finishes it without running anything.  Each calls back once.
void test_cancel(void **state)
{
    State *s = static_cast<State *>(*state);
    std::string a = commit(s, "one");
    void *op0 = nullptr, *op1 = nullptr;
    assert_int_equal(prepare(s, 0, a, "ws1", &op0), 0);
    assert_int_equal(prepare(s, 1, a, "ws2", &op1), 0);
    s->plugin->cancel(op1);
    s->plugin->cancel(op0);
    assert_int_equal(s->r[0].calls + s->r[1].calls, 0);
    wait_for(s, 2);
    assert_int_equal(s->r[0].status, -ECANCELED);
    assert_int_equal(s->r[1].status, -ECANCELED);

    assert_int_equal(poll(s, 0, "main", nullptr), 0);
    wait_for(s, 1); // the mirror is free again
    assert_int_equal(s->r[0].status, 0);
}

// A git that hangs: cancel kills it (its whole process group), the timeout
// too; a git that cannot be started refuses the operation.
void test_cancel_running_and_timeout(void **state)
{
    State *s = static_cast<State *>(*state);
    const std::string slowgit = s->tmp + "/slowgit";
    std::ofstream(slowgit) << "#!/bin/sh\nsleep 30\n";
    std::filesystem::permissions(slowgit, std::filesystem::perms::owner_exec,
                                 std::filesystem::perm_options::add);
    s->plugin = load(s, "git = \"" + s->tmp + "/slowgit\"\ntimeout = \"300ms\"\n");
    assert_non_null(s->plugin.get());
    s->r[0] = Result();
    kiln_vcs_poll_request req = {s->up.c_str(), "main", nullptr, 10, nullptr};
    void *op = nullptr;
    assert_int_equal(s->plugin->vcs().poll(s->plugin->self(), &req, on_poll, &s->r[0], &op), 0);
    s->plugin->cancel(op);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, -ECANCELED);

    assert_int_equal(poll(s, 0, "main", nullptr), 0);
    wait_for(s, 1);
    assert_int_equal(s->r[0].status, -ETIMEDOUT);
    assert_true(s->r[0].error.find(": timed out after ") != std::string::npos);

    s->other = load(s, "git = \"" + s->tmp + "/no-such-git\"\n");
    assert_non_null(s->other.get());
    req.url = s->up.c_str();
    assert_int_equal(s->other->vcs().poll(s->other->self(), &req, on_poll, &s->r[1], &op), -ENOENT);
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_poll_head_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_new_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_force_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_missing_branch_and_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_touches_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_on_one_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_running_and_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
