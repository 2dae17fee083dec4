// The plugin loader: a good plugin loads, is initialised with its config
// and runs an operation; every broken one is refused with a message that
// names the plugin and the file.  Also the helper every bundled plugin
// keeps its running operations with (plugins/common/op_set.hpp).
#include <stdexcept>
#include <string>

#include "../../plugins/common/op_set.hpp" // before test.hpp: cmocka's macros clash

#include "test.hpp"

#include <cerrno>
#include <memory>

#include <kiln/config.hpp>
#include <kiln/plugin_loader.hpp>

using namespace kiln;

namespace {

const std::vector<std::string> kDirs = {KILN_TEST_FIXTURE_DIR};

// Load `name` expecting failure; return the message.
std::string refusal(const std::string &name, int kind, const ConfigTable &config = ConfigTable())
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::string message;
    try {
        load_plugin(&loop, kDirs, name, kind, config, "test");
        message = "(loaded)";
    } catch (const PluginError &e) {
        message = e.what();
    } catch (const ConfigError &e) {
        message = std::string("config: ") + e.what();
    }
    uv_loop_close(&loop);
    return message;
}

bool contains(const std::string &text, const std::string &part)
{
    if (text.find(part) != std::string::npos)
        return true;
    print_error("'%s' does not contain '%s'\n", text.c_str(), part.c_str());
    return false;
}

int done_calls;
int done_status;

// The fixture plugin's state: its host and the `answer` it read from config.
struct FixtureState {
    const kiln_host *host;
    int64_t answer;
};

void test_good_plugin_loads_and_runs(void **)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        ConfigTable config = parse_config_string("answer = 7\n", "fixture.toml");
        auto plugin = load_plugin(&loop, kDirs, "good", KILN_PLUGIN_REPORT, config, "test");
        assert_string_equal(plugin->name().c_str(), "good");
        assert_string_equal(plugin->path().c_str(), KILN_TEST_FIXTURE_DIR "/good.so");
        assert_int_equal(plugin->descriptor().abi, KILN_PLUGIN_ABI);
        assert_int_equal(static_cast<FixtureState *>(plugin->self())->answer, 7);

        kiln_report rep{};
        done_calls = 0;
        done_status = -1;
        void *op = nullptr;
        int rc = plugin->report().report(
            plugin->self(), &rep,
            [](void *, int status, const char *) {
                done_calls++;
                done_status = status;
            },
            nullptr, &op);
        assert_int_equal(rc, 0);
        assert_int_equal(done_calls, 0); // never from inside the start call
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(done_calls, 1);
        assert_int_equal(done_status, 0);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

void test_missing_file(void **)
{
    std::string m = refusal("absent", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "report plugin 'absent'"));
    assert_true(contains(m, KILN_TEST_FIXTURE_DIR "/absent.so"));
}

void test_not_an_elf_file(void **)
{
    std::string m = refusal("garbage", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "'garbage'"));
    assert_true(contains(m, "garbage.so: cannot load"));
}

void test_missing_entry_symbol(void **)
{
    std::string m = refusal("no_entry", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "no_entry.so"));
    assert_true(contains(m, "no entry symbol kiln_plugin_v1"));
}

void test_wrong_abi_in_descriptor(void **)
{
    std::string m = refusal("wrong_abi", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "wrong_abi.so"));
    assert_true(contains(m, "descriptor says ABI 99, this daemon loads ABI 1"));
}

void test_entry_of_another_abi(void **)
{
    std::string m = refusal("old_entry", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "old_entry.so"));
    assert_true(contains(m, "built for plugin ABI 0"));
}

void test_wrong_kind(void **)
{
    std::string m = refusal("wrong_kind", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "wrong_kind.so"));
    assert_true(contains(m, "is of kind exec, not report"));
}

void test_incomplete_ops(void **)
{
    std::string m = refusal("no_ops", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "no_ops.so"));
    assert_true(contains(m, "lacks report ops"));
}

// A plugin built against ABI 1.0's header (its descriptor ends before
// `events`) loads and has no event ops: it gets report() for final results.
void test_old_header_plugin_loads(void **)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        auto plugin = load_plugin(&loop, kDirs, "old_header", KILN_PLUGIN_REPORT, ConfigTable(),
                                  "test");
        assert_int_equal(plugin->descriptor().size, KILN_PLUGIN_SIZE_V1_0);
        assert_true(plugin->descriptor().size < sizeof(kiln_plugin));
        assert_null(plugin->events());
        assert_non_null(plugin->descriptor().report);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

// A report plugin with event ops may leave report NULL; its event() runs.
void test_events_only_plugin_loads(void **)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        auto plugin = load_plugin(&loop, kDirs, "events_only", KILN_PLUGIN_REPORT,
                                  ConfigTable(), "test");
        assert_null(plugin->descriptor().report);
        const kiln_report_event_ops *ops = plugin->events();
        assert_non_null(ops);
        assert_int_equal(ops->size, sizeof(kiln_report_event_ops));
        kiln_report rep{};
        rep.commit = "c0ffee";
        kiln_report_event ev{};
        ev.size = sizeof ev;
        ev.kind = KILN_EVENT_QUEUED;
        ev.report = &rep;
        done_calls = 0;
        done_status = -1;
        int rc = ops->event(
            plugin->self(), &ev,
            [](void *, const kiln_delivery *res) {
                done_calls++;
                done_status = res->status;
            },
            nullptr, nullptr);
        assert_int_equal(rc, 0);
        assert_int_equal(done_calls, 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        assert_int_equal(done_calls, 1);
        assert_int_equal(done_status, 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

void test_event_ops_without_event(void **)
{
    std::string m = refusal("bad_events", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "bad_events.so"));
    assert_true(contains(m, "event ops table lacks event()"));
}

void test_descriptor_shorter_than_abi_1_0(void **)
{
    std::string m = refusal("short", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "short.so"));
    assert_true(contains(m, "expected at least " + std::to_string(KILN_PLUGIN_SIZE_V1_0)));
}

