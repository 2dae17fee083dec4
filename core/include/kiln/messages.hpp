#pragma once
// Typed protocol messages, each one msgpack map with a string key "type".
// decode_message() checks every field: a missing field, a field of the wrong
// type, an invalid commit id or name, or an unknown type gives an error that
// names the message type and the field.
//
// Wire keys are the member names below ("job_id", "timeout_ms", ...);
// JobSpec's members sit flat in the commit and assign maps; Result.tests is
// "tests", an array of maps.  The encoder writes "type" first and every
// field (Reply.body only when not empty).  The decoder finds keys anywhere in
// the map and ignores keys it does not know, so a newer peer may add fields.
// Strings may be msgpack str or bin.
//
// Optional on decode (absent means the default shown in the struct):
//   hello.name, hello.nonce, hello.proof, ack.job_id, ack.offset, error.id, register.slots, register.labels,
//   heartbeat.jobs, query.arg, reply.body, commit/assign vcs, exec,
//   timeout_ms, labels, shards, cancel_superseded and network,
//   result.error, .log, .tests, .started_unix_ms, .finished_unix_ms, and in
//   each test: duration_ms, message.
// Everything else is required.  Also checked: repo, vcs, exec and each
// label are valid_name(); branch valid_branch(); commit valid_commit_id();
// hello.nonce, hello.proof and auth.proof are empty or 64 lowercase hex digits;
// url non-empty without control characters or a leading '-' (it reaches a
// plugin's argv); attempt at least 1 (register.slots may be 0: a draining runner); uint32 fields in range;
// outcomes (of the job and of each test) known to outcome_from_name().
//
// Error texts read "<type>: missing field '<f>'", "<type>: field '<f>' must
// be <a string | an unsigned integer | an integer | an array | a map>",
// "<type>: field '<f>' must be at most <max>", "<type>: field '<f>' is not
// <a commit id | a valid name | a valid branch | a valid url | an outcome>",
// with nested fields named like 'tests[2].outcome' or 'labels[0]'; and for
// the frame as a whole "invalid msgpack: <why>", "frame has <n> bytes
// after the msgpack map", "frame is not a msgpack map", "frame has no
// string 'type'", "unknown message type '<t>'".
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <kiln/plugin.h>

