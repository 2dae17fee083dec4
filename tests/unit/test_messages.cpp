// Messages: every type survives a round trip field for field; hostile or
// malformed payloads give the documented error text and never crash.
// Payloads for the negative cases are built by hand from key/value pairs so
// one field at a time can be dropped, retyped or made hostile.
// msgpack.hpp pulls in <iostream>, whose basic_ios::fail() cmocka's fail()
// macro would break: include it before test.hpp.
#include <msgpack.hpp>
#include <cstring>
#include <vector>

#include <kiln/frame_codec.hpp>
#include <kiln/messages.hpp>

#include "test.hpp"

using namespace kiln;

static const std::string kSha1 = "0123456789abcdef0123456789abcdef01234567";
static const std::string kSha256 = std::string(64, 'e');

// ---- payload building ----

struct Kv {
    std::string key;
    std::string packed; // the value, already packed
};
using Kvs = std::vector<Kv>;

template <typename T> static std::string P(const T &v)
{
    msgpack::sbuffer sb;
    msgpack::pack(sb, v);
    return std::string(sb.data(), sb.size());
}

static std::string map_of(const Kvs &kvs)
{
    msgpack::sbuffer sb;
    msgpack::packer<msgpack::sbuffer> pk(sb);
    pk.pack_map(static_cast<uint32_t>(kvs.size()));
    for (const Kv &kv : kvs) {
        pk.pack(kv.key);
        sb.write(kv.packed.data(), kv.packed.size());
    }
    return std::string(sb.data(), sb.size());
}

static std::string array_of(const std::vector<std::string> &packed)
{
    msgpack::sbuffer sb;
    msgpack::packer<msgpack::sbuffer>(sb).pack_array(static_cast<uint32_t>(packed.size()));
    for (const auto &p : packed)
        sb.write(p.data(), p.size());
    return std::string(sb.data(), sb.size());
}

// kvs with `key` replaced by (or, if absent, extended with) `packed`.
static Kvs with(Kvs kvs, const std::string &key, const std::string &packed)
{
    for (Kv &kv : kvs)
        if (kv.key == key) {
            kv.packed = packed;
            return kvs;
        }
    kvs.push_back({key, packed});
    return kvs;
}

static Kvs without(Kvs kvs, const std::string &key)
{
    for (size_t i = 0; i < kvs.size(); ++i)
        if (kvs[i].key == key)
            kvs.erase(kvs.begin() + i);
    return kvs;
}

// "OK" or the decoder's error.
static std::string decode_err(const std::string &payload)
{
    Message m;
    std::string err;
    return decode_message(payload, m, err) ? "OK" : err;
}

static Kvs commit_kvs()
{
    return {{"type", P("commit")},   {"id", P(7)},          {"repo", P("example")},
            {"url", P("/srv/x.git")}, {"branch", P("main")}, {"commit", P(kSha1)}};
}
static Kvs register_kvs()
{
    return {{"type", P("register")}, {"id", P(1)}, {"name", P("r1")}, {"slots", P(2)}};
}
static std::string test_map(const std::string &name, const std::string &outcome)
{
    return map_of({{"name", P(name)}, {"outcome", P(outcome)}, {"duration_ms", P(5)}});
}
static Kvs result_kvs()
{
    return {{"type", P("result")},   {"id", P(3)},           {"job_id", P(4)},
            {"attempt", P(1)},        {"commit", P(kSha1)},   {"outcome", P("passed")},
            {"tests", array_of({test_map("a", "passed"), test_map("b", "skipped"),
                                test_map("c", "failed")})}};
}

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
    Register r = round_trip<Register>(Register{10, "r1", UINT32_MAX, {"linux", "x86_64"}});
    assert_true(r.id == 10 && r.name == "r1" && r.slots == UINT32_MAX);
    assert_true(r.labels == std::vector<std::string>({"linux", "x86_64"}));
    const std::string n(64, 'a'), p(64, '0');
    Hello d = round_trip<Hello>(Hello{11, 1, "dispatcher", "d", n, p});
    assert_true(d.nonce == n && d.proof == p);
    Auth au = round_trip<Auth>(Auth{12, p});
    assert_true(au.id == 12 && au.proof == p);
}

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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_simple), cmocka_unit_test(test_round_trip_jobs),
        cmocka_unit_test(test_round_trip_sharding),
        cmocka_unit_test(test_round_trip_result), cmocka_unit_test(test_reply_body_raw),
        cmocka_unit_test(test_type_first),        cmocka_unit_test(test_optional_and_extra),
        cmocka_unit_test(test_bad_frames),        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_mistyped_fields),   cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_hostile_values),    cmocka_unit_test(test_bombs),
        cmocka_unit_test(test_validators),        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_auth_fields),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