void test_bad_name_is_not_a_path(void **)
{
    std::string m = refusal("../good", KILN_PLUGIN_REPORT);
    assert_true(contains(m, "not a plugin name"));
}

void test_unknown_config_key(void **)
{
    ConfigTable config = parse_config_string("answer = 1\nquestion = 2\n", "r.toml");
    std::string m = refusal("good", KILN_PLUGIN_REPORT, config);
    assert_true(contains(m, "r.toml:2:1"));
    assert_true(contains(m, "question"));
    assert_true(contains(m, "unknown key"));
}

void test_config_of_wrong_type_fails_init(void **)
{
    ConfigTable config = parse_config_string("answer = \"many\"\n", "r.toml");
    std::string m = refusal("good", KILN_PLUGIN_REPORT, config);
    assert_true(contains(m, "good.so: init failed"));
}

// A [[report]] table reaches its plugin without the dispatcher's routing
// keys `plugin` and `repos`: the plugin need not declare them (the fixture
// does not) and reads them as absent, while its own keys read as usual.
void test_report_table_without_routing_key(void **)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        ConfigTable config = parse_config_string(
            "plugin = \"good\"\nrepos = [\"a\"]\nanswer = 7\n", "d.toml");
        auto plugin = load_plugin(&loop, kDirs, "good", KILN_PLUGIN_REPORT, config, "test");
        const kiln_host *host = static_cast<FixtureState *>(plugin->self())->host;
        const char *name = nullptr;
        assert_int_equal(host->config_string(host, "plugin", &name), -ENOENT);
        assert_null(name);
        assert_int_equal(host->config_string(host, "repos", &name), -ENOENT);
        int64_t answer = 0;
        assert_int_equal(host->config_int(host, "answer", &answer), 0);
        assert_int_equal(answer, 7);
        assert_int_equal(host->config_string(host, nullptr, &name), -ENOENT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

// KILN_HOST_HAS: a field is there when the host's table is long enough to
// hold it, as an older host's shorter table would not be.
void test_host_has(void **)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        auto plugin = load_plugin(&loop, kDirs, "good", KILN_PLUGIN_REPORT, ConfigTable(), "test");
        const kiln_host *host = static_cast<FixtureState *>(plugin->self())->host;
        assert_int_equal(host->size, sizeof(kiln_host));
        assert_true(KILN_HOST_HAS(host, kill_process));
        kiln_host older = *host;
        older.size = offsetof(kiln_host, kill_process);
        assert_false(KILN_HOST_HAS(&older, kill_process));
        assert_true(KILN_HOST_HAS(&older, spawn));
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

// ---- kiln_ops::OpSet and guarded(), as the plugins use them ----

int ops_alive;

struct CountedOp {
    CountedOp() { ops_alive++; }
    ~CountedOp() { ops_alive--; }
};

// Start-or-delete: an op that starts is in the set and named through op_out;
// one whose start fails, or throws, is deleted and its error returned.
void test_op_set_start_or_delete(void **)
{
    ops_alive = 0;
    kiln_ops::OpSet<CountedOp> ops;
    void *named = nullptr;
    CountedOp *op = nullptr;
    assert_int_equal(ops.start(&named, [&](CountedOp *o) {
        op = o;
        return 0;
    }), 0);
    assert_non_null(op);
    assert_ptr_equal(named, op);
    assert_ptr_equal(ops.running(op), op);

    void *untouched = &ops_alive;
    assert_int_equal(ops.start(&untouched, [](CountedOp *) { return -EIO; }), -EIO);
    assert_ptr_equal(untouched, &ops_alive);
    assert_int_equal(ops.start(nullptr, [](CountedOp *) -> int { throw std::bad_alloc(); }),
                     -ENOMEM);
    assert_int_equal(ops_alive, 1); // only the op that started

    // cancel() of an op that has completed finds nothing.
    ops.remove(op);
    assert_null(ops.running(op));
    assert_true(ops.empty());
    delete op;
    assert_int_equal(ops_alive, 0);
}

// An exception in a loop callback ends the op with a reason instead of
// unwinding into libuv.
void test_guarded(void **)
{
    std::string why;
    auto fail = [&](const char *w) { why = w; };
    kiln_ops::guarded([] { throw std::bad_alloc(); }, fail);
    assert_string_equal(why.c_str(), "out of memory");
    kiln_ops::guarded([] { throw std::runtime_error("bad report"); }, fail);
    assert_string_equal(why.c_str(), "bad report");
    why.clear();
    kiln_ops::guarded([] {}, fail);
    assert_true(why.empty());
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_good_plugin_loads_and_runs),
        cmocka_unit_test(test_report_table_without_routing_key),
        cmocka_unit_test(test_host_has),
        cmocka_unit_test(test_op_set_start_or_delete),
        cmocka_unit_test(test_guarded),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_an_elf_file),
        cmocka_unit_test(test_missing_entry_symbol),
        cmocka_unit_test(test_wrong_abi_in_descriptor),
        cmocka_unit_test(test_entry_of_another_abi),
        cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_incomplete_ops),
        cmocka_unit_test(test_old_header_plugin_loads),
        cmocka_unit_test(test_events_only_plugin_loads),
        cmocka_unit_test(test_event_ops_without_event),
        cmocka_unit_test(test_descriptor_shorter_than_abi_1_0),
        cmocka_unit_test(test_bad_name_is_not_a_path),
        cmocka_unit_test(test_unknown_config_key),
        cmocka_unit_test(test_config_of_wrong_type_fails_init),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
