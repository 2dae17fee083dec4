// Messages, encoder and decoder together: every type survives a round trip
// field for field, the frame is what the header documents (length prefix,
// "type" first, a reply's body raw), absent optional fields take the
// struct's defaults and unknown keys are ignored.  What the decoder refuses
// is test_messages_rejected.cpp.
#include "message_payloads.hpp" // first: see there
#include <cstring>

#include <kiln/frame_codec.hpp>
#include <kiln/messages.hpp>

#include "test.hpp"

using namespace kiln;
using namespace kiln::test;

// Decode a frame produced by encode_message, checking its length prefix.
template <typename T> static T round_trip(const Message &in)
{
    std::string frame = encode_message(in);
    FrameDecoder d;
    assert_true(d.feed(frame.data(), frame.size()));
    std::string payload, err;
    assert_true(d.next(payload));
    assert_int_equal(payload.size() + 4, frame.size());
    Message out;
    if (!decode_message(payload, out, err))
        fail_msg("decode: %s", err.c_str());
    assert_true(std::holds_alternative<T>(out));
    assert_string_equal(message_type(out), message_type(in));
    return std::get<T>(out);
}

static void check_spec(const JobSpec &a, const JobSpec &b)
{
    assert_true(a.repo == b.repo && a.url == b.url && a.branch == b.branch);
    assert_true(a.commit == b.commit && a.vcs == b.vcs && a.exec == b.exec);
    assert_true(a.timeout_ms == b.timeout_ms);
}

static JobSpec some_spec()
{
    JobSpec s;
    s.repo = "proj_1.x";
    s.url = "https://git.example/p.git";
    s.branch = "feature/x-1";
    s.commit = kSha256;
    s.vcs = "hg";
    s.exec = "ctest";
    s.timeout_ms = 1234;
    return s;
}

static Assign assign_of(uint64_t job_id, uint32_t attempt, const JobSpec &spec)
{
    Assign a;
    a.job_id = job_id;
    a.attempt = attempt;
    a.spec = spec;
    return a;
}

// ---- round trips ----

static void test_round_trip_simple(void **)
{
    Hello h = round_trip<Hello>(Hello{UINT64_MAX, 9, "runner", "r-7", "", ""});
    assert_true(h.id == UINT64_MAX && h.version == 9 && h.role == "runner" && h.name == "r-7");
    Ack a = round_trip<Ack>(Ack{5, 77});
    assert_true(a.id == 5 && a.job_id == 77);
    Error e = round_trip<Error>(Error{6, "commit: missing field 'branch'"});
    assert_true(e.id == 6 && e.message == "commit: missing field 'branch'");
    Query q = round_trip<Query>(Query{8, "result", "0123abc"});
    assert_true(q.id == 8 && q.what == "result" && q.arg == "0123abc");
    Heartbeat hb = round_trip<Heartbeat>(Heartbeat{9, {1, 2, UINT64_MAX}});
    assert_true(hb.id == 9 && hb.jobs == std::vector<uint64_t>({1, 2, UINT64_MAX}));
    Register r = round_trip<Register>(Register{10, "r1", UINT32_MAX, {"linux", "x86_64"}, ""});
    assert_true(r.id == 10 && r.name == "r1" && r.slots == UINT32_MAX && r.paused.empty());
    Register paused = round_trip<Register>(Register{13, "r2", 0, {}, "low disk: 1 B free"});
    assert_true(paused.slots == 0 && paused.paused == "low disk: 1 B free");
    assert_true(r.labels == std::vector<std::string>({"linux", "x86_64"}));
    const std::string n(64, 'a'), p(64, '0');
    Hello d = round_trip<Hello>(Hello{11, 1, "dispatcher", "d", n, p});
    assert_true(d.nonce == n && d.proof == p);
    Auth au = round_trip<Auth>(Auth{12, p});
    assert_true(au.id == 12 && au.proof == p);
}

static void test_round_trip_jobs(void **)
{
    Commit c = round_trip<Commit>(Commit{11, some_spec()});
    assert_true(c.id == 11);
    check_spec(c.spec, some_spec());
    Assign a = round_trip<Assign>(assign_of(12, 3, some_spec()));
    assert_true(a.job_id == 12 && a.attempt == 3);
    check_spec(a.spec, some_spec());
}

