// Protocol messages <-> msgpack maps.  Each message's fields are described
// once, in describe(): the same description drives a Counter (the map size
// msgpack wants up front), a Writer (encoding) and a Reader (decoding and
// validation), so a key cannot be spelt one way on the wire and another way
// back.  Every shape mistake becomes one error naming the type and field.
#include "kiln/messages.hpp"

#include "kiln/frame_codec.hpp"
#include <kiln/plugin.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <msgpack.hpp>

namespace kiln {

namespace {

using Obj = msgpack::object;
enum Need { kRequired, kOptional };

// Wire names, in the order of the Message alternatives.
const char *const kTypeNames[] = {"hello",  "ack",    "error", "commit", "register",
                                  "heartbeat", "assign", "result", "query", "reply",
                                  "test_list", "cancel", "notify", "auth"};
static_assert(std::variant_size_v<Message> == sizeof kTypeNames / sizeof kTypeNames[0]);

template <class IO> bool describe(IO &io, TestOutcome &t); // nested in Result

// ---- encoding ----

// Counts the entries describe() will write; validation is the reader's job.
struct Counter {
    uint32_t n = 0;
    template <class V> bool field(const char *, const V &, Need = kRequired) { return ++n; }
    template <class V> bool names(const char *, const V &) { return ++n; }
    template <class V> bool strings(const char *, const V &) { return ++n; }
    template <class V> bool uints(const char *, const V &) { return ++n; }
    template <class V> bool maps(const char *, const V &) { return ++n; }
    bool raw(const char *, const std::string &v) { return v.empty() || ++n; }
    bool outcome(const char *, kiln_outcome) { return ++n; }
    bool check(bool, const char *, const char *) { return true; }
};

// Lets the packer append straight to the frame we return (no sbuffer copy).
struct StringStream {
    std::string &s;
    void write(const char *p, size_t n) { s.append(p, n); }
};

// Writes every field; the sender is trusted (see encode_message).
class Writer {
  public:
    explicit Writer(std::string &buf) : out_{buf}, pk_(out_) {}
    template <class M> void map(const char *type, const M &m)
    {
        Counter c;
        describe(c, const_cast<M &>(m));
        pk_.pack_map(c.n + (type ? 1 : 0));
        if (type)
            key("type"), key(type); // first, so a reader can dispatch early
        describe(*this, const_cast<M &>(m));
    }
    template <class V> bool field(const char *k, const V &v, Need = kRequired)
    {
        key(k);
        if constexpr (std::is_same_v<V, std::string>)
            key(v);
        else if constexpr (std::is_same_v<V, bool>)
            v ? pk_.pack_true() : pk_.pack_false();
        else if constexpr (std::is_signed_v<V>)
            pk_.pack_int64(v);
        else
            pk_.pack_uint64(v);
        return true;
    }
    template <class V> bool names(const char *k, const V &v) { return key(k), pk_.pack(v), true; }
    template <class V> bool strings(const char *k, const V &v) { return key(k), pk_.pack(v), true; }
    template <class V> bool uints(const char *k, const V &v) { return key(k), pk_.pack(v), true; }
    template <class T> bool maps(const char *k, const std::vector<T> &v)
    {
        key(k);
        pk_.pack_array(static_cast<uint32_t>(v.size()));
        for (const T &t : v)
            map(nullptr, t);
        return true;
    }
    // msgpack is concatenative: already-packed bytes are a valid value.  An
    // empty body would leave a key without a value, so it is left out.
    bool raw(const char *k, const std::string &v)
    {
        if (!v.empty())
            key(k), out_.write(v.data(), v.size());
        return true;
    }
    // Outcomes travel by name (kiln_outcome_name).
    bool outcome(const char *k, kiln_outcome v) { return key(k), key(kiln_outcome_name(v)), true; }
    bool check(bool, const char *, const char *) { return true; }

