// ConfigTable: every error names file, line, column and dotted key path;
// unknown keys are reported; durations, string lists and ranges are checked.
// Each check catches the ConfigError inside error_of() and compares the
// whole message, so a test pins the exact line, column and key path.
// Drop-in files: test_config_dropins.cpp.
#include "test.hpp"

#include <kiln/config.hpp>

#include "config_error_of.hpp"

#include <cerrno>
#include <cstdio>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using kiln::ConfigError;
using kiln::ConfigTable;
using kiln::parse_config_string;

static void test_parse_error_position(void **)
{
    std::string err = error_of([] { parse_config_string("a = 1\nb = = 2\n", "x.toml"); });
    // toml++ reports the second '=' on line 2.
    assert_true(err.rfind("x.toml:2:5: ", 0) == 0);
    assert_true(err.size() > std::string("x.toml:2:5: ").size());
}

static void test_unreadable_file(void **)
{
    std::string err = error_of([] { kiln::load_config_file("/nonexistent/kiln.toml"); });
    assert_string_equal(S(err), "/nonexistent/kiln.toml: cannot read: No such file or directory");
    err = error_of([] { kiln::load_config_file("/"); });
    assert_string_equal(S(err), "/: cannot read: Is a directory");
}

static void test_load_file(void **)
{
    char path[] = "/tmp/kiln-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "[runner]\nslots = 4\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    ConfigTable root = kiln::load_config_file(path);
    unlink(path);
    assert_string_equal(S(root.file()), path);
    assert_int_equal(root.table("runner").integer("slots", 1, 1, 256), 4);
}

static void test_wrong_type(void **)
{
    ConfigTable root = parse_config_string("[runner]\nslots = \"many\"\nverbose = 1\n"
                                           "name = 3\n",
                                           "runner.toml");
    ConfigTable runner = root.table("runner");
    assert_string_equal(S(runner.path()), "runner");
    assert_string_equal(S(error_of([&] { runner.integer("slots", 1, 1, 256); })),
                        "runner.toml:2:9: runner.slots: expected an integer from 1 to 256, "
                        "got string");
    assert_string_equal(S(error_of([&] { runner.boolean("verbose", false); })),
                        "runner.toml:3:11: runner.verbose: expected true or false, got integer");
    assert_string_equal(S(error_of([&] { runner.string("name", "x"); })),
                        "runner.toml:4:8: runner.name: expected a string, got integer");
    assert_string_equal(S(error_of([&] { root.table("runner").table("slots"); })),
                        "runner.toml:2:9: runner.slots: expected a table, got string");
}

static void test_integer_range(void **)
{
    ConfigTable root = parse_config_string("low = 0\nhigh = 257\nok = 256\n", "r.toml");
    assert_string_equal(S(error_of([&] { root.integer("low", 1, 1, 256); })),
                        "r.toml:1:7: low: expected an integer from 1 to 256, got 0");
    assert_string_equal(S(error_of([&] { root.integer("high", 1, 1, 256); })),
                        "r.toml:2:8: high: expected an integer from 1 to 256, got 257");
    assert_int_equal(root.integer("ok", 1, 1, 256), 256);
    assert_int_equal(root.integer("absent", 7, 1, 256), 7);
}

static void test_unknown_keys(void **)
{
    ConfigTable root = parse_config_string("[runner]\nslots = 2\nzeta = 1\nslotz = 3\n"
                                           "name = \"r\"\n",
                                           "runner.toml");
    ConfigTable runner = root.table("runner");
    assert_int_equal(runner.integer("slots", 1, 1, 256), 2);
    runner.accept("name");
    // zeta comes first in the file although it sorts after slotz.
    assert_string_equal(S(error_of([&] { runner.reject_unknown_keys(); })),
                        "runner.toml:3:1: runner.zeta: unknown key");
    std::vector<std::string> unknown = runner.unknown_keys();
    assert_int_equal(unknown.size(), 2);
    assert_string_equal(S(unknown[0]), "runner.zeta");
    assert_string_equal(S(unknown[1]), "runner.slotz");
    // The root asked only for "runner", so it is clean; not recursive.
    assert_string_equal(S(error_of([&] { root.reject_unknown_keys(); })), "");
    // has() and a failed typed read both count as asking.
    runner.has("zeta");
    error_of([&] { runner.string("slotz", ""); });
    assert_string_equal(S(error_of([&] { runner.reject_unknown_keys(); })), "");
    assert_int_equal(runner.unknown_keys().size(), 0);
}

static void test_unknown_top_level_table(void **)
{
    ConfigTable root = parse_config_string("[runner]\nslots = 1\n\n[runer]\nx = 1\n", "r.toml");
    root.table("runner");
    assert_string_equal(S(error_of([&] { root.reject_unknown_keys(); })),
                        "r.toml:4:2: runer: unknown key");
}

static void test_array_of_tables(void **)
{
    ConfigTable root = parse_config_string("[[repo]]\nname = \"a\"\ninterval = \"5s\"\n\n"
                                           "[[repo]]\nname = \"b\"\ninterval = \"5 parsecs\"\n"
                                           "[repo.extra]\nlist = [\"x\", 2]\n",
                                           "observer.toml");
    std::vector<ConfigTable> repos = root.tables("repo");
    assert_int_equal(repos.size(), 2);
    assert_string_equal(S(repos[0].path()), "repo[0]");
    assert_string_equal(S(repos[1].path()), "repo[1]");
    assert_int_equal(repos[0].duration_ms("interval", 0), 5000);
    assert_string_equal(S(repos[1].required_string("name")), "b");
    assert_string_equal(S(error_of([&] { repos[1].duration_ms("interval", 0); })),
                        "observer.toml:7:12: repo[1].interval: expected a duration like \"5s\", "
                        "got \"5 parsecs\"");
    ConfigTable extra = repos[1].table("extra");
    assert_string_equal(S(extra.path()), "repo[1].extra");
    assert_string_equal(S(error_of([&] { extra.strings("list", {}); })),
                        "observer.toml:9:14: repo[1].extra.list[1]: expected a string, got integer");
    // Known keys are tracked per item: reading repo[1].name does not cover repo[0].
    assert_string_equal(S(error_of([&] { repos[0].reject_unknown_keys(); })),
                        "observer.toml:2:1: repo[0].name: unknown key");
    repos[0].accept("name");
    assert_string_equal(S(error_of([&] { repos[0].reject_unknown_keys(); })), "");

    // Nested arrays of tables get "a.b[i]" paths; [repo] instead of [[repo]] is refused.
    ConfigTable nested = parse_config_string("[a]\n[[a.b]]\nx = 1\n[[a.b]]\nx = true\n", "n.toml");
    std::vector<ConfigTable> bs = nested.table("a").tables("b");
    assert_int_equal(bs.size(), 2);
    assert_string_equal(S(error_of([&] { bs[1].integer("x", 0, 0, 9); })),
                        "n.toml:5:5: a.b[1].x: expected an integer from 0 to 9, got boolean");
    ConfigTable single = parse_config_string("[repo]\nname = \"a\"\n", "s.toml");
    std::string err = error_of([&] { single.tables("repo"); });
    assert_true(err.rfind("s.toml:1:", 0) == 0);
    assert_true(err.find("repo: expected an array of tables ([[repo]]), got table") !=
                std::string::npos);
    ConfigTable mixed = parse_config_string("report = [{dir = \"x\"}, 3]\n", "m.toml");
    assert_string_equal(S(error_of([&] { mixed.tables("report"); })),
                        "m.toml:1:24: report[1]: expected a table, got integer");
}

static void test_parse_duration(void **)
{
    struct {
        const char *text;
        bool ok;
        uint64_t ms;
    } cases[] = {
        {"250ms", true, 250},
        {"5s", true, 5000},
        {"10m", true, 600000},
        {"1h", true, 3600000},
        {"0s", true, 0},
        {"18446744073709551615ms", true, UINT64_MAX},
        {"18446744073709551616ms", false, 0}, // overflows the number
        {"18446744073709551615s", false, 0},  // overflows once scaled
        {"", false, 0},
        {"s", false, 0},
        {"5", false, 0},
        {"-5s", false, 0},
        {"+5s", false, 0},
        {" 5s", false, 0},
        {"5s ", false, 0},
        {"5 s", false, 0},
        {"5parsecs", false, 0},
        {"1.5s", false, 0},
        {"5S", false, 0},
        {"1h30m", false, 0},
    };
    for (const auto &c : cases) {
        std::optional<uint64_t> got = kiln::parse_duration_ms(c.text);
        if (got.has_value() != c.ok)
            fail_msg("parse_duration_ms(\"%s\"): expected %s", c.text, c.ok ? "ok" : "failure");
        if (c.ok && *got != c.ms)
            fail_msg("parse_duration_ms(\"%s\") = %llu", c.text, (unsigned long long)*got);
    }
}

static void test_duration_key(void **)
{
    ConfigTable root = parse_config_string("a = 3\nb = -3\nc = 1.5\nd = \"250ms\"\n", "d.toml");
    assert_int_equal(root.duration_ms("a", 0), 3000);
    assert_int_equal(root.duration_ms("d", 0), 250);
    assert_int_equal(root.duration_ms("absent", 42), 42);
    assert_string_equal(S(error_of([&] { root.duration_ms("b", 0); })),
                        "d.toml:2:5: b: expected a duration like \"5s\", got -3");
    assert_string_equal(S(error_of([&] { root.duration_ms("c", 0); })),
                        "d.toml:3:5: c: expected a duration like \"5s\", got float");
}

static void test_strings(void **)
{
    ConfigTable root = parse_config_string("one = \"main\"\nmany = [\"a\", \"b\"]\nnone = []\n"
                                           "bad = 3\nmixed = [\"a\", \"b\", false]\n",
                                           "s.toml");
    std::vector<std::string> v = root.strings("one", {});
    assert_int_equal(v.size(), 1);
    assert_string_equal(S(v[0]), "main");
    v = root.strings("many", {});
    assert_int_equal(v.size(), 2);
    assert_string_equal(S(v[1]), "b");
    assert_int_equal(root.strings("none", {"x"}).size(), 0);
    assert_int_equal(root.strings("absent", {"x", "y"}).size(), 2);
    assert_string_equal(S(error_of([&] { root.strings("bad", {}); })),
                        "s.toml:4:7: bad: expected a string or an array of strings, got integer");
    assert_string_equal(S(error_of([&] { root.strings("mixed", {}); })),
                        "s.toml:5:20: mixed[2]: expected a string, got boolean");
}

static void test_required_and_optional(void **)
{
    ConfigTable root = parse_config_string("[runner]\nname = \"\"\nwork = \"/w\"\n", "r.toml");
    ConfigTable runner = root.table("runner");
    assert_string_equal(S(*runner.optional_string("work")), "/w");
    assert_false(runner.optional_string("absent").has_value());
    // A missing key points at the table that lacks it.
    assert_string_equal(S(error_of([&] { runner.required_string("dispatcher"); })),
                        "r.toml:1:1: runner.dispatcher: required key is missing");
    assert_string_equal(S(error_of([&] { runner.required_string("name"); })),
                        "r.toml:2:8: runner.name: expected a non-empty string, got \"\"");
    // An absent sub-table is empty but keeps its path for messages.
    ConfigTable absent = root.table("dispatcher");
    assert_string_equal(S(absent.path()), "dispatcher");
    assert_string_equal(S(error_of([&] { absent.required_string("listen"); })),
                        "r.toml: dispatcher.listen: required key is missing");
}

