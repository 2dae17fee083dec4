// Protocol messages <-> msgpack maps: each message's fields, described once
// in describe() (see msgpack_fields.hpp for the Counter, Writer and Reader
// that one description drives), and the frames around them.  The checks on
// single fields (valid_name() and the like) are in field_checks.cpp.
#include "kiln/messages.hpp"

#include "kiln/frame_codec.hpp"
#include "msgpack_fields.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <msgpack.hpp>

namespace kiln {

namespace {

// Wire names, in the order of the Message alternatives.
const char *const kTypeNames[] = {"hello",  "ack",    "error", "commit", "register",
                                  "heartbeat", "assign", "result", "query", "reply",
                                  "test_list", "cancel", "notify", "auth", "log"};
static_assert(std::variant_size_v<Message> == sizeof kTypeNames / sizeof kTypeNames[0]);

bool valid_url(std::string_view s)
{
    // It ends up in a plugin's argv: no option look-alikes, no control bytes.
    return !s.empty() && s[0] != '-' && std::none_of(s.begin(), s.end(), [](char c) {
        return (unsigned char)c < 0x20 || c == 0x7f;
    });
}

} // namespace

// ---- the messages ----

// In kiln::wire, beside the Counter, Writer and Reader, which find these by
// argument-dependent lookup.
namespace wire {

template <class IO> bool describe(IO &io, JobSpec &s)
{
    return io.field("repo", s.repo) && io.check(valid_name(s.repo), "repo", "is not a valid name") &&
           io.field("url", s.url) && io.check(valid_url(s.url), "url", "is not a valid url") &&
           io.field("branch", s.branch) &&
           io.check(valid_branch(s.branch), "branch", "is not a valid branch") &&
           io.field("commit", s.commit) &&
           io.check(valid_commit_id(s.commit), "commit", "is not a commit id") &&
           io.field("vcs", s.vcs, kOptional) &&
           io.check(valid_name(s.vcs), "vcs", "is not a valid name") &&
           io.field("exec", s.exec, kOptional) &&
           io.check(valid_name(s.exec), "exec", "is not a valid name") &&
           io.field("timeout_ms", s.timeout_ms, kOptional) && io.names("labels", s.labels) &&
           io.field("shards", s.shards, kOptional) &&
           io.field("cancel_superseded", s.cancel_superseded, kOptional) &&
           io.field("network", s.network, kOptional);
}
template <class IO> bool describe(IO &io, Hello &m)
{
    return io.field("id", m.id) && io.field("version", m.version) && io.field("role", m.role) &&
           io.field("name", m.name, kOptional) && io.field("nonce", m.nonce, kOptional) &&
           io.check(m.nonce.empty() || valid_auth_token(m.nonce), "nonce",
                    "is not 64 hex digits") &&
           io.field("proof", m.proof, kOptional) &&
           io.check(m.proof.empty() || valid_auth_token(m.proof), "proof",
                    "is not 64 hex digits");
}
template <class IO> bool describe(IO &io, Auth &m)
{
    return io.field("id", m.id) && io.field("proof", m.proof) &&
           io.check(valid_auth_token(m.proof), "proof", "is not 64 hex digits");
}
template <class IO> bool describe(IO &io, Ack &m)
{
    return io.field("id", m.id) && io.field("job_id", m.job_id, kOptional) &&
           io.field("offset", m.offset, kOptional);
}
template <class IO> bool describe(IO &io, LogChunk &m)
{
    return io.field("id", m.id) && io.field("job_id", m.job_id) && io.field("attempt", m.attempt) &&
           io.check(m.attempt >= 1, "attempt", "must be at least 1") &&
           io.field("offset", m.offset) && io.field("bytes", m.bytes) &&
           io.check(!m.bytes.empty(), "bytes", "must not be empty") &&
           io.check(m.offset <= UINT64_MAX - m.bytes.size(), "offset", "is too large");
}
template <class IO> bool describe(IO &io, Error &m)
{
    return io.field("id", m.id, kOptional) && io.field("message", m.message);
}
template <class IO> bool describe(IO &io, Commit &m)
{
    return io.field("id", m.id) && describe(io, m.spec);
}
template <class IO> bool describe(IO &io, Register &m)
{
    return io.field("id", m.id) && io.field("name", m.name) &&
           io.check(valid_name(m.name), "name", "is not a valid name") &&
           io.field("slots", m.slots, kOptional) &&
           io.names("labels", m.labels) && // slots = 0: draining, assign nothing more
           io.field("paused", m.paused, kOptional);
}
template <class IO> bool describe(IO &io, Heartbeat &m)
{
    return io.field("id", m.id) && io.uints("jobs", m.jobs);
}
template <class IO> bool describe(IO &io, Assign &m)
{
    return io.field("job_id", m.job_id) && io.field("attempt", m.attempt) &&
           io.check(m.attempt >= 1, "attempt", "must be at least 1") && describe(io, m.spec) &&
           io.field("list", m.list, kOptional) && io.strings("tests", m.tests) &&
           io.field("shard_index", m.shard_index, kOptional) &&
           io.field("shard_count", m.shard_count, kOptional);
}
template <class IO> bool describe(IO &io, TestList &m)
{
    return io.field("id", m.id) && io.field("job_id", m.job_id) && io.field("attempt", m.attempt) &&
           io.check(m.attempt >= 1, "attempt", "must be at least 1") &&
           io.field("commit", m.commit) &&
           io.check(valid_commit_id(m.commit), "commit", "is not a commit id") &&
           io.strings("tests", m.tests) && io.field("error", m.error, kOptional);
}
template <class IO> bool describe(IO &io, Cancel &m)
{
    return io.field("job_id", m.job_id) && io.field("attempt", m.attempt);
}
template <class IO> bool describe(IO &io, Notify &m)
{
    return io.field("id", m.id) && io.field("repo", m.repo) &&
           io.check(valid_name(m.repo), "repo", "is not a valid name") &&
           io.field("branch", m.branch, kOptional) &&
           io.check(m.branch.empty() || valid_branch(m.branch), "branch", "is not a valid branch");
}
template <class IO> bool describe(IO &io, TestOutcome &t)
{
    return io.field("name", t.name) && io.outcome("outcome", t.outcome) &&
           io.field("duration_ms", t.duration_ms, kOptional) &&
           io.field("message", t.message, kOptional);
}
template <class IO> bool describe(IO &io, Result &m)
{
    return io.field("id", m.id) && io.field("job_id", m.job_id) && io.field("attempt", m.attempt) &&
           io.check(m.attempt >= 1, "attempt", "must be at least 1") &&
           io.field("commit", m.commit) &&
           io.check(valid_commit_id(m.commit), "commit", "is not a commit id") &&
           io.outcome("outcome", m.outcome) &&
           io.field("error", m.error, kOptional) && io.maps("tests", m.tests) &&
           io.field("log", m.log, kOptional) &&
           io.field("started_unix_ms", m.started_unix_ms, kOptional) &&
           io.field("finished_unix_ms", m.finished_unix_ms, kOptional);
}
template <class IO> bool describe(IO &io, Query &m)
{
    return io.field("id", m.id) && io.field("what", m.what) && io.field("arg", m.arg, kOptional);
}
template <class IO> bool describe(IO &io, Reply &m)
{
    return io.field("id", m.id) && io.raw("body", m.body);
}

} // namespace wire

namespace {

// Finds the alternative whose wire name is `name` and reads it.
template <size_t I = 0>
bool decode_as(std::string_view name, const msgpack::object &root, Message &out,
               std::string &error)
{
    if constexpr (I == std::variant_size_v<Message>) {
        // Quote at most 32 printable bytes of a peer's string in our logs.
        std::string shown(name.substr(0, 32));
        for (char &c : shown)
            if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f || c == '\'')
                c = '?';
        error = "unknown message type '" + shown + (name.size() > 32 ? "...'" : "'");
        return false;
    } else {
        if (name != kTypeNames[I])
            return decode_as<I + 1>(name, root, out, error);
        std::variant_alternative_t<I, Message> m;
        wire::Reader reader(kTypeNames[I], root, error);
        if (!describe(reader, m))
            return false;
        out = std::move(m);
        return true;
    }
}

// Strings point into the payload instead of being copied into the zone: the
// payload outlives the object within decode_message.
bool reference_payload(msgpack::type::object_type, std::size_t, void *) { return true; }

} // namespace

