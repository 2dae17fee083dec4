// webhook — the report plugin that POSTs a JSON document (version 1, see
// webhook_document.cpp and kiln-plugin(7)) for each report event to `url`,
// signed with X-Kiln-Signature-256 when `secret_file` is set.  One HTTP
// request per event on the dispatcher's loop (kiln_http::Client); the host
// keeps undelivered events and calls again (struct kiln_delivery).
//
// It hears events (descriptor `events`; `wants` answers from the `events`
// key) and also implements report(), for the final result, so that a host
// without events support still posts "finished" documents.
#include <cerrno>
#include <memory>
#include <string>

#include <kiln/plugin.h>

#include "config_list.hpp"
#include "http_report.hpp"
#include "secret_file.hpp"
#include "webhook_document.hpp"

namespace {

struct Self {
    const kiln_host *host = nullptr;
    std::string url, secret;
    unsigned events = 0; // 1 << kind
    kiln_http::Settings settings;
    kiln_http::Client *client = nullptr;
    std::unique_ptr<kiln_http::Sender> sender;
};

int read_config(const kiln_host *host, Self &s)
{
    int rc = kiln_http::read_url(host, "url", s.url);
    if (rc == -ENOENT) {
        host->log(host, KILN_LOG_ERR, "url: required: where the documents are POSTed");
        return -EINVAL;
    }
    if (rc < 0)
        return rc;
    s.events = 0;
    for (int k = KILN_EVENT_QUEUED; k <= KILN_EVENT_FINISHED; k++)
        s.events |= 1u << k;
    std::string list;
    rc = kiln_config::read_list(host, "events", list);
    if (rc == 0) {
        std::string why;
        if (!(s.events = kiln_webhook::parse_events(list, why))) {
            host->log(host, KILN_LOG_ERR, "events: %s", why.c_str());
            return -EINVAL;
        }
    } else if (rc != -ENOENT) {
        return rc;
    }
    if ((rc = kiln_http::read_settings(host, s.settings)) < 0)
        return rc;
    rc = kiln_http::read_secret_file(host, "secret_file", false, s.secret);
    return rc == -ENOENT ? 0 : rc;
}

kiln_http::Request request_for(const Self &s, const kiln_report_event &ev)
{
    kiln_http::Request req;
    req.url = s.url;
    req.timeout_ms = s.settings.timeout_ms;
    req.ca_file = s.settings.ca_file;
    req.body = kiln_webhook::document(ev);
    req.headers = {"Content-Type: application/json", kiln_http::user_agent_header(),
                   std::string("X-Kiln-Event: ") + kiln_webhook::event_name(ev.kind),
                   "X-Kiln-Delivery: " + std::to_string(ev.delivery_id)};
    if (!s.secret.empty())
        req.headers.push_back("X-Kiln-Signature-256: " + kiln_webhook::signature(s.secret, req.body));
    return req;
}

bool valid_event(const kiln_report_event *ev)
{
    return ev && ev->report && ev->report->commit && kiln_webhook::event_name(ev->kind) &&
           (ev->report->tests || !ev->report->n_tests);
}

int webhook_wants(void *self, int kind) noexcept
{
    Self *s = static_cast<Self *>(self);
    return kiln_webhook::event_name(kind) && (s->events & (1u << kind)) ? 1 : 0;
}

int webhook_event(void *self, const kiln_report_event *ev, kiln_delivery_cb cb, void *arg,
                  void **op) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!valid_event(ev))
        return -EINVAL;
    try {
        return s->sender->send(request_for(*s, *ev), cb, arg, op);
    } catch (...) {
        return -ENOMEM;
    }
}

// An older host's final result: a "finished" document (delivery_id 0), when
// `events` asks for finished.
int webhook_report(void *self, const kiln_report *rep, kiln_done_cb cb, void *arg,
                   void **op) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!rep)
        return -EINVAL;
    try {
        kiln_report_event ev = kiln_http::finished_event(rep);
        if (!valid_event(&ev))
            return -EINVAL;
        if (!webhook_wants(self, KILN_EVENT_FINISHED)) // not asked for: done, later
            return s->sender->skip(cb, arg, op);
        return s->sender->send(request_for(*s, ev), cb, arg, op);
    } catch (...) {
        return -ENOMEM;
    }
}

void webhook_cancel(void *self, void *op) noexcept { static_cast<Self *>(self)->sender->cancel(op); }

int webhook_init(const kiln_host *host, void **self) noexcept
{
    try {
        auto s = std::make_unique<Self>();
        s->host = host;
        int rc = read_config(host, *s);
        if (rc < 0)
            return rc;
        std::string error;
        s->client = kiln_http::Client::create(host->loop, error);
        if (!s->client) {
            host->log(host, KILN_LOG_ERR, "%s", error.c_str());
            return -ENOMEM;
        }
        s->sender = std::make_unique<kiln_http::Sender>(s->client, s->secret);
        *self = s.release();
        return 0;
    } catch (...) {
        return -ENOMEM;
    }
}

void webhook_fini(void *self) noexcept
{
    Self *s = static_cast<Self *>(self);
    s->sender.reset();
    s->client->destroy();
    delete s;
}

const char *const config_keys[] = {"url", "secret_file", "events", "timeout", "ca_file", nullptr};
const kiln_report_ops report_ops = {webhook_report};
const kiln_report_event_ops event_ops = {sizeof(kiln_report_event_ops), webhook_wants,
                                         webhook_event};
const kiln_plugin descriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_REPORT, "webhook",
    "a signed JSON document POSTed for each report event",
    config_keys, webhook_init, webhook_fini, webhook_cancel, nullptr, nullptr, &report_ops, {},
    &event_ops};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }
