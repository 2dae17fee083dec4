// The runner's disk care: byte counts in runner.toml (min_free), the free
// space check that pauses a runner (DiskGuard, on a real loop and the real
// file system of a temp dir), and the mirror sweep (mirror_keep_days): old
// mirrors go, recent ones stay, and so does an old one a workspace made by
// `git clone --shared` still borrows from.
#include <sys/stat.h>
#include <sys/time.h>

#include <ctime>
#include <string>

#include <kiln/config.hpp>

#include "byte_size.hpp"
#include "disk_full.hpp"
#include "disk_guard.hpp"
#include "mirror_sweep.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

void test_parse_byte_size(void **)
{
    assert_true(parse_byte_size("0") == 0u);
    assert_true(parse_byte_size("123") == 123u);
    assert_true(parse_byte_size("123B") == 123u);
    assert_true(parse_byte_size("4K") == 4096u);
    assert_true(parse_byte_size("512M") == 512ull << 20);
    assert_true(parse_byte_size("2G") == 2ull << 30);
    assert_true(parse_byte_size("2GiB") == 2ull << 30);
    assert_true(parse_byte_size("2GB") == 2ull << 30);
    assert_true(parse_byte_size("1000T") == 1000ull << 40);
    for (const char *bad : {"", "G", "-1", "1.5G", "2X", "2 G", "2g", "2Gi", "99999999999T",
                            "18446744073709551616"})
        assert_false(parse_byte_size(bad).has_value());
}

void test_config_byte_size(void **)
{
    ConfigTable t = parse_config_string("a = 1048576\nb = \"3M\"\nc = -1\nd = \"lots\"\n"
                                        "e = 1.5\n",
                                        "runner.toml");
    assert_true(config_byte_size(t, "a", 7) == 1048576u);
    assert_true(config_byte_size(t, "b", 7) == 3u << 20);
    assert_true(config_byte_size(t, "absent", 7) == 7u);
    for (const char *key : {"c", "d", "e"}) {
        std::string what;
        try {
            config_byte_size(t, key, 7);
        } catch (const ConfigError &e) {
            what = e.what();
        }
        assert_true(what.find("runner.toml") != std::string::npos);
        assert_true(what.find(std::string(key) + ": expected a byte count") != std::string::npos);
    }
}

void test_format_bytes(void **)
{
    assert_string_equal(S(format_bytes(512)), "512 B");
    assert_string_equal(S(format_bytes(1536)), "1.5 KiB");
    assert_string_equal(S(format_bytes(2ull << 30)), "2.0 GiB");
    assert_string_equal(S(format_bytes(1000ull << 40)), "1000.0 TiB");
}

