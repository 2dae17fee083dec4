// The shared part of the HTTP report plugins (see http_report.hpp).
#include "http_report.hpp"

#include <unistd.h>

#include <cerrno>

#include "http_delivery.hpp"

#ifndef KILN_VERSION
#define KILN_VERSION "0"
#endif

namespace kiln_http {

int read_settings(const kiln_host *host, Settings &out)
{
    uint64_t ms = 0;
    int rc = host->config_duration_ms(host, "timeout", &ms);
    if (rc == 0) {
        if (ms == 0 || ms > kMaxTimeoutMs) {
            host->log(host, KILN_LOG_ERR, "timeout: must be above 0 and at most 10m");
            return -EINVAL;
        }
        out.timeout_ms = ms;
    } else if (rc != -ENOENT) {
        return rc;
    }
    const char *ca = nullptr;
    rc = host->config_string(host, "ca_file", &ca);
    if (rc == 0) {
        if (!*ca || access(ca, R_OK) != 0) {
            host->log(host, KILN_LOG_ERR, "ca_file: %s: cannot be read", *ca ? ca : "\"\"");
            return -EINVAL;
        }
        out.ca_file = ca;
    } else if (rc != -ENOENT) {
        return rc;
    }
    return 0;
}

int read_url(const kiln_host *host, const char *key, std::string &out)
{
    const char *url = nullptr;
    int rc = host->config_string(host, key, &url);
    if (rc < 0)
        return rc;
    std::string u = url;
    bool https = u.rfind("https://", 0) == 0, http = u.rfind("http://", 0) == 0;
    size_t host_at = https ? 8 : http ? 7 : 0;
    if (!host_at || u.size() <= host_at || u[host_at] == '/') {
        host->log(host, KILN_LOG_ERR, "%s: not an http:// or https:// URL with a host", key);
        return -EINVAL;
    }
    for (unsigned char c : u)
        if (c <= 0x20 || c == 0x7f) {
            host->log(host, KILN_LOG_ERR, "%s: a URL holds no spaces or control characters", key);
            return -EINVAL;
        }
    while (u.size() > host_at + 1 && u.back() == '/')
        u.pop_back();
    out = u;
    return 0;
}

std::string user_agent_header() { return std::string("User-Agent: kiln/") + KILN_VERSION; }

int Sender::send(const Request &req, kiln_delivery_cb cb, void *arg, void **op) noexcept
{
    Send how;
    how.delivery_cb = cb;
    how.arg = arg;
    return cb ? start(req, how, op) : -EINVAL;
}

int Sender::send(const Request &req, kiln_done_cb cb, void *arg, void **op) noexcept
{
    Send how;
    how.done_cb = cb;
    how.arg = arg;
    return cb ? start(req, how, op) : -EINVAL;
}

int Sender::start(const Request &req, const Send &how, void **op) noexcept
{
    return live_.start(op, [&](Send *s) {
        *s = how;
        return client_->start(req, [this, s](const Response &r) { finished(s, r); }, &s->handle);
    });
}

int Sender::skip(kiln_done_cb cb, void *arg, void **op) noexcept
{
    if (!cb)
        return -EINVAL;
    return live_.start(op, [&](Send *s) {
        s->done_cb = cb;
        s->arg = arg;
        Response delivered;
        delivered.status = 204;
        return client_->answer_later(delivered, [this, s](const Response &r) { finished(s, r); });
    });
}

void Sender::cancel(void *op) noexcept
{
    if (Send *s = live_.running(op))
        client_->cancel(s->handle);
}

void Sender::finished(Send *s, const Response &r) noexcept
{
    live_.remove(s);
    Send how = *s;
    delete s;
    Delivery d;
    kiln_ops::guarded(
        [&] {
            d = delivery_of(r);
            for (size_t at; !secret_.empty() && (at = d.error.find(secret_)) != std::string::npos;)
                d.error.replace(at, secret_.size(), "[secret]");
        },
        [&](const char *why) {
            d = Delivery();
            d.status = -ENOMEM;
            d.error.clear();
            (void)why;
        });
    const char *error = d.error.empty() ? (d.status ? "failed" : nullptr) : d.error.c_str();
    if (how.delivery_cb) {
        kiln_delivery res = {d.status, d.rejected ? 1 : 0, d.retry_after_ms, error};
        how.delivery_cb(how.arg, &res);
    } else {
        how.done_cb(how.arg, d.status, error);
    }
}

bool is_failure(int outcome)
{
    return outcome == KILN_FAILED || outcome == KILN_ERROR || outcome == KILN_TIMEOUT;
}

kiln_report_event finished_event(const kiln_report *rep)
{
    kiln_report_event ev = {};
    ev.size = sizeof ev;
    ev.kind = KILN_EVENT_FINISHED;
    ev.report = rep;
    ev.event_unix_ms = rep->finished_unix_ms;
    ev.queued_unix_ms = rep->started_unix_ms; // not known to report(): the best guess
    ev.previous_outcome = KILN_OUTCOME_NONE;
    for (size_t i = 0; i < rep->n_tests; i++) {
        int o = rep->tests[i].outcome;
        if (o >= 0 && o < 6)
            ev.counts[o]++;
    }
    return ev;
}

} // namespace kiln_http
