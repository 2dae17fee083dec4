#pragma once
// Message payloads built by hand for the messages tests: a msgpack map from
// key/value pairs, so one field at a time can be dropped, retyped or made
// hostile, and valid commit, register and result maps to start from.
// Include it before test.hpp: msgpack.hpp pulls in <iostream>, whose
// basic_ios::fail() cmocka's fail() macro would break.
#include <msgpack.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <kiln/messages.hpp>

namespace kiln::test {

inline const std::string kSha1 = "0123456789abcdef0123456789abcdef01234567";
inline const std::string kSha256 = std::string(64, 'e');

struct Kv {
    std::string key;
    std::string packed; // the value, already packed
};
using Kvs = std::vector<Kv>;

template <typename T> std::string P(const T &v)
{
    msgpack::sbuffer sb;
    msgpack::pack(sb, v);
    return std::string(sb.data(), sb.size());
}

inline std::string map_of(const Kvs &kvs)
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

inline std::string array_of(const std::vector<std::string> &packed)
{
    msgpack::sbuffer sb;
    msgpack::packer<msgpack::sbuffer>(sb).pack_array(static_cast<uint32_t>(packed.size()));
    for (const auto &p : packed)
        sb.write(p.data(), p.size());
    return std::string(sb.data(), sb.size());
}

// kvs with `key` replaced by (or, if absent, extended with) `packed`.
inline Kvs with(Kvs kvs, const std::string &key, const std::string &packed)
{
    for (Kv &kv : kvs)
        if (kv.key == key) {
            kv.packed = packed;
            return kvs;
        }
    kvs.push_back({key, packed});
    return kvs;
}

inline Kvs without(Kvs kvs, const std::string &key)
{
    for (size_t i = 0; i < kvs.size(); ++i)
        if (kvs[i].key == key)
            kvs.erase(kvs.begin() + i);
    return kvs;
}

// "OK" or the decoder's error.
inline std::string decode_err(const std::string &payload)
{
    Message m;
    std::string err;
    return decode_message(payload, m, err) ? "OK" : err;
}

inline Kvs commit_kvs()
{
    return {{"type", P("commit")},   {"id", P(7)},          {"repo", P("example")},
            {"url", P("/srv/x.git")}, {"branch", P("main")}, {"commit", P(kSha1)}};
}
inline Kvs register_kvs()
{
    return {{"type", P("register")}, {"id", P(1)}, {"name", P("r1")}, {"slots", P(2)}};
}
inline std::string test_map(const std::string &name, const std::string &outcome)
{
    return map_of({{"name", P(name)}, {"outcome", P(outcome)}, {"duration_ms", P(5)}});
}
inline Kvs result_kvs()
{
    return {{"type", P("result")},   {"id", P(3)},           {"job_id", P(4)},
            {"attempt", P(1)},        {"commit", P(kSha1)},   {"outcome", P("passed")},
            {"tests", array_of({test_map("a", "passed"), test_map("b", "skipped"),
                                test_map("c", "failed")})}};
}

} // namespace kiln::test
