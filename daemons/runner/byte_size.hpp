#pragma once
// Byte counts in runner.toml (min_free): an integer number of bytes, or a
// string with a binary unit, "512M", "2G", "1T" (also "2GiB", "2GB": the
// same, powers of 1024).  And the other way, for messages: "1.5 GiB".
#include <cstdint>
#include <optional>
#include <string>

#include <kiln/config.hpp>

namespace kiln {

// nullopt for anything else (negative, a fraction, an unknown unit, overflow).
std::optional<uint64_t> parse_byte_size(const std::string &text);
// The key as a byte count, or fallback when absent; throws ConfigError
// naming the key for a wrong type or value.
uint64_t config_byte_size(const ConfigTable &t, const std::string &key, uint64_t fallback);
// "512 B", "3.2 MiB", "76.0 GiB": one decimal from KiB up.
std::string format_bytes(uint64_t n);

} // namespace kiln
