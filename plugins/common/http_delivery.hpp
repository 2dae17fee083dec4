#pragma once
// What one HTTP attempt means for a report's delivery (struct
// kiln_delivery): 2xx delivered; no connection, a time-out, a 5xx, 408 and
// 429 are temporary (the host tries again, after Retry-After when the
// receiver gave one); any other status is a refusal, not sent again, with
// "HTTP 401: <first bytes of the body>" as its reason.
#include <cstdint>
#include <ctime>
#include <string>

#include "http_client.hpp"

namespace kiln_http {

struct Delivery {
    int status = 0;          // 0 or a negative errno
    bool rejected = false;   // refused for good
    uint64_t retry_after_ms = 0;
    std::string error;       // one line; "" when delivered
};

Delivery delivery_of(const Response &r, time_t now = time(nullptr));

// Retry-After: delay-seconds or an HTTP-date, as milliseconds from `now`;
// 0 when absent or unreadable; at most a day.
uint64_t retry_after_ms(const std::string &value, time_t now);

// Up to `max` bytes of `bytes` as one printable line: control characters
// (newlines included) become spaces, runs of them one; cut on a UTF-8
// character boundary.
std::string one_line(const std::string &bytes, size_t max);

} // namespace kiln_http
