// Messages the decoder refuses: hostile or malformed payloads give the
// documented error text (messages.hpp) naming the type and field, and never
// crash; and the field checks (valid_name() and the like) on their own.
// Payloads are built by hand (message_payloads.hpp) so one field at a time
// can be dropped, retyped or made hostile.
#include "message_payloads.hpp" // first: see there
#include <string>

#include <kiln/messages.hpp>

#include "test.hpp"

using namespace kiln;
using namespace kiln::test;

static void test_auth_fields(void **)
{
    const std::string hex64(64, 'f');
    Kvs hello = {{"type", P("hello")}, {"id", P(1)}, {"version", P(1)}, {"role", P("runner")}};
    assert_string_equal(S(decode_err(map_of(hello))), "OK"); // nonce and proof optional
    assert_string_equal(S(decode_err(map_of(with(hello, "nonce", P(hex64))))), "OK");
    for (const char *bad : {"abc", "0123456789abcdef0123456789abcdef01234567" /* 40 */,
                            "../../etc/kiln/secret"}) {
        assert_string_equal(S(decode_err(map_of(with(hello, "nonce", P(bad))))),
                            "hello: field 'nonce' is not 64 hex digits");
        assert_string_equal(S(decode_err(map_of(with(hello, "proof", P(bad))))),
                            "hello: field 'proof' is not 64 hex digits");
    }
    Kvs auth = {{"type", P("auth")}, {"id", P(2)}, {"proof", P(hex64)}};
    assert_string_equal(S(decode_err(map_of(auth))), "OK");
    assert_string_equal(S(decode_err(map_of(without(auth, "proof")))),
                        "auth: missing field 'proof'");
    assert_string_equal(S(decode_err(map_of(with(auth, "proof", P(""))))),
                        "auth: field 'proof' is not 64 hex digits");
}

// ---- malformed frames ----

static void test_bad_frames(void **)
{
    assert_string_equal(S(decode_err("\xc1")), "invalid msgpack: parse error");
    assert_string_equal(S(decode_err("\x82\xa4ty")), "invalid msgpack: insufficient bytes");
    assert_string_equal(S(decode_err(array_of({P("type"), P("ack")}))), "frame is not a msgpack map");
    assert_string_equal(S(decode_err(P("ack"))), "frame is not a msgpack map");
    assert_string_equal(S(decode_err(map_of({{"id", P(1)}}))), "frame has no string 'type'");
    assert_string_equal(S(decode_err(map_of({{"type", P(3)}}))), "frame has no string 'type'");
    assert_string_equal(S(decode_err(map_of({{"type", P("bogus")}}))),
                        "unknown message type 'bogus'");
    // A peer's string is not echoed raw into our logs.
    assert_string_equal(S(decode_err(map_of({{"type", P("a\nb'" + std::string(40, 'x'))}}))),
                        "unknown message type 'a?b?xxxxxxxxxxxxxxxxxxxxxxxxxxxx...'");
    std::string payload = map_of(commit_kvs());
    assert_string_equal(S(decode_err(payload)), "OK");
    assert_string_equal(S(decode_err(payload + "\xc0\x01")), "frame has 2 bytes after the msgpack map");
}

static void test_missing_fields(void **)
{
    assert_string_equal(S(decode_err(map_of(without(commit_kvs(), "branch")))),
                        "commit: missing field 'branch'");
    assert_string_equal(S(decode_err(map_of(without(register_kvs(), "name")))),
                        "register: missing field 'name'");
    assert_string_equal(S(decode_err(map_of(without(result_kvs(), "outcome")))),
                        "result: missing field 'outcome'");
    assert_string_equal(S(decode_err(map_of({{"type", P("hello")}, {"id", P(1)}, {"version", P(1)}}))),
                        "hello: missing field 'role'");
    assert_string_equal(S(decode_err(map_of({{"type", P("assign")}, {"job_id", P(1)}}))),
                        "assign: missing field 'attempt'");
    assert_string_equal(S(decode_err(map_of(with(result_kvs(), "tests",
                                                  array_of({map_of({{"name", P("a")}})}))))),
                        "result: missing field 'tests[0].outcome'");
}

