// POST /hooks/<forge>/<repo>: answer_webhook() (webhooks.cpp) decides; a
// verified push is relayed to the observers here.
#include "http_server.hpp"
#include "webhooks.hpp"

#include <kiln/log.hpp>

namespace kiln {

namespace {

const char *const kPrefix = "/hooks/";
const char *const kText = "text/plain; charset=utf-8";

} // namespace

void add_webhook_routes(HttpServer &server, const std::vector<WebhookConfig> &hooks,
                        std::function<size_t(const Notify &)> relay)
{
    server.route("POST", kPrefix, [&hooks, relay = std::move(relay)](const HttpRequest &req,
                                                                     HttpResponder &out) {
        // <forge>/<repo>, both plain names: anything else matches no [[webhook]].
        std::string rest = req.path.substr(std::string(kPrefix).size());
        size_t slash = rest.find('/');
        if (slash == std::string::npos || rest.find('/', slash + 1) != std::string::npos) {
            out.send(404, kText, "expected /hooks/<forge>/<repo>\n");
            return;
        }
        WebhookDelivery delivery{rest.substr(0, slash), rest.substr(slash + 1), req.peer, req.body,
                                 [&req](const std::string &name) { return req.header(name); }};
        WebhookAnswer answer = answer_webhook(hooks, delivery);
        if (answer.notify) {
            size_t observers = relay(*answer.notify);
            log_info("webhook %s/%s: peer %s: push to %s; relayed to %zu observer(s)",
                     delivery.forge.c_str(), delivery.repo.c_str(), req.peer.c_str(),
                     answer.notify->branch.empty() ? "(all branches)"
                                                   : answer.notify->branch.c_str(),
                     observers);
        }
        out.send(answer.status, kText, answer.message);
    });
}

} // namespace kiln
