// Drop-in files (config_files.cpp): DIR/NAME.toml completed by
// DIR/conf.d/NAME/*.toml in byte order; each value keeps the file, line and
// column it came from, so errors name the drop-in, not the main file.
#include "test.hpp"

#include <kiln/config.hpp>

#include <cstdio>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "config_error_of.hpp"

using kiln::ConfigTable;

// A scratch directory with files written into it, removed at the end.
struct Scratch {
    std::string dir;
    std::vector<std::string> made; // files, then directories, removed in reverse
    Scratch()
    {
        char tmpl[] = "/tmp/kiln-test-dropins-XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        dir = tmpl;
    }
    ~Scratch()
    {
        for (auto it = made.rbegin(); it != made.rend(); ++it)
            remove(it->c_str());
        rmdir(dir.c_str());
    }
    std::string mkdir_(const std::string &rel)
    {
        std::string p = dir + "/" + rel;
        assert_int_equal(mkdir(p.c_str(), 0755), 0);
        made.push_back(p);
        return p;
    }
    std::string write(const std::string &rel, const std::string &text)
    {
        std::string p = dir + "/" + rel;
        FILE *f = fopen(p.c_str(), "w");
        assert_non_null(f);
        fputs(text.c_str(), f);
        fclose(f);
        made.push_back(p);
        return p;
    }
};

static void test_dropin_dir_name(void **)
{
    assert_string_equal(S(kiln::config_dropin_dir("/etc/kiln/runner.toml")),
                        "/etc/kiln/conf.d/runner");
    assert_string_equal(S(kiln::config_dropin_dir("/etc/kiln/runner-2.toml")),
                        "/etc/kiln/conf.d/runner-2");
    assert_string_equal(S(kiln::config_dropin_dir("kiln.conf")), "conf.d/kiln.conf");
}

static void test_dropins_absent(void **)
{
    Scratch s;
    std::string main = s.write("runner.toml", "[runner]\nslots = 2\n");
    assert_true(kiln::config_dropins(main).empty());
    ConfigTable root = kiln::load_config_with_dropins(main);
    assert_string_equal(S(root.file()), S(main));
    assert_int_equal(root.table("runner").integer("slots", 1, 1, 256), 2);
}

static void test_dropins_merge(void **)
{
    Scratch s;
    std::string main = s.write("observer.toml",
                               "[observer]\ninterval = \"5s\"\nmax_backlog = 10\n"
                               "[[repo]]\nname = \"a\"\nurl = \"/a\"\n");
    s.mkdir_("conf.d");
    s.mkdir_("conf.d/observer");
    s.write("conf.d/observer/20-later.toml", "[observer]\nmax_backlog = 30\n");
    s.write("conf.d/observer/10-first.toml",
            "[observer]\nmax_backlog = 20\ndispatcher = \"h:1\"\n"
            "[[repo]]\nname = \"b\"\nurl = \"/b\"\n");
    s.write("conf.d/observer/.hidden.toml", "this is not toml\n");
    s.write("conf.d/observer/notes.txt", "neither is this\n");
    s.mkdir_("conf.d/observer/dir.toml");

    auto files = kiln::config_dropins(main);
    assert_int_equal(files.size(), 2);
    assert_string_equal(S(files[0]), S(s.dir + "/conf.d/observer/10-first.toml"));
    assert_string_equal(S(files[1]), S(s.dir + "/conf.d/observer/20-later.toml"));

    ConfigTable root = kiln::load_config_with_dropins(main);
    ConfigTable obs = root.table("observer");
    assert_int_equal(obs.duration_ms("interval", 0), 5000); // main file, untouched
    assert_int_equal(obs.integer("max_backlog", 0, 0, 1000), 30); // last drop-in wins
    assert_string_equal(S(obs.string("dispatcher", "")), "h:1"); // added by a drop-in
    auto repos = root.tables("repo");
    assert_int_equal(repos.size(), 2); // [[repo]] appended
    assert_string_equal(S(repos[0].required_string("name")), "a");
    assert_string_equal(S(repos[1].required_string("name")), "b");
    assert_string_equal(S(repos[1].path()), "repo[1]");
}

static void test_dropins_errors_name_their_file(void **)
{
    Scratch s;
    std::string main = s.write("runner.toml", "[runner]\nslots = 2\nname = \"r\"\n");
    s.mkdir_("conf.d");
    s.mkdir_("conf.d/runner");
    std::string d1 = s.write("conf.d/runner/a.toml", "[runner]\n\nslots = \"many\"\n");
    std::string d2 = s.write("conf.d/runner/b.toml", "[runner]\nlabel = \"x\"\n[plugin.git]\n");
    ConfigTable root = kiln::load_config_with_dropins(main);
    ConfigTable runner = root.table("runner");
    // The replaced value points at the drop-in that set it.
    assert_string_equal(S(error_of([&] { runner.integer("slots", 1, 1, 256); })),
                        S(d1 + ":3:9: runner.slots: expected an integer from 1 to 256, got string"));
    // A value of the main file still points at the main file.
    assert_string_equal(S(error_of([&] { runner.integer("name", 1, 1, 256); })),
                        S(main + ":3:8: runner.name: expected an integer from 1 to 256, got string"));
    // An unknown key in a drop-in is reported in its file.
    assert_string_equal(S(error_of([&] { runner.reject_unknown_keys(); })),
                        S(d2 + ":2:1: runner.label: unknown key"));
    // A table only a drop-in has.
    assert_string_equal(S(error_of([&] { root.table("plugin").table("git").required_string("git"); })),
                        S(d2 + ":3:1: plugin.git.git: required key is missing"));
}

static void test_dropins_unknown_key_order(void **)
{
    Scratch s;
    std::string main = s.write("d.toml", "\n\n\n\n[dispatcher]\nzzz = 1\n");
    s.mkdir_("conf.d");
    s.mkdir_("conf.d/d");
    s.write("conf.d/d/a.toml", "[dispatcher]\naaa = 1\n");
    ConfigTable root = kiln::load_config_with_dropins(main);
    ConfigTable d = root.table("dispatcher");
    // Main file first, then drop-ins, though the drop-in's key has the lower line.
    assert_string_equal(S(error_of([&] { d.reject_unknown_keys(); })),
                        S(main + ":6:1: dispatcher.zzz: unknown key"));
    auto unknown = d.unknown_keys();
    assert_int_equal(unknown.size(), 2);
    assert_string_equal(S(unknown[1]), "dispatcher.aaa");
}

static void test_dropin_syntax_error(void **)
{
    Scratch s;
    std::string main = s.write("runner.toml", "[runner]\n");
    s.mkdir_("conf.d");
    s.mkdir_("conf.d/runner");
    std::string bad = s.write("conf.d/runner/bad.toml", "a = 1\nb = = 2\n");
    std::string err = error_of([&] { kiln::load_config_with_dropins(main); });
    assert_true(err.rfind(bad + ":2:5: ", 0) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropin_dir_name),
        cmocka_unit_test(test_dropins_absent),
        cmocka_unit_test(test_dropins_merge),
        cmocka_unit_test(test_dropins_errors_name_their_file),
        cmocka_unit_test(test_dropins_unknown_key_order),
        cmocka_unit_test(test_dropin_syntax_error),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
