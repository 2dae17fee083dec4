#pragma once
// Times in the documents the report plugins write (files' JSON, webhook's):
// ISO 8601 in UTC with milliseconds, "2024-05-01T12:34:56.789Z".
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace kiln_time {

// "" for a time not known (0 or before 1970: the ABI's "unset").
inline std::string iso8601_ms(int64_t unix_ms)
{
    if (unix_ms <= 0)
        return "";
    time_t t = static_cast<time_t>(unix_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return "";
    char buf[40];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(unix_ms % 1000));
    return buf;
}

} // namespace kiln_time
