#pragma once
// Forge push webhooks in: POST /hooks/<forge>/<repo>.  A delivery is
// checked against the [[webhook]] for that forge and repository (404 when
// there is none), its signature verified (401), and a push becomes a
// Notify for the observers, as `kilnctl notify` sends; any other event is
// answered and ignored.  The decision is a pure function of the delivery,
// tested without a server; the route feeds it requests.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <kiln/messages.hpp>

#include "webhook_config.hpp"

namespace kiln {

class HttpServer;

struct WebhookDelivery {
    std::string forge, repo; // from the path, as sent
    std::string peer;        // for the log
    const std::string &body;
    // A request header by lower-case name, nullptr when absent.
    std::function<const std::string *(const std::string &)> header;
};

struct WebhookAnswer {
    int status = 500;
    std::string message;         // the response body, one line
    std::optional<Notify> notify; // set for a verified push: relay it
};

// What to answer, and whether to relay a notify.  Refusals (401, 404) are
// logged with the peer.
WebhookAnswer answer_webhook(const std::vector<WebhookConfig> &hooks, const WebhookDelivery &d);

// "sha256=" + lower-case hex HMAC-SHA-256 of `body` keyed with `secret`
// (what GitHub and Gitea send in X-Hub-Signature-256).
std::string hub_signature(const std::string &secret, const std::string &body);
// Constant-time checks of a received signature / token against the secret.
bool hub_signature_ok(const std::string &secret, const std::string &body,
                      const std::string &received);
bool token_ok(const std::string &secret, const std::string &received);

// POST /hooks/: answer_webhook() on each request; `relay` sends a verified
// push's Notify to the observers and returns how many got it.  `hooks` is
// read at each request (a reload replaces it).
void add_webhook_routes(HttpServer &server, const std::vector<WebhookConfig> &hooks,
                        std::function<size_t(const Notify &)> relay);

} // namespace kiln