static void test_mistyped_fields(void **)
{
    assert_string_equal(S(decode_err(map_of(with(register_kvs(), "slots", P("2"))))),
                        "register: field 'slots' must be an unsigned integer");
    assert_string_equal(S(decode_err(map_of(with(register_kvs(), "id", P(-1))))),
                        "register: field 'id' must be an unsigned integer");
    assert_string_equal(S(decode_err(map_of(with(register_kvs(), "labels", P("linux"))))),
                        "register: field 'labels' must be an array");
    assert_string_equal(
        S(decode_err(map_of(with(register_kvs(), "labels", array_of({P("a"), P(1)}))))),
        "register: field 'labels[1]' must be a string");
    assert_string_equal(S(decode_err(map_of(with(commit_kvs(), "repo", P(1.5))))),
                        "commit: field 'repo' must be a string");
    assert_string_equal(
        S(decode_err(map_of({{"type", P("heartbeat")}, {"id", P(1)}, {"jobs", array_of({P(1), P(true)})}}))),
        "heartbeat: field 'jobs[1]' must be an unsigned integer");
    std::string bad_test = map_of({{"name", P("c")}, {"outcome", P("passed")}, {"duration_ms", P("5")}});
    std::string tests = array_of({test_map("a", "passed"), test_map("b", "passed"), bad_test});
    assert_string_equal(S(decode_err(map_of(with(result_kvs(), "tests", tests)))),
                        "result: field 'tests[2].duration_ms' must be an unsigned integer");
    assert_string_equal(S(decode_err(map_of(with(result_kvs(), "tests", array_of({P(1)}))))),
                        "result: field 'tests[0]' must be a map");
    assert_string_equal(S(decode_err(map_of(with(result_kvs(), "started_unix_ms", P("now"))))),
                        "result: field 'started_unix_ms' must be an integer");
}

static void test_out_of_range(void **)
{
    assert_string_equal(S(decode_err(map_of(with(register_kvs(), "slots", P(uint64_t(1) << 32))))),
                        "register: field 'slots' must be at most 4294967295");
    // slots = 0 is a draining runner, not an error.
    Message drained;
    std::string drained_err;
    assert_true(decode_message(map_of(with(register_kvs(), "slots", P(0))), drained, drained_err));
    assert_int_equal(std::get<Register>(drained).slots, 0);
    assert_string_equal(S(decode_err(map_of(with(result_kvs(), "attempt", P(0))))),
                        "result: field 'attempt' must be at least 1");
    assert_string_equal(S(decode_err(map_of(with(result_kvs(), "finished_unix_ms", P(UINT64_MAX))))),
                        "result: field 'finished_unix_ms' must be at most 9223372036854775807");
}

static void test_hostile_values(void **)
{
    for (const char *bad : {"../../etc", "$(touch /tmp/x)", "", "0123456789ABCDEF0123456789abcdef01234567",
                            "0123456789abcdef0123456789abcdef0123456"}) {
        assert_string_equal(S(decode_err(map_of(with(commit_kvs(), "commit", P(bad))))),
                            "commit: field 'commit' is not a commit id");
        assert_string_equal(S(decode_err(map_of(with(result_kvs(), "commit", P(bad))))),
                            "result: field 'commit' is not a commit id");
    }
    Kvs assign = without(with(commit_kvs(), "type", P("assign")), "id");
    assign.push_back({"job_id", P(1)});
    assign.push_back({"attempt", P(1)});
    assert_string_equal(S(decode_err(map_of(assign))), "OK");
    assert_string_equal(S(decode_err(map_of(with(assign, "commit", P("$(touch /tmp/x)"))))),
                        "assign: field 'commit' is not a commit id");
    assert_string_equal(S(decode_err(map_of(with(assign, "vcs", P("../../tmp/evil"))))),
                        "assign: field 'vcs' is not a valid name");
    assert_string_equal(S(decode_err(map_of(with(assign, "exec", P("a/b"))))),
                        "assign: field 'exec' is not a valid name");
    assert_string_equal(S(decode_err(map_of(with(assign, "url", P("--upload-pack=touch /tmp/x"))))),
                        "assign: field 'url' is not a valid url");
    assert_string_equal(S(decode_err(map_of(with(commit_kvs(), "repo", P("../x"))))),
                        "commit: field 'repo' is not a valid name");
    assert_string_equal(S(decode_err(map_of(with(commit_kvs(), "branch", P("-f"))))),
                        "commit: field 'branch' is not a valid branch");
    assert_string_equal(S(decode_err(map_of(with(register_kvs(), "name", P(".hidden"))))),
                        "register: field 'name' is not a valid name");
    assert_string_equal(S(decode_err(map_of(with(result_kvs(), "outcome", P("great"))))),
                        "result: field 'outcome' is not an outcome");
    std::string tests = array_of({test_map("a", "passed"), test_map("b", "weird")});
    assert_string_equal(S(decode_err(map_of(with(result_kvs(), "tests", tests)))),
                        "result: field 'tests[1].outcome' is not an outcome");
}