static void test_empty_table(void **)
{
    ConfigTable t;
    assert_string_equal(S(t.file()), "");
    assert_string_equal(S(t.path()), "");
    assert_false(t.has("x"));
    assert_string_equal(S(t.string("x", "fb")), "fb");
    assert_false(t.optional_string("x").has_value());
    assert_int_equal(t.integer("x", 5, 1, 9), 5);
    assert_true(t.boolean("x", true));
    assert_int_equal(t.duration_ms("x", 77), 77);
    assert_int_equal(t.strings("x", {"a"}).size(), 1);
    assert_false(t.table("x").has("y"));
    assert_int_equal(t.tables("x").size(), 0);
    t.accept("x");
    t.reject_unknown_keys();
    assert_int_equal(t.unknown_keys().size(), 0);
    assert_string_equal(S(t.error_at("x", "why")), "x: why");
    assert_string_equal(S(error_of([&] { t.required_string("x"); })), "x: required key is missing");
    std::string s, msg;
    int64_t i;
    assert_int_equal(t.get_string("x", s, msg), -ENOENT);
    assert_int_equal(t.get_int("x", i, msg), -ENOENT);
}

static void test_get_codes(void **)
{
    ConfigTable root = parse_config_string("s = \"x\"\ni = 7\nb = true\nd = \"2s\"\nbad = \"no\"\n",
                                           "g.toml");
    std::string s, msg;
    int64_t i = 0;
    bool b = false;
    uint64_t d = 0;
    assert_int_equal(root.get_string("s", s, msg), 0);
    assert_string_equal(S(s), "x");
    assert_int_equal(root.get_int("i", i, msg), 0);
    assert_int_equal(i, 7);
    assert_int_equal(root.get_bool("b", b, msg), 0);
    assert_true(b);
    assert_int_equal(root.get_duration_ms("d", d, msg), 0);
    assert_int_equal(d, 2000);
    assert_int_equal(root.get_string("missing", s, msg), -ENOENT);
    assert_int_equal(root.get_duration_ms("missing", d, msg), -ENOENT);
    assert_int_equal(root.get_int("s", i, msg), -EINVAL);
    assert_string_equal(S(msg), "g.toml:1:5: s: expected an integer, got string");
    assert_int_equal(root.get_bool("i", b, msg), -EINVAL);
    assert_string_equal(S(msg), "g.toml:2:5: i: expected true or false, got integer");
    assert_int_equal(root.get_string("b", s, msg), -EINVAL);
    assert_string_equal(S(msg), "g.toml:3:5: b: expected a string, got boolean");
    assert_int_equal(root.get_duration_ms("bad", d, msg), -EINVAL);
    assert_string_equal(S(msg), "g.toml:5:7: bad: expected a duration like \"5s\", got \"no\"");
    // Every get_* marked its key as known, including the missing ones.
    assert_int_equal(root.unknown_keys().size(), 0);
}

// The fuzzer's finding (tests/fuzz/regressions/config-tomlpp-*.toml): a
// non-ASCII letter in a bare key reaches __builtin_unreachable in the
// header-only toml++ 3.3.0; the compiled library the daemons link must turn
// it into a ConfigError naming the place, not a crash.
static void test_fuzz_regression_non_ascii_bare_key(void **)
{
    for (const char *text : {"a\xc5\xbc = 1\n", "[runner]\nname\xc2\xa1 = \"x\"\n"}) {
        std::string err = error_of([&] { kiln::parse_config_string(text, "fuzz.toml"); });
        assert_true(err.rfind("fuzz.toml:", 0) == 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_regression_non_ascii_bare_key),
        cmocka_unit_test(test_parse_error_position),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_integer_range),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_unknown_top_level_table),
        cmocka_unit_test(test_array_of_tables),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_duration_key),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_required_and_optional),
        cmocka_unit_test(test_empty_table),
        cmocka_unit_test(test_get_codes),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
