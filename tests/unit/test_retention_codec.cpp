// Stored results compressed with zstd: binary and UTF-8 logs round-trip
// (through the codec and through the Store), rows written before
// compression still read, a corrupt, truncated or oversized blob is a clear
// error naming the job, not a crash.
#include <zstd.h>

#include "log_codec.hpp"
#include "retention_fixture.hpp"
#include "store_fixture.hpp"

using namespace kiln;
using namespace retention_fixture;
using store_fixture::Fixture;
using store_fixture::setup;
using store_fixture::teardown;

namespace {

std::string every_byte(size_t repeat)
{
    std::string s;
    for (size_t r = 0; r < repeat; r++)
        for (int b = 0; b < 256; b++)
            s.push_back(static_cast<char>(b));
    return s;
}

const std::string kUtf8 = "r\u00e9sultat \u2714 \u6d4b\u8bd5 \U0001F525 caf\u00e9\n";

void test_codec_round_trips_binary_and_utf8(void **)
{
    for (const std::string &in : {every_byte(1), every_byte(300), std::string(1000, '\0'), kUtf8,
                                  std::string()}) {
        std::string packed = pack_stored_result(in);
        assert_int_equal(packed.compare(0, 4, "KZS1"), 0);
        assert_true(unpack_stored_result(packed) == in);
    }
    // Repetitive text compresses: the point of it.
    std::string text;
    for (int i = 0; i < 2000; i++)
        text += "test_" + std::to_string(i % 50) + " (tests.test_x.T) ... ok\n";
    assert_true(pack_stored_result(text).size() * 5 < text.size());
}

void test_store_round_trips_logs_compressed(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    std::string binary = every_byte(64);
    write(f->dir, {job(1, "a", "main", 1000, true, JobState::done, binary),
                   job(2, "a", "main", 1000, true, JobState::done, kUtf8 + std::string(5000, 'z'))});
    auto jobs = load(f->dir);
    assert_int_equal(jobs.size(), 2);
    assert_true(jobs[0].result.log == binary);
    assert_true(jobs[1].result.log == kUtf8 + std::string(5000, 'z'));
    // On disk: compressed (the marker), and smaller than the log for the text.
    assert_string_equal(pragma(f->dir, "SELECT hex(substr(frame, 1, 4)) FROM results ORDER BY job_id")
                            .c_str(),
                        "4B5A5331\n4B5A5331");
    assert_true(std::stoul(pragma(f->dir, "SELECT length(frame) FROM results WHERE job_id = 2")) <
                2000);
}

void test_an_uncompressed_row_still_reads(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    Job old = job(1, "a", "main", 1000, true, JobState::done, every_byte(2));
    write(f->dir, {old});
    // As a dispatcher before compression wrote it: the frame itself.
    sqlite3 *db = nullptr;
    sqlite3_open((f->dir + "/dispatcher.db").c_str(), &db);
    std::string frame = encode_message(old.result);
    sql::Statement(db, "UPDATE results SET frame = ?1 WHERE job_id = 1").blob(1, frame).run(db);
    sqlite3_close(db);
    assert_string_equal(pragma(f->dir, "SELECT hex(substr(frame, 1, 1)) FROM results").c_str(), "00");
    auto jobs = load(f->dir);
    assert_true(jobs[0].result.log == every_byte(2));
}

void expect_error(const std::string &blob, const char *why, size_t max = kMaxStoredResult)
{
    try {
        unpack_stored_result(blob, max);
        fail_msg("no error for a bad blob (%s)", why);
    } catch (const std::runtime_error &e) {
        std::string what = e.what();
        if (what.find("stored result: ") != 0 || what.find(why) == std::string::npos)
            fail_msg("unexpected error: %s", e.what());
    }
}

void test_a_corrupt_blob_is_a_clear_error(void **)
{
    std::string good = pack_stored_result(every_byte(100));
    expect_error("KZS1", "empty");
    expect_error("KZS1 this is not zstd at all", "corrupt");
    expect_error(good.substr(0, good.size() / 2), "truncated");
    std::string flipped = good;
    flipped[flipped.size() / 2] ^= 0x55;
    flipped[flipped.size() / 2 + 1] ^= 0x55;
    expect_error(flipped, "corrupt"); // the frame's checksum, if nothing else, sees it
    expect_error(good + "x", "trailing");
    // A bomb: 64 MiB of zeros stops at the cap, whatever its header claims.
    std::string zeros(64u << 20, '\0');
    std::string bomb = pack_stored_result(zeros, 1);
    assert_true(bomb.size() < 100000);
    expect_error(bomb, "more than 1048576", 1u << 20);
}

void test_a_corrupt_row_names_its_job(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    write(f->dir, {job(7, "a", "main", 1000)});
    sqlite3 *db = nullptr;
    sqlite3_open((f->dir + "/dispatcher.db").c_str(), &db);
    sql::Statement(db, "UPDATE results SET frame = ?1 WHERE job_id = 7")
        .blob(1, std::string("KZS1garbage"))
        .run(db);
    sqlite3_close(db);
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::string error;
    {
        Store store(&loop, f->dir);
        store.open();
        try {
            store.load_jobs();
        } catch (const StoreError &e) {
            error = e.what();
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    assert_true(error.find("job 7: stored result: corrupt") != std::string::npos);
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trips_binary_and_utf8),
        cmocka_unit_test_setup_teardown(test_store_round_trips_logs_compressed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_uncompressed_row_still_reads, setup, teardown),
        cmocka_unit_test(test_a_corrupt_blob_is_a_clear_error),
        cmocka_unit_test_setup_teardown(test_a_corrupt_row_names_its_job, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
