#pragma once
// The runner's unit tests' one fixture: a real Runner (real git and script
// plugins) on a loop of its own, against a fake dispatcher listening on
// 127.0.0.1, with a git repository of test scripts in a temp dir.  The
// fake dispatcher answers hello and register, acks results and test lists
// while `ack` holds, and records everything else the runner sends.
//
// Build it in a cmocka setup (runner_fixture_setup) and free it in the
// teardown (runner_fixture_teardown, which fails when a handle is left on
// the loop): a failing assert skips destructors.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>

#include <kiln/messages.hpp>
#include <kiln/net.hpp>

#include "runner.hpp"
#include "test.hpp"

namespace kiln::test {

struct RunnerFixture {
    TempDir tmp{"kiln-test-runner"};
    uv_loop_t loop;
    std::string repo;   // the repository (tmp/repo) once make_repo() ran
    std::string commit; // its HEAD

    std::unique_ptr<Server> server;
    std::shared_ptr<Connection> conn; // the runner's connection, while it is up
    bool down = false;                // accept, then hang up at once
    bool ack = true;                  // ack results and test lists
    std::vector<Message> got;         // from the runner, in order (hello excluded)
    std::unique_ptr<Runner> runner;

    // Start the fake dispatcher on an ephemeral port.
    void listen();
    // A repository whose tests/ holds these executable files (name, text),
    // committed; sets repo and commit.
    void make_repo(const std::vector<std::pair<std::string, std::string>> &tests);
    // Run git in the repository (argv, no shell); its first line of output.
    std::string git(const std::vector<std::string> &args);
    // A Runner named r1 for the fake dispatcher, work dir tmp/work, the git
    // and script plugins, heartbeats every 100 ms, plus `extra` [runner]
    // lines ("slots = 2\n"); started.
    void start_runner(const std::string &extra = "");
    // An assign of the repository's commit to the script plugin (60 s timeout).
    Assign assign(uint64_t job_id) const;

    // Run the loop until `done` holds (true) or `ms` pass (false).
    bool run_until(const std::function<bool()> &done, uint64_t ms = 20000);
    // Let the loop run for `ms`.
    void spin(uint64_t ms) { run_until([] { return false; }, ms); }
    // Connected, registered, heartbeating.
    void connected();
    // Until the runner's last heartbeat lists exactly these jobs (running).
    void wait_heartbeat_lists(const std::vector<uint64_t> &jobs);
    // The runner's graceful stop, run until it has stopped.
    void stop();
    std::string work(const std::string &rel) const { return tmp / ("work/" + rel); }

    template <typename T> std::vector<T> all() const
    {
        std::vector<T> out;
        for (const auto &m : got)
            if (auto *x = std::get_if<T>(&m))
                out.push_back(*x);
        return out;
    }
    template <typename T> size_t index_of_first() const
    {
        for (size_t i = 0; i < got.size(); i++)
            if (std::holds_alternative<T>(got[i]))
                return i;
        return got.size();
    }
};

bool exists(const std::string &path);
// Write `text` to `path`, executable when asked (std::filesystem: no shell).
void write_text(const std::string &path, const std::string &text, bool executable = false);

// cmocka setup/teardown building and freeing a RunnerFixture in *state.
int runner_fixture_setup(void **state);
int runner_fixture_teardown(void **state);

} // namespace kiln::test

// A cmocka test entry with the fixture as its state.
#define RUNNER_FIXTURE_TEST(fn) \
    cmocka_unit_test_setup_teardown(fn, kiln::test::runner_fixture_setup, \
                                    kiln::test::runner_fixture_teardown)
