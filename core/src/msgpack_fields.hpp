#pragma once
// The msgpack side of messages.cpp: a message's fields are described once,
// by a describe(io, message) function template, and that one description
// drives a Counter (the map size msgpack wants up front), a Writer
// (encoding) and a Reader (decoding and validation), so a key cannot be
// spelt one way on the wire and another way back.  Every shape mistake
// becomes one error naming the type and field.  Private to libkiln.
#include "kiln/messages.hpp"

#include <kiln/plugin.h>

#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>
#include <msgpack.hpp>

namespace kiln::wire {

using Obj = msgpack::object;
enum Need { kRequired, kOptional };

// The describe() overloads live in messages.cpp, also in kiln::wire: the
// Writer's map() and the Reader's maps() find them by argument-dependent
// lookup on the IO type when they are instantiated there.

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

} // namespace kiln::wire