namespace kiln {

constexpr uint32_t kProtocolVersion = 1;

// What to test: forwarded from the observer's repo config to the runner.
struct JobSpec {
    std::string repo;   // name, valid_name()
    std::string url;    // as the vcs plugin understands it
    std::string branch; // valid_branch()
    std::string commit; // valid_commit_id()
    std::string vcs = "git";
    std::string exec = "unittest";
    uint64_t timeout_ms = 600000;
    std::vector<std::string> labels; // a runner must have all of these
    uint32_t shards = 1;             // split the tests over this many jobs; 0: "auto"
    bool cancel_superseded = false;  // a newer commit on the branch cancels this one
    bool network = false;            // a sandboxed runner lets its tests reach the network
};

struct Hello {          // first frame both ways
    uint64_t id = 0;
    uint32_t version = kProtocolVersion;
    std::string role;   // "observer", "runner", "ctl", "dispatcher"
    std::string name;
    std::string nonce;  // 64 hex digits or empty: the sender's challenge (see auth.hpp)
    std::string proof;  // dispatcher only, when it has a secret for the role: its answer
};
struct Auth {           // peer → dispatcher after the dispatcher's hello; acked
    uint64_t id = 0;
    std::string proof;  // 64 hex digits: HMAC over both nonces (see auth.hpp)
};
struct Ack {            // positive answer to the request with this id
    uint64_t id = 0;
    uint64_t job_id = 0; // for commit acks: the job created (0 if none)
    uint64_t offset = 0; // for log acks: the bytes of the job's log the dispatcher now holds
};
// Negative answer (id 0: about the connection); the sender closes after it,
// except for a commit refused by max_queued_per_repo (the commit's id; the
// observer offers it again later) and a query that has no answer ("no job
// for commit X"): then the connection stays.
struct Error {
    uint64_t id = 0;
    std::string message;
};
struct Commit {         // observer → dispatcher; acked once recorded
    uint64_t id = 0;
    JobSpec spec;
};
struct Register {       // runner → dispatcher; acked
    uint64_t id = 0;
    std::string name;   // valid_name()
    uint32_t slots = 1; // 0: draining, assign nothing more
    std::vector<std::string> labels;
    // Why it takes no jobs for now (slots is then 0), e.g. "low disk: ...";
    // empty: it is not paused.  Optional on the wire (older peers).
    std::string paused;
};
struct Heartbeat {      // both ways; a runner lists the jobs it is running
    uint64_t id = 0;
    std::vector<uint64_t> jobs;
};
struct Assign {         // dispatcher → runner
    uint64_t job_id = 0;
    uint32_t attempt = 1;
    JobSpec spec;
    bool list = false;              // only list the tests (answer with TestList)
    std::vector<std::string> tests; // run only these (a shard); empty: all
    uint32_t shard_index = 0;       // this shard's index, of shard_count (0 of 0: not sharded)
    uint32_t shard_count = 0;       // (not "shards": that key is the JobSpec's)
};
struct TestList {       // runner → dispatcher, for an Assign with list; acked
    uint64_t id = 0;
    uint64_t job_id = 0;
    uint32_t attempt = 1;
    std::string commit;
    std::vector<std::string> tests;
    std::string error;  // could not list: the tests then run unsharded
};
struct Cancel {         // dispatcher → runner: stop this job, report it cancelled
    uint64_t job_id = 0;
    uint32_t attempt = 1;
};
struct Notify {         // kilnctl → dispatcher → observer: poll this repository now
    uint64_t id = 0;
    std::string repo;
    std::string branch; // empty: every watched branch
};
struct TestOutcome {
    std::string name;
    // The plugin ABI's enum, everywhere inside a daemon; on the wire its
    // name ("passed", "failed", "error", "skipped", "timeout", "cancelled").
    kiln_outcome outcome = KILN_PASSED;
    uint64_t duration_ms = 0;
    std::string message;
};
struct Result {         // runner → dispatcher; acked once recorded
    uint64_t id = 0;
    uint64_t job_id = 0;
    uint32_t attempt = 1;
    std::string commit;  // valid_commit_id()
    kiln_outcome outcome = KILN_ERROR; // of the whole job, as TestOutcome::outcome
    std::string error;   // why, for error/timeout/cancelled
    std::vector<TestOutcome> tests;
    std::string log;
    int64_t started_unix_ms = 0;
    int64_t finished_unix_ms = 0;
};
// Runner → dispatcher while a job's tests run: the next bytes of their
// output, which start `offset` bytes into the attempt's log (the bytes the
// final Result.log holds, in the same order).  Acked with Ack.offset, the
// end of what the dispatcher holds; a runner that reconnects resends from
// the last acknowledged offset.  The frame is bounded by max_frame.
struct LogChunk {
    uint64_t id = 0;
    uint64_t job_id = 0;
    uint32_t attempt = 1;
    uint64_t offset = 0;
    std::string bytes;   // not empty; any content
};
struct Query {          // kilnctl → dispatcher: "status", "runners", "jobs", "result"
    uint64_t id = 0;
    std::string what;
    std::string arg;     // the commit (or a unique prefix) for "result"
};
struct Reply {          // dispatcher → kilnctl
    uint64_t id = 0;
    std::string body;    // exactly one packed msgpack object (map or array), sent
                         // raw: the encoder trusts it, the decoder checks it
};

using Message = std::variant<Hello, Ack, Error, Commit, Register, Heartbeat, Assign, Result,
                             Query, Reply, TestList, Cancel, Notify, Auth, LogChunk>;

// The wire name of a message's type ("hello", "ack", ...).
const char *message_type(const Message &msg);

// One complete frame: length prefix + msgpack map.  Does not validate: the
// sender is trusted to fill valid names and ids (the peer's decoder checks).
std::string encode_message(const Message &msg);

// Decode one frame payload (without its length prefix).  On failure returns
// false and sets `error`, e.g. "commit: missing field 'branch'",
// "result: field 'tests[2].duration_ms' must be an unsigned integer",
// "unknown message type 'bogus'", "frame is not a msgpack map".  Never
// throws.  Nesting is capped at 16 containers (the frame's map included)
// and container counts at the payload size, 256Ki array elements and 64Ki
// map entries, because msgpack allocates a container's slots from its
// header: a hostile frame costs at most 256 bytes per payload byte, 64 MiB.
bool decode_message(std::string_view payload, Message &out, std::string &error);

// 40 or 64 lowercase hex digits.
bool valid_commit_id(std::string_view s);
// 64 lowercase hex digits: a nonce or proof of the hello exchange (auth.hpp).
bool valid_auth_token(std::string_view s);
// 1..64 of [A-Za-z0-9._-], not starting with '.' or '-': safe as a path component.
bool valid_name(std::string_view s);
// A git branch name without "..", leading '-' or '/', control characters or spaces; 1..200 bytes.
bool valid_branch(std::string_view s);

// Outcome names ↔ enum kiln_outcome; -1 for an unknown name.  For the
// places a name is read (messages, the dispatcher's database); the name of
// an outcome is kiln_outcome_name().
int outcome_from_name(std::string_view name);
// A plugin's int (struct kiln_exec_result, kiln_test_result) as the enum;
// a value the ABI does not define is KILN_ERROR.
kiln_outcome outcome_from_plugin(int outcome);

} // namespace kiln