// Nesting and size bombs stop inside msgpack, before any allocation to match.
static void test_bombs(void **)
{
    std::string deep(100000, '\x91'); // [[[[...]]]] 100000 deep
    deep += '\xc0';
    assert_string_equal(S(decode_err(deep)), "invalid msgpack: depth size overflow");
    Kvs reply = {{"type", P("reply")}, {"id", P(1)}, {"body", deep}};
    assert_string_equal(S(decode_err(map_of(reply))), "invalid msgpack: depth size overflow");
    assert_string_equal(S(decode_err("\xdd\xff\xff\xff\xff")), "invalid msgpack: array size overflow");
    assert_string_equal(S(decode_err("\xdf\xff\xff\xff\xff")), "invalid msgpack: map size overflow");
    // A string is only copied once its bytes are all there: no overflow, just short.
    assert_string_equal(S(decode_err("\xdb\xff\xff\xff\xff")), "invalid msgpack: insufficient bytes");
    // 16 nested containers, the frame's own map included, are fine; 17 are not.
    std::string nested = std::string(15, '\x91') + P(1);
    assert_string_equal(S(decode_err(map_of({{"type", P("reply")}, {"id", P(1)}, {"body", nested}}))), "OK");
    nested = std::string(16, '\x91') + P(1);
    assert_string_equal(S(decode_err(map_of({{"type", P("reply")}, {"id", P(1)}, {"body", nested}}))),
                        "invalid msgpack: depth size overflow");
}

static void test_validators(void **)
{
    assert_true(valid_commit_id(kSha1) && valid_commit_id(kSha256));
    assert_false(valid_commit_id(kSha1 + "0") || valid_commit_id(std::string(40, 'g')));
    assert_true(valid_name("a") && valid_name(std::string(64, 'x')) && valid_name("A.b_c-9"));
    assert_false(valid_name("") || valid_name(std::string(65, 'x')) || valid_name("-x"));
    assert_false(valid_name(".x") || valid_name("a/b") || valid_name("a b") || valid_name("é"));
    assert_true(valid_branch("main") && valid_branch("feature/x-1.2") && valid_branch(std::string(200, 'b')));
    for (const char *bad : {"", "-x", "/x", "x/", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*",
                            "a[", "a\\b", "a@{1}", "x.lock", "a\tb", "a\x7f"})
        assert_false(valid_branch(bad));
    assert_false(valid_branch(std::string(201, 'b')));
    assert_false(valid_branch(std::string("a\0b", 3)));
    const char *names[] = {"passed", "failed", "error", "skipped", "timeout", "cancelled"};
    for (int i = 0; i < 6; ++i)
        assert_int_equal(outcome_from_name(names[i]), i);
    assert_int_equal(outcome_from_name("unknown"), -1);
    assert_int_equal(outcome_from_name("Passed"), -1);
    // A plugin's int: the ABI's values, anything else an error.
    assert_int_equal(outcome_from_plugin(KILN_TIMEOUT), KILN_TIMEOUT);
    assert_int_equal(outcome_from_plugin(6), KILN_ERROR);
    assert_int_equal(outcome_from_plugin(-1), KILN_ERROR);
}

// A log chunk is checked like the rest: every field required, attempt at
// least 1, no empty chunk, no offset that would wrap around.
static void test_log_chunk_fields(void **)
{
    const Kvs chunk = {{"type", P("log")}, {"id", P(1)},     {"job_id", P(4)},
                       {"attempt", P(1)},  {"offset", P(0)}, {"bytes", P("out\n")}};
    assert_string_equal(S(decode_err(map_of(chunk))), "OK");
    for (const char *f : {"id", "job_id", "attempt", "offset", "bytes"})
        assert_string_equal(S(decode_err(map_of(without(chunk, f)))),
                            S(std::string("log: missing field '") + f + "'"));
    assert_string_equal(S(decode_err(map_of(with(chunk, "attempt", P(0))))),
                        "log: field 'attempt' must be at least 1");
    assert_string_equal(S(decode_err(map_of(with(chunk, "bytes", P(""))))),
                        "log: field 'bytes' must not be empty");
    assert_string_equal(S(decode_err(map_of(with(chunk, "bytes", P(3))))),
                        "log: field 'bytes' must be a string");
    assert_string_equal(S(decode_err(map_of(with(chunk, "offset", P(-1))))),
                        "log: field 'offset' must be an unsigned integer");
    assert_string_equal(S(decode_err(map_of(with(chunk, "offset", P(UINT64_MAX - 1))))),
                        "log: field 'offset' is too large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_chunk_fields),
        cmocka_unit_test(test_bad_frames),      cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_mistyped_fields), cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_hostile_values),  cmocka_unit_test(test_bombs),
        cmocka_unit_test(test_validators),      cmocka_unit_test(test_auth_fields),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
