#pragma once
// What config.cpp (the tables and their getters) and config_files.cpp
// (reading files and drop-ins) share: the parsed document and the error
// format.  Private to libkiln.
#include <kiln/config.hpp>

#include <toml++/toml.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace kiln {

// Start-up code reads configuration from one thread, so no lock: the known
// sets are only written while the daemon (or a plugin's init) reads its keys.
struct ConfigTable::Shared {
    toml::table root;
    // The files merged into root: the main one, then its drop-ins in the
    // order applied.  Every node keeps the name of the file it came from
    // (toml::source_region::path), so errors name the right one.
    std::vector<std::string> files;
    std::map<const toml::table *, std::set<std::string, std::less<>>> known;
};

// "file:line:col: path: why", dropping the parts that are unknown (the
// default-constructed table has no file, an absent key no position).
std::string format_error(const std::string &file, const toml::source_position &pos,
                         const std::string &keypath, const std::string &why);

} // namespace kiln
