#pragma once
// What the HTTP report plugins (forge, webhook) share besides the client:
// the keys every one of them reads (timeout, ca_file), the deliveries of one
// plugin instance (Sender: one request per event, its response turned into
// a struct kiln_delivery), and the FINISHED event that an older host's
// report() call stands for.
#include <cstdint>
#include <string>
#include <vector>

#include <kiln/plugin.h>

#include "http_client.hpp"
#include "op_set.hpp"

namespace kiln_http {

// timeout (duration, default 10 s, at most kMaxTimeoutMs) and ca_file (a
// readable file).  0, or -EINVAL with the key and why logged.
struct Settings {
    uint64_t timeout_ms = kDefaultTimeoutMs;
    std::string ca_file;
};
int read_settings(const kiln_host *host, Settings &out);

// A URL key that must be http:// or https://; trailing slashes dropped.
// 0, -ENOENT when absent, -EINVAL (logged) otherwise.
int read_url(const kiln_host *host, const char *key, std::string &out);

// "User-Agent: kiln/VERSION"
std::string user_agent_header();

// The running deliveries of one plugin instance.
class Sender {
  public:
    // `secret` (may be ""): never shown in a delivery's error text, even
    // when a receiver echoes it back.
    Sender(Client *client, std::string secret) : client_(client), secret_(std::move(secret)) {}

    // One attempt; `cb` gets its kiln_delivery.  0 or -errno (no callback).
    int send(const Request &req, kiln_delivery_cb cb, void *arg, void **op) noexcept;
    // The same for report(): `cb` gets the delivery's status and error.
    int send(const Request &req, kiln_done_cb cb, void *arg, void **op) noexcept;
    void cancel(void *op) noexcept;
    // Nothing to send: `cb` gets status 0 later, from the loop.
    int skip(kiln_done_cb cb, void *arg, void **op) noexcept;

  private:
    struct Send {
        void *handle = nullptr;
        kiln_delivery_cb delivery_cb = nullptr;
        kiln_done_cb done_cb = nullptr;
        void *arg = nullptr;
    };
    int start(const Request &req, const Send &how, void **op) noexcept;
    void finished(Send *s, const Response &r) noexcept;

    Client *client_;
    std::string secret_;
    kiln_ops::OpSet<Send> live_;
};

// The FINISHED event that a report() call stands for: counts from the
// tests, delivery_id 0, no url, no previous outcome.  `ev.report` points at
// `rep`.
kiln_report_event finished_event(const kiln_report *rep);

// Tests of an event that failed (failed, error, timeout): those a message
// names.
bool is_failure(int outcome);

} // namespace kiln_http