const char *message_type(const Message &msg) { return kTypeNames[msg.index()]; }

std::string encode_message(const Message &msg)
{
    std::string frame(kFrameHeaderSize, '\0'); // the length, patched below
    wire::Writer w(frame);
    // describe() takes non-const references so one description serves the
    // reader too; the Writer and Counter only ever read through them.
    std::visit([&](const auto &m) { w.map(kTypeNames[msg.index()], m); }, msg);
    const size_t n = frame.size() - kFrameHeaderSize;
    if (n > std::numeric_limits<uint32_t>::max())
        throw std::length_error("encode_message: message over 4 GiB");
    for (int i = 0; i < 4; ++i)
        frame[i] = static_cast<char>(n >> (24 - 8 * i));
    return frame;
}

bool decode_message(std::string_view payload, Message &out, std::string &error)
{
    error.clear();
    auto fail = [&](std::string why) { return error = std::move(why), false; };
    try {
        // msgpack allocates a container's slots when it reads the header, before
        // the elements arrive: cap the counts (each element needs at least one
        // byte of payload anyway) and the depth, so a few bytes claiming 2^32
        // elements, or nesting ten thousand deep, cannot exhaust memory or stack.
        const size_t n = payload.size();
        const msgpack::unpack_limit limit(std::min<size_t>(n, 256 * 1024),
                                          std::min<size_t>(n / 2, 64 * 1024), n, n, n, 16);
        size_t off = 0;
        msgpack::object_handle oh = msgpack::unpack(payload.data(), n, off, reference_payload,
                                                    nullptr, limit);
        if (off != n)
            return fail("frame has " + std::to_string(n - off) + " bytes after the msgpack map");
        const msgpack::object &root = oh.get();
        if (root.type != msgpack::type::MAP)
            return fail("frame is not a msgpack map");
        std::string type;
        wire::Reader frame("frame", root, error);
        if (!frame.field("type", type, wire::kOptional) || type.empty())
            return fail("frame has no string 'type'");
        return decode_as(type, root, out, error);
    } catch (const std::exception &e) {
        return fail(std::string("invalid msgpack: ") + e.what());
    }
}

} // namespace kiln
