#pragma once
// Configuration files: TOML read with toml++.  Every error names the file,
// line, column and key ("runner.toml:4:9: runner.slots: expected an integer
// from 1 to 256, got string").  Keys a reader did not ask for are reported by
// reject_unknown_keys(), never ignored silently.
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace toml {
inline namespace v3 {
class table;
class node;
}
} // namespace toml

namespace kiln {

class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// One TOML table of a loaded file, with the dotted path that leads to it
// ("repo[1]") for error messages.  Cheap to copy; shares the parsed document.
// Typed getters throw ConfigError on a wrong type or out-of-range value and
// record the key as known.
class ConfigTable {
  public:
    ConfigTable(); // an empty table (a plugin with no config)

    const std::string &file() const { return file_; }
    const std::string &path() const { return path_; }
    bool has(const std::string &key) const;

    std::string string(const std::string &key, const std::string &fallback) const;
    std::optional<std::string> optional_string(const std::string &key) const;
    std::string required_string(const std::string &key) const;
    int64_t integer(const std::string &key, int64_t fallback, int64_t min, int64_t max) const;
    bool boolean(const std::string &key, bool fallback) const;
    // "250ms", "5s", "10m", "1h", or an integer number of seconds.
    uint64_t duration_ms(const std::string &key, uint64_t fallback) const;
    // A string or an array of strings.
    std::vector<std::string> strings(const std::string &key,
                                     const std::vector<std::string> &fallback) const;

    // A sub-table ([runner]); an empty one when absent.
    ConfigTable table(const std::string &key) const;
    // An array of tables ([[repo]]); empty when absent.
    std::vector<ConfigTable> tables(const std::string &key) const;

    // Mark a key as known without reading it (e.g. a key handled elsewhere).
    void accept(const std::string &key) const;
    // Throws ConfigError naming the first key (in file order) nobody asked for.
    void reject_unknown_keys() const;
    // The names of unknown keys, for callers that prefer to warn.
    std::vector<std::string> unknown_keys() const;

    // "file:line:col: path.key: why" for key (or for the table itself when key is empty).
    std::string error_at(const std::string &key, const std::string &why) const;

    // Non-throwing typed access for the plugin host: 0, -ENOENT, -EINVAL
    // (message set to error_at(...) on -EINVAL).
    int get_string(const std::string &key, std::string &out, std::string &message) const;
    int get_int(const std::string &key, int64_t &out, std::string &message) const;
    int get_bool(const std::string &key, bool &out, std::string &message) const;
    int get_duration_ms(const std::string &key, uint64_t &out, std::string &message) const;

    struct Shared; // the parsed document and the set of keys asked for
  private:
    friend ConfigTable load_config_file(const std::string &path);
    friend ConfigTable parse_config_string(const std::string &text, const std::string &name);
    friend ConfigTable load_config_with_dropins(const std::string &path);
    ConfigTable(std::shared_ptr<Shared> doc, const toml::table *table, std::string file,
                std::string path);
    const toml::node *node(const std::string &key) const;

    std::shared_ptr<Shared> doc_;
    const toml::table *table_ = nullptr;
    std::string file_;
    std::string path_;
};

// Parse a file; a syntax error or unreadable file throws ConfigError
// "file:line:col: why" (or "file: why").  Returns the root table.
ConfigTable load_config_file(const std::string &path);
// The same from a string, `name` standing for the file name in errors.
ConfigTable parse_config_string(const std::string &text, const std::string &name);

// Drop-ins: DIR/NAME.toml is completed by DIR/conf.d/NAME/*.toml (e.g.
// /etc/kiln/runner.toml by /etc/kiln/conf.d/runner/*.toml), the drop-ins
// applied in byte order of their names, skipping names starting with '.'.
// A key in a drop-in replaces the value read so far; tables ([runner])
// merge key by key; an array of tables ([[repo]]) is appended to.  Every
// value keeps its own file, line and column for error messages.  No
// drop-in directory means no drop-ins.
std::string config_dropin_dir(const std::string &path);
// The drop-in files of `path`, in the order applied.
std::vector<std::string> config_dropins(const std::string &path);
// load_config_file(path) with its drop-ins merged in.  file() is `path`.
ConfigTable load_config_with_dropins(const std::string &path);

// "5s" → 5000 etc.; nullopt when not a duration.
std::optional<uint64_t> parse_duration_ms(const std::string &text);

} // namespace kiln
