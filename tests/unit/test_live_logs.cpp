// The dispatcher's live log tails (live_logs.hpp): kept only for the
// running attempt of the runner holding the job, resends add nothing,
// a gap starts the tail again, each tail and all of them bounded,
// followers told of appends and of the end, and the "log" query.
#include <msgpack.hpp>

#include <string>
#include <vector>

#include "job_spec_fixture.hpp"
#include "live_logs.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

JobSpec spec(char fill) { return ::spec("r", fill); }

LogChunk chunk(uint64_t job, uint64_t offset, const std::string &bytes, uint32_t attempt = 1)
{
    return LogChunk{1, job, attempt, offset, bytes};
}

std::string field(const std::string &packed, const char *key)
{
    msgpack::object_handle oh = msgpack::unpack(packed.data(), packed.size());
    for (const auto &kv : oh.get().as<std::map<std::string, msgpack::object>>())
        if (kv.first == key)
            return kv.second.type == msgpack::type::STR ? kv.second.as<std::string>()
                                                        : std::to_string(kv.second.as<uint64_t>());
    return "?";
}

} // namespace

static void test_append_rules(void **)
{
    JobTable jobs;
    uint64_t id = jobs.add(spec('a'), 1).first->id;
    jobs.assign(id, "r1", 2);
    LiveLogs logs(jobs);
    assert_int_equal(logs.append("r1", chunk(id, 0, "hello")), 5);
    assert_int_equal(logs.append("r1", chunk(id, 0, "hello")), 5); // a resend adds nothing
    assert_int_equal(logs.append("r1", chunk(id, 3, "lo world")), 11); // overlap: the new part
    assert_true(logs.find(id)->bytes == "hello world");
    // Not the runner holding it, not its attempt, not a job: ignored.
    assert_int_equal(logs.append("r2", chunk(id, 11, "x")), 0);
    assert_int_equal(logs.append("r1", chunk(id, 11, "x", 2)), 0);
    assert_int_equal(logs.append("r1", chunk(id + 99, 0, "x")), 0);
    assert_int_equal(logs.memory(), 11);
    // Past the end (a restarted dispatcher): the tail starts there.
    assert_int_equal(logs.append("r1", chunk(id, 100, "later")), 105);
    assert_int_equal(logs.find(id)->start, 100);
    assert_int_equal(logs.memory(), 5);
}

static void test_bounds(void **)
{
    JobTable jobs;
    uint64_t id = jobs.add(spec('b'), 1).first->id;
    jobs.assign(id, "r1", 2);
    LiveLogs logs(jobs);
    const size_t n = LiveLogs::kTailBytes + LiveLogs::kTailBytes / 2;
    assert_int_equal(logs.append("r1", chunk(id, 0, std::string(n, 'z') + "end")), n + 3);
    const LiveLogs::Tail *t = logs.find(id);
    assert_int_equal(t->bytes.size(), LiveLogs::kTailBytes);
    assert_int_equal(t->start, n + 3 - LiveLogs::kTailBytes);
    assert_true(t->bytes.substr(t->bytes.size() - 3) == "end");
    // All tails together: 80 jobs of a full tail stay under the total.
    std::vector<uint64_t> ids;
    for (int i = 0; i < 80; i++) {
        std::string commit = std::to_string(1000 + i);
        JobSpec s = spec('c');
        s.commit = std::string(36, 'c') + commit;
        uint64_t j = jobs.add(s, 1).first->id;
        jobs.assign(j, "r1", 2);
        logs.append("r1", chunk(j, 0, std::string(LiveLogs::kTailBytes, 'q')));
        assert_true(logs.memory() <= LiveLogs::kTotalBytes);
    }
    assert_true(logs.memory() > LiveLogs::kTotalBytes - LiveLogs::kTailBytes);
}

static void test_followers_and_end(void **)
{
    JobTable jobs;
    uint64_t id = jobs.add(spec('d'), 1).first->id;
    jobs.assign(id, "r1", 2);
    LiveLogs logs(jobs);
    std::string seen;
    int ended = 0;
    uint64_t token = 0;
    token = logs.follow(id, {[&](uint32_t, uint64_t offset, std::string_view b) {
                                 assert_int_equal(offset, seen.size());
                                 seen.append(b);
                             },
                             [&] { ended++; },
                             nullptr});
    uint64_t quitter = 0;
    quitter = logs.follow(id, {[&](uint32_t, uint64_t, std::string_view) {
                                   logs.unfollow(quitter); // from inside its own callback
                               },
                               nullptr, nullptr});
    int idle = 0;
    uint64_t idler = 0;
    idler = logs.follow(id, {nullptr, nullptr, [&] {
                                 idle++;
                                 logs.unfollow(idler); // a client found gone
                             }});
    logs.keepalive();
    logs.keepalive();
    assert_int_equal(idle, 1);
    logs.append("r1", chunk(id, 0, "abc"));
    logs.append("r1", chunk(id, 0, "abcdef"));
    assert_true(seen == "abcdef");
    std::string error;
    assert_true(field(logs.answer(std::string(40, 'd') + "@2", error), "text") == "cdef");
    logs.end(id);
    assert_int_equal(ended, 1);
    assert_null(logs.find(id));
    assert_int_equal(logs.memory(), 0);
    logs.unfollow(token); // already gone: harmless
}

static void test_answer(void **)
{
    JobTable jobs;
    uint64_t id = jobs.add(spec('e'), 1).first->id;
    jobs.assign(id, "r1", 2);
    LiveLogs logs(jobs);
    std::string error;
    const std::string commit(40, 'e');
    logs.append("r1", chunk(id, 0, "0123456789"));
    std::string a = logs.answer(commit.substr(0, 8) + "@4", error);
    assert_true(error.empty());
    assert_true(field(a, "text") == "456789" && field(a, "offset") == "4" &&
                field(a, "end") == "10");
    assert_true(logs.answer(commit + "@x1", error).empty());
    assert_string_equal(error.c_str(), "log: 'x1' is not an offset");
    assert_true(logs.answer(std::string(40, 'f'), error).empty());
    assert_true(error.find("no job for commit") == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_rules),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_followers_and_end),
        cmocka_unit_test(test_answer),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
