// min_free on a real Runner against the fake dispatcher (runner_fixture.hpp):
// a runner whose work_dir has less free space than min_free registers with
// 0 slots and a `paused` reason naming the disk; SIGHUP's reload with a
// small min_free registers its slots again, on the same connection.
#include <signal.h>

#include <string>

#include <kiln/config.hpp>

#include "runner_config.hpp"
#include "runner_fixture.hpp"

using namespace kiln;
using namespace kiln::test;

namespace {

std::string config(RunnerFixture *f, const std::string &min_free)
{
    return "[runner]\ndispatcher = \"127.0.0.1:" + std::to_string(f->server->port()) +
           "\"\nname = \"r1\"\nwork_dir = \"" + f->work("") + "\"\nplugin_dir = \"" +
           KILN_TEST_PLUGIN_DIR + "\"\nvcs = \"git\"\nexec = \"script\"\n" +
           "heartbeat_interval = \"100ms\"\nslots = 3\nmin_free = " + min_free + "\n";
}

void test_pause_and_resume(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    f->listen();
    f->start_runner("slots = 3\nmin_free = \"1000T\"\n");
    auto last = [f] { return f->all<Register>().back(); };
    assert_true(f->run_until([&] {
        return !f->all<Register>().empty() && !last().paused.empty();
    }));
    Register paused = last();
    assert_int_equal(paused.slots, 0);
    assert_true(paused.paused.find("low disk: ") == 0);
    assert_true(paused.paused.find("min_free is 1000.0 TiB") != std::string::npos);
    assert_true(f->runner->status().find("paused (low disk") == 0);

    size_t before = f->all<Register>().size();
    f->runner->reload(RunnerConfig::from(parse_config_string(config(f, "1024"), "r.toml"),
                                         geteuid(), false));
    assert_true(f->run_until([&] { return f->all<Register>().size() > before; }));
    assert_int_equal(last().slots, 3);
    assert_string_equal(S(last().paused), "");
    assert_true(f->runner->status().find("paused") == std::string::npos);
    f->stop();
}

} // namespace

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        RUNNER_FIXTURE_TEST(test_pause_and_resume),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