static void test_round_trip_sharding(void **)
{
    JobSpec spec = some_spec();
    spec.labels = {"gpu", "linux"};
    spec.shards = 0;
    spec.cancel_superseded = true;
    spec.network = true;
    Assign in = assign_of(21, 2, spec);
    in.list = true;
    in.tests = {"t.A.test_x", "a name with spaces/and slashes"};
    in.shard_index = 1;
    in.shard_count = 3;
    Assign a = round_trip<Assign>(in);
    assert_true(a.spec.labels == spec.labels && a.spec.shards == 0 && a.spec.cancel_superseded);
    assert_true(a.spec.network);
    assert_true(a.list && a.tests == in.tests && a.shard_index == 1 && a.shard_count == 3);
    TestList tl = round_trip<TestList>(TestList{22, 23, 2, std::string(40, 'b'), {"x", "y"}, "no"});
    assert_true(tl.id == 22 && tl.job_id == 23 && tl.attempt == 2 && tl.tests.size() == 2 &&
                tl.error == "no");
    Cancel c = round_trip<Cancel>(Cancel{24, 5});
    assert_true(c.job_id == 24 && c.attempt == 5);
    Notify n = round_trip<Notify>(Notify{25, "example", "main"});
    assert_true(n.id == 25 && n.repo == "example" && n.branch == "main");
    // Defaults when the new fields are absent: one shard, no labels, no cancelling.
    Commit plain = round_trip<Commit>(Commit{26, some_spec()});
    assert_true(plain.spec.shards == 1 && plain.spec.labels.empty() && !plain.spec.cancel_superseded);
    assert_false(plain.spec.network);
    // network: a msgpack bool, false when absent (a peer from before it).
    Message m0;
    std::string err0;
    assert_true(decode_message(map_of(commit_kvs()), m0, err0));
    assert_false(std::get<Commit>(m0).spec.network);
    assert_true(decode_message(map_of(with(commit_kvs(), "network", P(true))), m0, err0));
    assert_true(std::get<Commit>(m0).spec.network);
    assert_false(decode_message(map_of(with(commit_kvs(), "network", P("yes"))), m0, err0));
    assert_non_null(strstr(err0.c_str(), "network"));
    // Bad values are named.
    Message m;
    std::string err;
    std::string frame = encode_message(Notify{27, "example", "main"});
    frame.replace(frame.find("example"), 7, "../../x");
    assert_false(decode_message(std::string_view(frame).substr(4), m, err));
    assert_string_equal(err.c_str(), "notify: field 'repo' is not a valid name");
}

static void test_round_trip_result(void **)
{
    Result in{13, 14, 2, kSha1, KILN_FAILED, "exit status 1",
              {{"t.a", KILN_PASSED, 3, ""}, {"t.b", KILN_FAILED, 40, "assert 1 == 2\n"},
               {"t.c", KILN_TIMEOUT, UINT64_MAX, "killed"}},
              std::string("log\0with nul\xff", 14), -5, INT64_MAX};
    Result r = round_trip<Result>(in);
    assert_true(r.id == 13 && r.job_id == 14 && r.attempt == 2 && r.commit == kSha1);
    assert_true(r.outcome == KILN_FAILED && r.error == "exit status 1" && r.log == in.log);
    assert_true(r.started_unix_ms == -5 && r.finished_unix_ms == INT64_MAX);
    assert_int_equal(r.tests.size(), 3);
    for (size_t i = 0; i < 3; ++i) {
        assert_true(r.tests[i].name == in.tests[i].name);
        assert_true(r.tests[i].outcome == in.tests[i].outcome);
        assert_true(r.tests[i].duration_ms == in.tests[i].duration_ms);
        assert_true(r.tests[i].message == in.tests[i].message);
    }
}

