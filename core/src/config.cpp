// Config tables over toml++ (reading files: config_files.cpp).  The parsed
// document lives in one Shared object that every ConfigTable of the file
// points to, together with the set of keys each table was asked for; that
// set is what lets reject_unknown_keys() name a misspelt key instead of
// ignoring it.
#include <kiln/config.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "config_doc.hpp"

namespace kiln {

namespace {

// Our own words rather than toml++'s friendly names ("floating-point"),
// indexed by toml::node_type (none, table, array, string, integer, ...).
const char *type_name(const toml::node &n)
{
    static const char *const names[] = {"nothing", "table",   "array", "string", "integer",
                                        "float",   "boolean", "date",  "time",   "date-time"};
    auto i = static_cast<size_t>(n.type());
    return i < sizeof names / sizeof names[0] ? names[i] : "nothing";
}

// A string value as it appears in a message: quoted, and cut short so a
// pasted blob does not swamp the error.
std::string quoted(const std::string &s)
{
    constexpr size_t max = 40;
    if (s.size() <= max)
        return "\"" + s + "\"";
    return "\"" + s.substr(0, max) + "...\"";
}

// The file a node came from: with drop-ins merged, not always the main one.
std::string file_of(const toml::source_region &src, const std::string &fallback)
{
    return src.path && !src.path->empty() ? *src.path : fallback;
}

std::string join_path(const std::string &path, const std::string &key)
{
    if (path.empty())
        return key;
    if (key.empty())
        return path;
    // Array items ("[3]") attach without a dot.
    return key[0] == '[' ? path + key : path + "." + key;
}

std::string integer_range(int64_t min, int64_t max)
{
    constexpr int64_t lo = std::numeric_limits<int64_t>::min();
    constexpr int64_t hi = std::numeric_limits<int64_t>::max();
    if (min == lo && max == hi)
        return "expected an integer";
    if (max == hi)
        return "expected an integer of at least " + std::to_string(min);
    if (min == lo)
        return "expected an integer of at most " + std::to_string(max);
    return "expected an integer from " + std::to_string(min) + " to " + std::to_string(max);
}

const std::string duration_expected = "expected a duration like \"5s\", got ";

// The common shape of get_string/get_int/get_bool: absent, right type, or a
// message saying what was expected and what was found.
template <class T>
int get_value(const ConfigTable &t, const toml::node *n, const std::string &key,
              const char *expected, T &out, std::string &message)
{
    if (!n)
        return -ENOENT;
    if (auto v = n->as<T>()) {
        out = v->get();
        return 0;
    }
    message = t.error_at(key, std::string(expected) + ", got " + type_name(*n));
    return -EINVAL;
}

// Throwing getters over get_*: a wrong type throws, absence means fallback.
bool found(int rc, const std::string &message)
{
    if (rc == -EINVAL)
        throw ConfigError(message);
    return rc == 0;
}

struct Unknown {
    size_t rank; // of its file in Shared::files: the main file first
    std::string file;
    toml::source_position pos;
    std::string key;
};

// The keys of `table` nobody asked for, in file order.  The key's own source
// position is used (where the typo is), falling back to its value's.
std::vector<Unknown> collect_unknown(const ConfigTable::Shared *doc, const toml::table *table,
                                     const std::string &fallback)
{
    std::vector<Unknown> out;
    if (!doc || !table)
        return out;
    auto it = doc->known.find(table);
    auto known = it == doc->known.end() ? nullptr : &it->second;
    for (auto &&[k, v] : *table) {
        if (known && known->count(k.str()))
            continue;
        toml::source_region src = k.source();
        if (!src.begin)
            src = v.source();
        std::string file = file_of(src, fallback);
        size_t rank = std::find(doc->files.begin(), doc->files.end(), file) - doc->files.begin();
        out.push_back({rank, file, src.begin, std::string(k.str())});
    }
    std::stable_sort(out.begin(), out.end(), [](const Unknown &a, const Unknown &b) {
        if (a.rank != b.rank)
            return a.rank < b.rank;
        return a.pos.line != b.pos.line ? a.pos.line < b.pos.line : a.pos.column < b.pos.column;
    });
    return out;
}

} // namespace

// "file:line:col: path: why", dropping the parts that are unknown (the
// default-constructed table has no file, an absent key no position).
std::string format_error(const std::string &file, const toml::source_position &pos,
                         const std::string &keypath, const std::string &why)
{
    std::string out = file;
    if (pos.line > 0)
        out += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
    if (!out.empty())
        out += ": ";
    if (!keypath.empty())
        out += keypath + ": ";
    return out + why;
}

ConfigTable::ConfigTable() = default;

ConfigTable::ConfigTable(std::shared_ptr<Shared> doc, const toml::table *table, std::string file,
                         std::string path)
    : doc_(std::move(doc)), table_(table), file_(std::move(file)), path_(std::move(path))
{
}

// Every lookup goes through here, so every way of reading a key marks it known.
const toml::node *ConfigTable::node(const std::string &key) const
{
    if (!table_ || !doc_)
        return nullptr;
    doc_->known[table_].insert(key);
    return table_->get(key);
}

bool ConfigTable::has(const std::string &key) const { return node(key) != nullptr; }

void ConfigTable::accept(const std::string &key) const { node(key); }

std::string ConfigTable::error_at(const std::string &key, const std::string &why) const
{
    toml::source_region src{};
    const toml::node *n = (table_ && !key.empty()) ? table_->get(key) : nullptr;
    if (n)
        src = n->source();
    else if (table_)
        src = table_->source(); // absent key: point at the table that lacks it
    return format_error(file_of(src, file_), src.begin, join_path(path_, key), why);
}

int ConfigTable::get_string(const std::string &key, std::string &out, std::string &message) const
{
    return get_value(*this, node(key), key, "expected a string", out, message);
}

int ConfigTable::get_int(const std::string &key, int64_t &out, std::string &message) const
{
    return get_value(*this, node(key), key, "expected an integer", out, message);
}

int ConfigTable::get_bool(const std::string &key, bool &out, std::string &message) const
{
    return get_value(*this, node(key), key, "expected true or false", out, message);
}

int ConfigTable::get_duration_ms(const std::string &key, uint64_t &out,
                                 std::string &message) const
{
    const toml::node *n = node(key);
    if (!n)
        return -ENOENT;
    if (auto s = n->as_string()) {
        if (auto ms = parse_duration_ms(s->get())) {
            out = *ms;
            return 0;
        }
        message = error_at(key, duration_expected + quoted(s->get()));
        return -EINVAL;
    }
    if (auto i = n->as_integer()) {
        int64_t secs = i->get();
        if (secs >= 0 && static_cast<uint64_t>(secs) <= UINT64_MAX / 1000) {
            out = static_cast<uint64_t>(secs) * 1000;
            return 0;
        }
        message = error_at(key, duration_expected + std::to_string(secs));
        return -EINVAL;
    }
    message = error_at(key, duration_expected + type_name(*n));
    return -EINVAL;
}

std::string ConfigTable::string(const std::string &key, const std::string &fallback) const
{
    std::string out, message;
    return found(get_string(key, out, message), message) ? out : fallback;
}

std::optional<std::string> ConfigTable::optional_string(const std::string &key) const
{
    std::string out, message;
    if (!found(get_string(key, out, message), message))
        return std::nullopt;
    return out;
}

// A required string must also be non-empty: `name = ""` is as useless as no
// name, and failing at start-up beats a confusing error later.
std::string ConfigTable::required_string(const std::string &key) const
{
    std::string out, message;
    if (!found(get_string(key, out, message), message))
        throw ConfigError(error_at(key, "required key is missing"));
    if (out.empty())
        throw ConfigError(error_at(key, "expected a non-empty string, got \"\""));
    return out;
}

int64_t ConfigTable::integer(const std::string &key, int64_t fallback, int64_t min,
                             int64_t max) const
{
    const toml::node *n = node(key);
    if (!n)
        return fallback;
    auto i = n->as_integer();
    if (!i)
        throw ConfigError(error_at(key, integer_range(min, max) + ", got " + type_name(*n)));
    int64_t v = i->get();
    if (v < min || v > max)
        throw ConfigError(error_at(key, integer_range(min, max) + ", got " + std::to_string(v)));
    return v;
}

bool ConfigTable::boolean(const std::string &key, bool fallback) const
{
    bool out = false;
    std::string message;
    return found(get_bool(key, out, message), message) ? out : fallback;
}

uint64_t ConfigTable::duration_ms(const std::string &key, uint64_t fallback) const
{
    uint64_t out = 0;
    std::string message;
    return found(get_duration_ms(key, out, message), message) ? out : fallback;
}

std::vector<std::string> ConfigTable::strings(const std::string &key,
                                              const std::vector<std::string> &fallback) const
{
    const toml::node *n = node(key);
    if (!n)
        return fallback;
    if (auto s = n->as_string())
        return {s->get()};
    auto arr = n->as_array();
    if (!arr)
        throw ConfigError(error_at(key, std::string("expected a string or an array of strings, got ") +
                                            type_name(*n)));
    std::vector<std::string> out;
    for (size_t i = 0; i < arr->size(); i++) {
        const toml::node &item = *arr->get(i);
        auto s = item.as_string();
        if (!s)
            throw ConfigError(format_error(file_of(item.source(), file_), item.source().begin,
                                           join_path(path_, key + "[" + std::to_string(i) + "]"),
                                           std::string("expected a string, got ") +
                                               type_name(item)));
        out.push_back(s->get());
    }
    return out;
}

ConfigTable ConfigTable::table(const std::string &key) const
{
    const toml::node *n = node(key);
    if (!n)
        // Absent: an empty table that still knows its path, so a caller's
        // required_string() on it names "runner.name".
        return ConfigTable(doc_, nullptr, file_, join_path(path_, key));
    auto t = n->as_table();
    if (!t)
        throw ConfigError(error_at(key, std::string("expected a table, got ") + type_name(*n)));
    return ConfigTable(doc_, t, file_, join_path(path_, key));
}

std::vector<ConfigTable> ConfigTable::tables(const std::string &key) const
{
    const toml::node *n = node(key);
    if (!n)
        return {};
    auto arr = n->as_array();
    if (!arr)
        // The likely mistake is [repo] where [[repo]] was meant; say so.
        throw ConfigError(error_at(key, "expected an array of tables ([[" + key + "]]), got " +
                                            type_name(*n)));
    std::vector<ConfigTable> out;
    for (size_t i = 0; i < arr->size(); i++) {
        const toml::node &item = *arr->get(i);
        std::string path = join_path(path_, key + "[" + std::to_string(i) + "]");
        auto t = item.as_table();
        if (!t)
            throw ConfigError(format_error(file_of(item.source(), file_), item.source().begin, path,
                                           std::string("expected a table, got ") +
                                               type_name(item)));
        out.push_back(ConfigTable(doc_, t, file_, path));
    }
    return out;
}

std::vector<std::string> ConfigTable::unknown_keys() const
{
    std::vector<std::string> out;
    for (auto &u : collect_unknown(doc_.get(), table_, file_))
        out.push_back(join_path(path_, u.key));
    return out;
}

void ConfigTable::reject_unknown_keys() const
{
    auto unknown = collect_unknown(doc_.get(), table_, file_);
    if (!unknown.empty())
        throw ConfigError(format_error(unknown[0].file, unknown[0].pos,
                                       join_path(path_, unknown[0].key), "unknown key"));
}

// Digits then exactly one unit.  A bare number in a string is refused: the
// integer form already means seconds, and "5" in quotes is more likely a
// forgotten unit than a deliberate choice.
std::optional<uint64_t> parse_duration_ms(const std::string &text)
{
    size_t i = 0;
    uint64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        uint64_t d = static_cast<uint64_t>(text[i] - '0');
        if (n > (UINT64_MAX - d) / 10)
            return std::nullopt;
        n = n * 10 + d;
        i++;
    }
    if (i == 0)
        return std::nullopt; // empty, negative, or junk first
    std::string unit = text.substr(i);
    uint64_t scale;
    if (unit == "ms")
        scale = 1;
    else if (unit == "s")
        scale = 1000;
    else if (unit == "m")
        scale = 60 * 1000;
    else if (unit == "h")
        scale = 60 * 60 * 1000;
    else
        return std::nullopt;
    if (n > UINT64_MAX / scale)
        return std::nullopt;
    return n * scale;
}

} // namespace kiln