// DiskGuard on a real loop: a min_free beyond any disk pauses, 0 never
// does, and lowering it takes the pause back.
void test_disk_guard(void **)
{
    TempDir tmp("kiln-test-disk");
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::vector<std::string> changes;
    {
        DiskGuard guard(&loop, tmp.path(), [&](const std::string &why) { changes.push_back(why); });
        guard.set_min_free(1000ull << 40);
        guard.start(60000);
        while (changes.empty())
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(changes.size(), 1);
        assert_true(changes[0].find("low disk: ") == 0);
        assert_true(changes[0].find(tmp.path()) != std::string::npos);
        assert_true(changes[0].find("min_free is 1000.0 TiB") != std::string::npos);
        assert_true(guard.last_free() > 0);
        guard.set_min_free(1); // a temp dir's file system has a byte
        while (changes.size() < 2)
            uv_run(&loop, UV_RUN_ONCE);
        assert_string_equal(S(changes[1]), "");
        assert_string_equal(S(guard.paused()), "");
        guard.stop();
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

void set_mtime(const std::string &path, time_t when)
{
    struct timeval tv[2] = {{when, 0}, {when, 0}};
    assert_int_equal(utimes(path.c_str(), tv), 0);
}

bool exists(const std::string &path)
{
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
}

void test_mirror_sweep(void **)
{
    TempDir tmp("kiln-test-mirrors");
    std::string cache = tmp / "cache", git = cache + "/git";
    std::string old_m = git + "/aaaa-old.git", recent = git + "/bbbb-recent.git",
                used = git + "/cccc-used.git", other = cache + "/other/dddd-old";
    for (const std::string &m : {old_m, recent, used})
        run({"git", "init", "-q", "--bare", m});
    std::filesystem::create_directories(other + "/deep/er");
    std::ofstream(other + "/deep/er/file") << "x";
    // A job's workspace, made as the git plugin makes it: it borrows the
    // mirror's objects through .git/objects/info/alternates.
    std::string ws = tmp / "workspaces/job-7-1";
    run({"git", "clone", "-q", "--shared", "--no-checkout", "--template=", "--", used, ws});
    assert_true(!mirrors_in_use(tmp / "workspaces").empty());

    time_t now = time(nullptr);
    const uint64_t keep = 30 * 86400;
    set_mtime(old_m, now - 31 * 86400);
    set_mtime(recent, now - 29 * 86400);
    set_mtime(used, now - 90 * 86400);
    set_mtime(other, now - 31 * 86400);
    SweepOutcome out = sweep_mirrors(cache, now, keep, mirrors_in_use(tmp / "workspaces"));
    assert_int_equal(out.errors.size(), 0);
    assert_int_equal(out.removed.size(), 2);
    assert_false(exists(old_m));
    assert_false(exists(other));
    assert_true(exists(recent + "/HEAD"));
    assert_true(exists(used + "/HEAD"));
    // Nothing else is left behind in the vcs directories (no trash).
    size_t n = 0;
    for (const auto &e : std::filesystem::directory_iterator(git))
        n += !e.path().filename().string().empty();
    assert_int_equal(n, 2);

    // Once the workspace is gone, the old mirror goes too.
    std::filesystem::remove_all(tmp / "workspaces");
    out = sweep_mirrors(cache, now, keep, mirrors_in_use(tmp / "workspaces"));
    assert_int_equal(out.removed.size(), 1);
    assert_string_equal(S(out.removed[0]), S(used));
    assert_true(exists(recent));
}

// ENOSPC anywhere in a failed job's reason, log or test messages makes it
// an error naming the disk; a pass, or a failure for another reason, stays.
void test_disk_full(void **)
{
    Result failed;
    failed.outcome = KILN_FAILED;
    failed.tests.push_back({"t.test_big", KILN_ERROR, 1, "OSError: [Errno 28] No space left on device"});
    assert_true(mark_disk_full(failed, "r1", "/w"));
    assert_int_equal(failed.outcome, KILN_ERROR);
    assert_string_equal(S(failed.error), "runner r1: no space left in work_dir /w (the file "
                                         "system filled up during the job)");

    Result prep;
    prep.outcome = KILN_ERROR;
    prep.error = "git clone: fatal: write error: No space left on device";
    assert_true(mark_disk_full(prep, "r1", "/w"));
    assert_true(prep.error.find("runner r1: no space left in work_dir /w") == 0);
    assert_true(prep.error.find("; git clone: fatal") != std::string::npos);

    Result logged;
    logged.outcome = KILN_TIMEOUT;
    logged.log = "...\ncp: error writing 'x': No space left on device\n";
    assert_true(mark_disk_full(logged, "r1", "/w"));
    assert_int_equal(logged.outcome, KILN_ERROR);

    Result passed;
    passed.outcome = KILN_PASSED;
    passed.log = "No space left on device (a test of that message)";
    assert_false(mark_disk_full(passed, "r1", "/w"));
    assert_int_equal(passed.outcome, KILN_PASSED);

    Result other;
    other.outcome = KILN_FAILED;
    other.tests.push_back({"t.test_x", KILN_FAILED, 1, "AssertionError: 1 != 2"});
    assert_false(mark_disk_full(other, "r1", "/w"));
    assert_int_equal(other.outcome, KILN_FAILED);
    assert_true(other.error.empty());
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_byte_size),
        cmocka_unit_test(test_config_byte_size),
        cmocka_unit_test(test_format_bytes),
        cmocka_unit_test(test_disk_guard),
        cmocka_unit_test(test_mirror_sweep),
        cmocka_unit_test(test_disk_full),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