  private:
    void key(std::string_view v) // or any string
    {
        pk_.pack_str(static_cast<uint32_t>(v.size()));
        pk_.pack_str_body(v.data(), static_cast<uint32_t>(v.size()));
    }
    StringStream out_;
    msgpack::packer<StringStream> pk_;
};

// ---- decoding ----

// Reads one map's fields.  Each getter returns false after setting the
// error; an absent optional field leaves the struct's default in place.
class Reader {
  public:
    Reader(const char *type, const Obj &map, std::string &err, std::string prefix = "")
        : type_(type), map_(map.via.map), err_(err), prefix_(std::move(prefix)) {}

    template <class T> bool field(const char *k, T &out, Need need = kRequired) const
    {
        const Obj *o = get(k, need);
        return o ? as(*o, k, out) : need == kOptional;
    }
    // Optional array of valid_name() strings.
    bool names(const char *k, std::vector<std::string> &out) const
    {
        return each(k, [&](const Obj &o, const std::string &at) {
            return as(o, at, out.emplace_back()) &&
                   check(valid_name(out.back()), at, "is not a valid name");
        });
    }
    // Optional array of strings of any content (test names), at most 4 KiB each.
    bool strings(const char *k, std::vector<std::string> &out) const
    {
        return each(k, [&](const Obj &o, const std::string &at) {
            return as(o, at, out.emplace_back()) &&
                   check(out.back().size() <= 4096, at, "is longer than 4096 bytes");
        });
    }
    bool uints(const char *k, std::vector<uint64_t> &out) const
    {
        return each(k, [&](const Obj &o, const std::string &at) { return as(o, at, out.emplace_back()); });
    }
    // Optional array of maps, each read by describe() with a prefixed name.
    template <class T> bool maps(const char *k, std::vector<T> &out) const
    {
        return each(k, [&](const Obj &o, const std::string &at) {
            if (o.type != msgpack::type::MAP)
                return fail(at, "must be a map");
            Reader sub(type_, o, err_, prefix_ + at + ".");
            return describe(sub, out.emplace_back());
        });
    }
    // Optional packed object, re-packed from the parsed one.
    bool raw(const char *k, std::string &out) const
    {
        const Obj *o = get(k, kOptional);
        if (!o)
            return true;
        if (o->type != msgpack::type::MAP && o->type != msgpack::type::ARRAY)
            return fail(k, "must be a map or an array");
        msgpack::sbuffer sb;
        msgpack::pack(sb, *o);
        out.assign(sb.data(), sb.size());
        return true;
    }
    // An outcome's name, back to the enum.
    bool outcome(const char *k, kiln_outcome &out) const
    {
        std::string name;
        if (!field(k, name))
            return false;
        int o = outcome_from_name(name);
        if (o < 0)
            return fail(k, "is not an outcome");
        out = static_cast<kiln_outcome>(o);
        return true;
    }
    bool check(bool ok, const std::string &k, const char *why) const { return ok || fail(k, why); }

  private:
    const Obj *get(const char *k, Need need) const
    {
        const size_t n = std::strlen(k);
        for (uint32_t i = 0; i < map_.size; ++i) {
            const Obj &key = map_.ptr[i].key;
            if (key.type == msgpack::type::STR && key.via.str.size == n &&
                std::memcmp(key.via.str.ptr, k, n) == 0)
                return &map_.ptr[i].val;
        }
        if (need == kRequired)
            err_ = std::string(type_) + ": missing field '" + prefix_ + k + "'";
        return nullptr;
    }
    bool fail(const std::string &k, const std::string &why) const
    {
        err_ = std::string(type_) + ": field '" + prefix_ + k + "' " + why;
        return false;
    }
    bool as(const Obj &o, const std::string &k, std::string &out) const
    {
        if (o.type == msgpack::type::STR)
            out.assign(o.via.str.ptr, o.via.str.size);
        else if (o.type == msgpack::type::BIN)
            out.assign(o.via.bin.ptr, o.via.bin.size);
        else
            return fail(k, "must be a string");
        return true;
    }
    bool as(const Obj &o, const std::string &k, bool &out) const
    {
        if (o.type != msgpack::type::BOOLEAN)
            return fail(k, "must be true or false");
        return out = o.via.boolean, true;
    }
    bool as(const Obj &o, const std::string &k, int64_t &out) const
    {
        if (o.type == msgpack::type::NEGATIVE_INTEGER)
            return out = o.via.i64, true;
        if (o.type != msgpack::type::POSITIVE_INTEGER)
            return fail(k, "must be an integer");
        if (o.via.u64 > uint64_t(std::numeric_limits<int64_t>::max()))
            return fail(k, "must be at most " + std::to_string(std::numeric_limits<int64_t>::max()));
        return out = static_cast<int64_t>(o.via.u64), true;
    }
    template <class U> bool as(const Obj &o, const std::string &k, U &out) const
    {
        if (o.type != msgpack::type::POSITIVE_INTEGER)
            return fail(k, "must be an unsigned integer");
        if (o.via.u64 > std::numeric_limits<U>::max())
            return fail(k, "must be at most " + std::to_string(std::numeric_limits<U>::max()));
        return out = static_cast<U>(o.via.u64), true;
    }
    // Calls fn(element, "k[i]") for each element of the optional array k.
    template <class F> bool each(const char *k, F fn) const
    {
        const Obj *o = get(k, kOptional);
        if (!o)
            return true;
        if (o->type != msgpack::type::ARRAY)
            return fail(k, "must be an array");
        for (uint32_t i = 0; i < o->via.array.size; ++i)
            if (!fn(o->via.array.ptr[i], std::string(k) + "[" + std::to_string(i) + "]"))
                return false;
        return true;
    }

