// The runner tests' fixture (runner_fixture.hpp).
#include "runner_fixture.hpp"

#include <sys/stat.h>

#include <kiln/config.hpp>

namespace kiln::test {

bool exists(const std::string &path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

void write_text(const std::string &path, const std::string &text, bool executable)
{
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << text;
        assert_true(out.good());
    }
    if (executable)
        std::filesystem::permissions(path, std::filesystem::perms::owner_exec |
                                               std::filesystem::perms::group_exec |
                                               std::filesystem::perms::others_exec,
                                     std::filesystem::perm_options::add);
}

std::string RunnerFixture::git(const std::vector<std::string> &args)
{
    std::vector<std::string> argv = {"git", "-C", repo, "-c", "user.name=t", "-c",
                                     "user.email=t@t"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string out = ::run(argv); // test.hpp
    return out.substr(0, out.find('\n'));
}

void RunnerFixture::make_repo(const std::vector<std::pair<std::string, std::string>> &tests)
{
    repo = tmp / "repo";
    std::filesystem::create_directories(repo + "/tests");
    git({"init", "-q", "-b", "main"});
    for (const auto &[name, text] : tests)
        write_text(repo + "/tests/" + name, text, true);
    git({"add", "-A"});
    git({"commit", "-q", "-m", "tests"});
    commit = git({"rev-parse", "HEAD"});
    assert_int_equal(commit.size(), 40);
}

void RunnerFixture::listen()
{
    server = std::make_unique<Server>(&loop, kDefaultMaxFrame);
    std::string error;
    int rc = server->listen("127.0.0.1:0", [this](std::shared_ptr<Connection> c) {
        c->start(
            [this](Connection &c, Message &&m) {
                if (auto *h = std::get_if<Hello>(&m))
                    return c.send(Hello{h->id, kProtocolVersion, "dispatcher", "fake", "", ""});
                if (auto *r = std::get_if<Register>(&m))
                    c.send(Ack{r->id, 0});
                if (auto *r = std::get_if<Result>(&m); r && ack)
                    c.send(Ack{r->id, r->job_id});
                if (auto *l = std::get_if<TestList>(&m); l && ack)
                    c.send(Ack{l->id, l->job_id});
                got.push_back(std::move(m));
            },
            [this](Connection &c, const std::string &) {
                if (conn.get() == &c)
                    conn.reset();
            });
        if (down)
            c->close("dispatcher down");
        else
            conn = c;
    }, error);
    assert_int_equal(rc, 0);
}

void RunnerFixture::start_runner(const std::string &extra)
{
    std::string text = "[runner]\ndispatcher = \"127.0.0.1:" + std::to_string(server->port()) +
                       "\"\nname = \"r1\"\nwork_dir = \"" + (tmp / "work") +
                       "\"\nplugin_dir = \"" + KILN_TEST_PLUGIN_DIR +
                       "\"\nvcs = \"git\"\nexec = \"script\"\nheartbeat_interval = \"100ms\"\n" +
                       extra;
    runner = std::make_unique<Runner>(&loop, RunnerConfig::from(parse_config_string(text,
                                                                                    "r.toml")));
    runner->start();
}

Assign RunnerFixture::assign(uint64_t job_id) const
{
    Assign a;
    a.job_id = job_id;
    a.spec.repo = "example";
    a.spec.url = repo;
    a.spec.branch = "main";
    a.spec.commit = commit;
    a.spec.exec = "script";
    a.spec.timeout_ms = 60000;
    return a;
}

bool RunnerFixture::run_until(const std::function<bool()> &done, uint64_t ms)
{
    struct Poll {
        uv_timer_t timer;
        const std::function<bool()> *done;
        uint64_t left;
        bool ok = false;
    } poll{{}, &done, ms / 10};
    uv_timer_init(&loop, &poll.timer);
    poll.timer.data = &poll;
    uv_timer_start(&poll.timer, [](uv_timer_t *t) {
        auto *p = static_cast<Poll *>(t->data);
        p->ok = (*p->done)();
        if (p->ok || --p->left == 0)
            uv_stop(t->loop);
    }, 10, 10);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close(reinterpret_cast<uv_handle_t *>(&poll.timer), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);
    return poll.ok;
}

void RunnerFixture::connected()
{
    assert_true(run_until([&] { return conn && !all<Heartbeat>().empty(); }));
}

void RunnerFixture::wait_heartbeat_lists(const std::vector<uint64_t> &jobs)
{
    assert_true(run_until([&] {
        auto hbs = all<Heartbeat>();
        return !hbs.empty() && hbs.back().jobs == jobs;
    }));
}

void RunnerFixture::stop()
{
    runner->stop();
    assert_true(run_until([&] { return runner->stopped(); }));
}

int runner_fixture_setup(void **state)
{
    auto *f = new RunnerFixture;
    if (f->tmp.path().empty()) {
        delete f;
        return -1;
    }
    uv_loop_init(&f->loop);
    *state = f;
    return 0;
}

int runner_fixture_teardown(void **state)
{
    auto *f = static_cast<RunnerFixture *>(*state);
    f->runner.reset();
    if (f->conn)
        f->conn->close("test over");
    f->conn.reset();
    f->server.reset();
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    delete f;
    return rc == 0 ? 0 : -1;
}

} // namespace kiln::test
