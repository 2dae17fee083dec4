// Reading config files: the main file, then its drop-ins merged in, every
// value keeping the file, line and column it came from (config.hpp).
#include <kiln/config.hpp>

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "config_doc.hpp"

namespace kiln {

namespace {

// Reads the whole file ourselves so an unreadable one reports strerror rather
// than toml++'s generic "file could not be opened".
std::string read_file(const std::string &path)
{
    std::FILE *f = std::fopen(path.c_str(), "rb");
    if (!f)
        throw ConfigError(path + ": cannot read: " + std::strerror(errno));
    std::string text;
    char buf[8192];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        text.append(buf, n);
    int err = std::ferror(f) ? errno : 0; // e.g. EISDIR: fopen accepts a directory
    std::fclose(f);
    if (err)
        throw ConfigError(path + ": cannot read: " + std::strerror(err));
    return text;
}

toml::table parse_toml(const std::string &text, const std::string &name)
{
    try {
        return toml::parse(text, name);
    } catch (const toml::parse_error &e) {
        throw ConfigError(format_error(name, e.source().begin, "", std::string(e.description())));
    }
}

bool ends_with(const std::string &s, const std::string &suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Moves src's entries into dst: a value replaces dst's, a table merges into
// dst's table, an array of tables is appended to dst's.  Moving (never
// copying) keeps each node's source region, i.e. its file, line and column.
void merge_into(toml::table &dst, toml::table &src)
{
    for (auto &&[k, v] : src) {
        toml::node *have = dst.get(k.str());
        if (have && have->is_table() && v.is_table()) {
            merge_into(*have->as_table(), *v.as_table());
        } else if (have && have->is_array_of_tables() && v.is_array_of_tables()) {
            toml::array &to = *have->as_array();
            for (auto &item : *v.as_array())
                to.push_back(std::move(*item.as_table()));
        } else {
            // A named copy of the key: C++17 lambdas cannot capture a
            // structured binding (g++ allows it; clang before 16 does not).
            const toml::key &key = k;
            v.visit([&](auto &&n) { dst.insert_or_assign(key, std::move(n)); });
        }
    }
}

} // namespace

ConfigTable parse_config_string(const std::string &text, const std::string &name)
{
    auto doc = std::make_shared<ConfigTable::Shared>();
    doc->root = parse_toml(text, name);
    doc->files.push_back(name);
    const toml::table *root = &doc->root;
    return ConfigTable(std::move(doc), root, name, "");
}

ConfigTable load_config_file(const std::string &path)
{
    return parse_config_string(read_file(path), path);
}

std::string config_dropin_dir(const std::string &path)
{
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
    std::string stem = slash == std::string::npos ? path : path.substr(slash + 1);
    if (ends_with(stem, ".toml") && stem.size() > 5)
        stem.resize(stem.size() - 5);
    return dir + "conf.d/" + stem;
}

std::vector<std::string> config_dropins(const std::string &path)
{
    std::string dir = config_dropin_dir(path);
    std::vector<std::string> out;
    DIR *d = opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return out; // no drop-ins
        throw ConfigError(dir + ": cannot read: " + std::strerror(errno));
    }
    while (struct dirent *e = readdir(d)) {
        std::string name = e->d_name;
        if (name[0] == '.' || !ends_with(name, ".toml") || name.size() == 5)
            continue; // hidden files (editors' temporaries), other suffixes
        struct stat st;
        std::string file = dir + "/" + name;
        if (stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
            continue;
        out.push_back(file); // a dangling link is reported when read
    }
    closedir(d);
    std::sort(out.begin(), out.end()); // one directory: byte order of the names
    return out;
}

ConfigTable load_config_with_dropins(const std::string &path)
{
    auto doc = std::make_shared<ConfigTable::Shared>();
    doc->root = parse_toml(read_file(path), path);
    doc->files.push_back(path);
    for (const auto &file : config_dropins(path)) {
        toml::table more = parse_toml(read_file(file), file);
        doc->files.push_back(file);
        merge_into(doc->root, more);
    }
    const toml::table *root = &doc->root;
    return ConfigTable(std::move(doc), root, path, "");
}

} // namespace kiln