    const char *type_;
    const msgpack::object_map &map_;
    std::string &err_;
    std::string prefix_;
};

// ---- the messages ----

bool valid_url(std::string_view s)
{
    // It ends up in a plugin's argv: no option look-alikes, no control bytes.
    return !s.empty() && s[0] != '-' && std::none_of(s.begin(), s.end(), [](char c) {
        return (unsigned char)c < 0x20 || c == 0x7f;
    });
}

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
    return io.field("id", m.id) && io.field("job_id", m.job_id, kOptional);
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
           io.names("labels", m.labels); // slots = 0: draining, assign nothing more
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

// Finds the alternative whose wire name is `name` and reads it.
template <size_t I = 0>
bool decode_as(std::string_view name, const Obj &root, Message &out, std::string &error)
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
        Reader reader(kTypeNames[I], root, error);
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
    Writer w(frame);
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
        const Obj &root = oh.get();
        if (root.type != msgpack::type::MAP)
            return fail("frame is not a msgpack map");
        std::string type;
        if (!Reader("frame", root, error).field("type", type, kOptional) || type.empty())
            return fail("frame has no string 'type'");
        return decode_as(type, root, out, error);
    } catch (const std::exception &e) {
        return fail(std::string("invalid msgpack: ") + e.what());
    }
}

bool valid_commit_id(std::string_view s)
{
    return (s.size() == 40 || s.size() == 64) && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
}

bool valid_auth_token(std::string_view s) { return s.size() == 64 && valid_commit_id(s); }

bool valid_name(std::string_view s)
{
    if (s.empty() || s.size() > 64 || s[0] == '.' || s[0] == '-')
        return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

bool valid_branch(std::string_view s)
{
    // git check-ref-format's rules that matter for argv and path safety.
    if (s.empty() || s.size() > 200 || s[0] == '-' || s[0] == '/' || s.back() == '/' ||
        s.find("..") != s.npos || s.find("@{") != s.npos ||
        (s.size() >= 5 && s.substr(s.size() - 5) == ".lock"))
        return false;
    return std::none_of(s.begin(), s.end(), [](char c) {
        return (unsigned char)c <= 0x20 || c == 0x7f || std::strchr("~^:?*[\\", c) != nullptr;
    });
}

kiln_outcome outcome_from_plugin(int outcome)
{
    return outcome >= KILN_PASSED && outcome <= KILN_CANCELLED ? static_cast<kiln_outcome>(outcome)
                                                                : KILN_ERROR;
}

int outcome_from_name(std::string_view name)
{
    for (int o = KILN_PASSED; o <= KILN_CANCELLED; ++o)
        if (name == kiln_outcome_name(o))
            return o;
    return -1;
}

} // namespace kiln
