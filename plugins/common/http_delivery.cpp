// Maps an HTTP attempt's result to a delivery (see http_delivery.hpp).
#include "http_delivery.hpp"

#include <cerrno>

#include <curl/curl.h>

namespace kiln_http {

namespace {

constexpr uint64_t kMaxRetryAfterMs = 24ull * 3600 * 1000;
constexpr size_t kErrorBodyBytes = 200; // of the response, in a refusal's reason

int errno_of_curl(int code)
{
    switch (code) {
    case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING: return -ECONNRESET;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE: return -EPROTO;
    default: return -EIO;
    }
}

// A request that can never work as configured (not a URL curl takes).
bool curl_refusal(int code)
{
    return code == CURLE_URL_MALFORMAT || code == CURLE_UNSUPPORTED_PROTOCOL;
}

} // namespace

std::string one_line(const std::string &bytes, size_t max)
{
    std::string out;
    for (unsigned char c : bytes) {
        if (out.size() >= max)
            break;
        if (c < 0x20 || c == 0x7f) {
            if (!out.empty() && out.back() != ' ')
                out += ' ';
        } else {
            out += static_cast<char>(c);
        }
    }
    if (out.size() > max)
        out.resize(max);
    // Never end inside a UTF-8 sequence (bytes may have been cut anywhere).
    size_t end = out.size(), back = 0;
    while (back < 4 && back < end && (static_cast<unsigned char>(out[end - 1 - back]) & 0xC0) == 0x80)
        back++;
    if (back < end) {
        unsigned char lead = static_cast<unsigned char>(out[end - 1 - back]);
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (lead >= 0x80 && need != back + 1)
            out.resize(end - 1 - back);
    }
    while (!out.empty() && out.back() == ' ')
        out.pop_back();
    return out;
}

uint64_t retry_after_ms(const std::string &value, time_t now)
{
    if (value.empty())
        return 0;
    bool digits = value.size() <= 12;
    for (char c : value)
        digits = digits && c >= '0' && c <= '9';
    uint64_t ms;
    if (digits) {
        ms = std::stoull(value) * 1000;
    } else {
        time_t when = curl_getdate(value.c_str(), nullptr); // RFC 1123 and the older forms
        if (when < 0)
            return 0;
        ms = when > now ? static_cast<uint64_t>(when - now) * 1000 : 0;
    }
    return ms > kMaxRetryAfterMs ? kMaxRetryAfterMs : ms;
}

Delivery delivery_of(const Response &r, time_t now)
{
    Delivery d;
    if (r.cancelled) {
        d.status = -ECANCELED;
        d.error = "cancelled";
        return d;
    }
    if (r.curl_code != 0) {
        d.status = errno_of_curl(r.curl_code);
        d.rejected = curl_refusal(r.curl_code);
        d.error = one_line(r.curl_error, 300);
        return d;
    }
    if (r.status >= 200 && r.status < 300)
        return d;
    d.error = "HTTP " + std::to_string(r.status);
    std::string body = one_line(r.body_start, kErrorBodyBytes);
    if (!body.empty())
        d.error += ": " + body;
    if (r.status == 429 || r.status == 503 || r.status == 408 || r.status >= 500) {
        d.status = r.status == 408 ? -ETIMEDOUT : -EAGAIN;
        if (r.status == 429 || r.status == 503)
            d.retry_after_ms = retry_after_ms(r.retry_after, now);
        return d;
    }
    d.rejected = true;
    d.status = r.status == 401 || r.status == 403 ? -EACCES : r.status == 404 ? -ENOENT : -EINVAL;
    return d;
}

} // namespace kiln_http