static void test_reply_body_raw(void **)
{
    std::string body = map_of({{"runners", array_of({P("r1"), P("r2")})}, {"jobs", P(3)}});
    std::string frame = encode_message(Reply{15, body});
    // The body travels verbatim, as the value of "body".
    assert_true(frame.find(P("body") + body) != std::string::npos);
    Reply r = round_trip<Reply>(Reply{15, body});
    assert_true(r.id == 15 && r.body == body);
    Reply empty = round_trip<Reply>(Reply{16, ""});
    assert_true(empty.id == 16 && empty.body.empty());
    assert_string_equal(S(decode_err(map_of({{"type", P("reply")}, {"id", P(1)}, {"body", P(2)}}))),
                        "reply: field 'body' must be a map or an array");
}

static void test_type_first(void **)
{
    std::string frame = encode_message(Ack{1, 2});
    msgpack::object_handle oh = msgpack::unpack(frame.data() + 4, frame.size() - 4);
    const msgpack::object &o = oh.get();
    assert_int_equal(o.type, msgpack::type::MAP);
    assert_true(o.via.map.ptr[0].key.as<std::string>() == "type");
    assert_true(o.via.map.ptr[0].val.as<std::string>() == "ack");
}

// Absent optional fields take the struct defaults; unknown keys are ignored.
static void test_optional_and_extra(void **)
{
    Message m;
    std::string err;
    Kvs kvs = with(commit_kvs(), "future_field", array_of({P(1), P("x")}));
    assert_true(decode_message(map_of(kvs), m, err));
    const Commit &c = std::get<Commit>(m);
    assert_true(c.spec.vcs == "git" && c.spec.exec == "unittest" && c.spec.timeout_ms == 600000);

    assert_true(decode_message(map_of(without(register_kvs(), "slots")), m, err));
    assert_true(std::get<Register>(m).slots == 1 && std::get<Register>(m).labels.empty());

    assert_true(decode_message(map_of({{"id", P(4)}, {"type", P("ack")}}), m, err));
    assert_true(std::get<Ack>(m).id == 4 && std::get<Ack>(m).job_id == 0);

    assert_true(decode_message(map_of(without(result_kvs(), "tests")), m, err));
    const Result &r = std::get<Result>(m);
    assert_true(r.tests.empty() && r.log.empty() && r.error.empty() && r.started_unix_ms == 0);
}

static void test_type_names(void **)
{
    assert_string_equal(message_type(Hello{}), "hello");
    assert_string_equal(message_type(Ack{}), "ack");
    assert_string_equal(message_type(Error{}), "error");
    assert_string_equal(message_type(Commit{}), "commit");
    assert_string_equal(message_type(Register{}), "register");
    assert_string_equal(message_type(Heartbeat{}), "heartbeat");
    assert_string_equal(message_type(Assign{}), "assign");
    assert_string_equal(message_type(Result{}), "result");
    assert_string_equal(message_type(Query{}), "query");
    assert_string_equal(message_type(Reply{}), "reply");
    assert_string_equal(message_type(Auth{}), "auth");
    assert_string_equal(message_type(LogChunk{}), "log");
}

// A live log chunk carries any bytes (NUL, invalid UTF-8) unchanged; its
// ack carries the offset the dispatcher holds.
static void test_round_trip_log(void **)
{
    const std::string bytes("line 1\n\0\xff\x1b[31mred\n", 16);
    LogChunk c = round_trip<LogChunk>(LogChunk{31, 7, 2, 1u << 20, bytes});
    assert_true(c.id == 31 && c.job_id == 7 && c.attempt == 2 && c.offset == (1u << 20));
    assert_true(c.bytes == bytes);
    Ack a = round_trip<Ack>(Ack{31, 7, (1u << 20) + 16});
    assert_true(a.id == 31 && a.job_id == 7 && a.offset == (1u << 20) + 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_simple), cmocka_unit_test(test_round_trip_jobs),
        cmocka_unit_test(test_round_trip_sharding),
        cmocka_unit_test(test_round_trip_result), cmocka_unit_test(test_reply_body_raw),
        cmocka_unit_test(test_type_first),        cmocka_unit_test(test_optional_and_extra),
        cmocka_unit_test(test_type_names),        cmocka_unit_test(test_round_trip_log),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
