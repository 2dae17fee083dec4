#include "byte_size.hpp"

#include <cerrno>
#include <cstdio>

namespace kiln {

std::optional<uint64_t> parse_byte_size(const std::string &text)
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
    if (unit.size() > 1 && (unit.substr(1) == "B" || unit.substr(1) == "iB"))
        unit.resize(1); // "2GB", "2GiB": the same as "2G"
    int shift;
    if (unit.empty() || unit == "B")
        shift = 0;
    else if (unit == "K" || unit == "k")
        shift = 10;
    else if (unit == "M")
        shift = 20;
    else if (unit == "G")
        shift = 30;
    else if (unit == "T")
        shift = 40;
    else
        return std::nullopt;
    if (shift && n > (UINT64_MAX >> shift))
        return std::nullopt;
    return n << shift;
}

uint64_t config_byte_size(const ConfigTable &t, const std::string &key, uint64_t fallback)
{
    const std::string expected = "expected a byte count (an integer, or a string such as "
                                 "\"512M\", \"2G\", \"1T\"), got ";
    int64_t i = 0;
    std::string message;
    int rc = t.get_int(key, i, message);
    if (rc == -ENOENT)
        return fallback;
    if (rc == 0) {
        if (i < 0)
            throw ConfigError(t.error_at(key, expected + std::to_string(i)));
        return static_cast<uint64_t>(i);
    }
    std::string s;
    if (t.get_string(key, s, message) != 0)
        throw ConfigError(t.error_at(key, expected + "another type"));
    auto n = parse_byte_size(s);
    if (!n)
        throw ConfigError(t.error_at(key, expected + "\"" + s + "\""));
    return *n;
}

std::string format_bytes(uint64_t n)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024)
        return std::to_string(n) + " B";
    double v = static_cast<double>(n) / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0])
        v /= 1024, u++;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
    return buf;
}

} // namespace kiln
