// libFuzzer target: kiln::parse_config_string and the typed getters.
//
// Parse the input as a config file, then read every key found (and a few
// the daemons read) with every getter, recursing into sub-tables and arrays
// of tables, and list / reject unknown keys.  ConfigError is the only
// exception allowed (any other escapes, and libFuzzer reports it as a
// crash); the non-throwing get_* must return 0, -ENOENT or -EINVAL, with a
// message on -EINVAL.
#include "kiln/config.hpp"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            std::fprintf(stderr, "fuzz_config: invariant failed: %s (line %d)\n", #cond,        \
                         __LINE__);                                                              \
            std::abort();                                                                        \
        }                                                                                        \
    } while (0)

namespace {

const char *const kKnownKeys[] = {
    "runner", "dispatcher", "observer", "repo", "name", "url", "branch", "branches", "slots",
    "labels", "listen", "timeout", "poll_interval", "heartbeat_interval", "work_dir",
    "plugin_dir", "vcs", "exec", "shards", "keep_workspaces", "max_frame", "a", "x"};

template <class F> void guarded(F &&f)
{
    try {
        f();
    } catch (const kiln::ConfigError &e) {
        CHECK(e.what()[0] != '\0');
    }
}

void check_rc(int rc, const std::string &message)
{
    CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL);
    if (rc == -EINVAL)
        CHECK(!message.empty());
}

// Keys of `t` not read yet, as names relative to t (first component only).
std::set<std::string> keys_of(const kiln::ConfigTable &t)
{
    std::set<std::string> keys;
    const std::string prefix = t.path().empty() ? "" : t.path() + ".";
    for (auto &k : t.unknown_keys()) {
        std::string rel = k.compare(0, prefix.size(), prefix) == 0 ? k.substr(prefix.size()) : k;
        rel = rel.substr(0, rel.find_first_of(".["));
        if (!rel.empty())
            keys.insert(rel);
    }
    for (auto *k : kKnownKeys)
        keys.insert(k);
    return keys;
}

void exercise(const kiln::ConfigTable &t, int depth)
{
    if (depth > 4)
        return;
    for (const auto &key : keys_of(t)) {
        (void)t.has(key);
        guarded([&] { (void)t.string(key, "fallback"); });
        guarded([&] { (void)t.optional_string(key); });
        guarded([&] { (void)t.required_string(key); });
        guarded([&] { (void)t.integer(key, 1, 1, 256); });
        guarded([&] { (void)t.integer(key, 0, INT64_MIN, INT64_MAX); });
        guarded([&] { (void)t.boolean(key, false); });
        guarded([&] { (void)t.duration_ms(key, 1000); });
        guarded([&] { (void)t.strings(key, {"a"}); });
        guarded([&] {
            std::string s, m;
            check_rc(t.get_string(key, s, m), m);
            if (!s.empty())
                (void)kiln::parse_duration_ms(s);
        });
        guarded([&] {
            int64_t v;
            std::string m;
            check_rc(t.get_int(key, v, m), m);
        });
        guarded([&] {
            bool v;
            std::string m;
            check_rc(t.get_bool(key, v, m), m);
        });
        guarded([&] {
            uint64_t v;
            std::string m;
            check_rc(t.get_duration_ms(key, v, m), m);
        });
        // Absent keys give empty tables: recursing into those would only
        // multiply the work by the number of known keys per level.
        guarded([&] {
            const kiln::ConfigTable sub = t.table(key);
            if (t.has(key))
                exercise(sub, depth + 1);
        });
        guarded([&] {
            for (auto &sub : t.tables(key))
                exercise(sub, depth + 1);
        });
        (void)t.error_at(key, "why");
    }
    t.accept("accepted");
    (void)t.unknown_keys();
    guarded([&] { t.reject_unknown_keys(); });
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const std::string text(reinterpret_cast<const char *>(data), size);
    (void)kiln::parse_duration_ms(text);
    guarded([&] {
        const kiln::ConfigTable root = kiln::parse_config_string(text, "fuzz.toml");
        CHECK(root.file() == "fuzz.toml");
        (void)root.unknown_keys();
        guarded([&] { root.reject_unknown_keys(); });
        exercise(root, 0);
    });
    return 0;
}
