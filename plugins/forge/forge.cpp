// forge — the report plugin that sets commit statuses on GitHub, Gitea or
// Forgejo, and GitLab (see forge_status.cpp for what is sent).  One HTTP
// request per event on the dispatcher's loop (kiln_http::Client); the host
// keeps undelivered events and calls again (struct kiln_delivery).
//
// It hears events (descriptor `events`: queued, started, failing,
// finished) and also implements report(), for the final result, so that a
// host without events support still gets a success or failure status.
#include <cerrno>
#include <memory>
#include <string>

#include <kiln/plugin.h>

#include "forge_status.hpp"
#include "http_report.hpp"
#include "secret_file.hpp"

namespace {

using kiln_forge::Forge;

struct Self {
    const kiln_host *host = nullptr;
    kiln_forge::Target target;
    kiln_http::Client *client = nullptr;
    std::unique_ptr<kiln_http::Sender> sender;
};

int refuse(const kiln_host *host, const char *key, const char *why)
{
    host->log(host, KILN_LOG_ERR, "%s: %s", key, why);
    return -EINVAL;
}

// Reads and checks every key; the token last, so that a wrong key is told
// before the token file is opened.
int read_config(const kiln_host *host, kiln_forge::Target &t)
{
    const char *s = nullptr;
    int rc = host->config_string(host, "forge", &s);
    if (rc == -ENOENT)
        return refuse(host, "forge", "required: \"github\", \"gitea\" or \"gitlab\"");
    if (rc < 0)
        return rc;
    if (!kiln_forge::forge_named(s, t.forge))
        return refuse(host, "forge", "must be \"github\", \"gitea\" or \"gitlab\"");

    rc = host->config_string(host, "repository", &s);
    if (rc == -ENOENT)
        return refuse(host, "repository", "required: OWNER/NAME (GitLab: a project id or path)");
    if (rc < 0)
        return rc;
    t.repository = s;
    std::string problem = kiln_forge::repository_problem(t.forge, t.repository);
    if (!problem.empty())
        return refuse(host, "repository", problem.c_str());

    rc = kiln_http::read_url(host, "api_url", t.api_url);
    if (rc == -ENOENT) {
        t.api_url = kiln_forge::default_api_url(t.forge);
        if (t.api_url.empty())
            return refuse(host, "api_url", "required for gitea (e.g. https://gitea.example.org/api/v1)");
    } else if (rc < 0) {
        return rc;
    }

    rc = host->config_string(host, "context", &s);
    if (rc == 0) {
        t.context = s;
        if (t.context.empty() || t.context.size() > 255)
            return refuse(host, "context", "must be 1 to 255 bytes");
    } else if (rc != -ENOENT) {
        return rc;
    }

    kiln_http::Settings settings;
    if ((rc = kiln_http::read_settings(host, settings)) < 0)
        return rc;
    t.timeout_ms = settings.timeout_ms;
    t.ca_file = settings.ca_file;

    rc = kiln_http::read_secret_file(host, "token_file", true, t.token);
    if (rc == -ENOENT)
        return refuse(host, "token_file", "required: a file (mode 600) holding the API token");
    if (rc < 0)
        return rc;
    if (t.api_url.rfind("http://", 0) == 0)
        host->log(host, KILN_LOG_WARNING, "api_url: plain http: the token crosses the network unencrypted");
    return 0;
}

int start_event(Self *s, const kiln_report_event *ev, kiln_http::Request &req)
{
    std::string why;
    if (!kiln_forge::status_request(s->target, *ev, req, why)) {
        s->host->log(s->host, KILN_LOG_ERR, "event of job %llu: %s",
                     static_cast<unsigned long long>(ev->report->job_id), why.c_str());
        return -EINVAL;
    }
    return 0;
}

int forge_event(void *self, const kiln_report_event *ev, kiln_delivery_cb cb, void *arg,
                void **op) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!ev || !ev->report || ev->kind < KILN_EVENT_QUEUED || ev->kind > KILN_EVENT_FINISHED)
        return -EINVAL;
    try {
        kiln_http::Request req;
        int rc = start_event(s, ev, req);
        return rc < 0 ? rc : s->sender->send(req, cb, arg, op);
    } catch (...) {
        return -ENOMEM;
    }
}

// An older host's final result: the FINISHED event it stands for.
int forge_report(void *self, const kiln_report *rep, kiln_done_cb cb, void *arg,
                 void **op) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!rep || (!rep->tests && rep->n_tests))
        return -EINVAL;
    try {
        kiln_report_event ev = kiln_http::finished_event(rep);
        kiln_http::Request req;
        int rc = start_event(s, &ev, req);
        return rc < 0 ? rc : s->sender->send(req, cb, arg, op);
    } catch (...) {
        return -ENOMEM;
    }
}

void forge_cancel(void *self, void *op) noexcept { static_cast<Self *>(self)->sender->cancel(op); }

int forge_init(const kiln_host *host, void **self) noexcept
{
    try {
        kiln_forge::Target target;
        int rc = read_config(host, target);
        if (rc < 0)
            return rc;
        auto s = std::make_unique<Self>();
        s->host = host;
        s->target = std::move(target);
        std::string error;
        s->client = kiln_http::Client::create(host->loop, error);
        if (!s->client) {
            host->log(host, KILN_LOG_ERR, "%s", error.c_str());
            return -ENOMEM;
        }
        s->sender = std::make_unique<kiln_http::Sender>(s->client, s->target.token);
        *self = s.release();
        return 0;
    } catch (...) {
        return -ENOMEM;
    }
}

void forge_fini(void *self) noexcept
{
    Self *s = static_cast<Self *>(self);
    s->sender.reset();
    s->client->destroy();
    delete s;
}

const char *const config_keys[] = {"forge", "repository", "api_url", "token_file", "context",
                                   "timeout", "ca_file", nullptr};
const kiln_report_ops report_ops = {forge_report};
const kiln_report_event_ops event_ops = {sizeof(kiln_report_event_ops), nullptr, forge_event};
const kiln_plugin descriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_REPORT, "forge",
    "commit statuses on GitHub, Gitea/Forgejo and GitLab",
    config_keys, forge_init, forge_fini, forge_cancel, nullptr, nullptr, &report_ops, {}, &event_ops};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }
