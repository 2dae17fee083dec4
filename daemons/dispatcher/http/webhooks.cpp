#include "webhooks.hpp"

#include <sodium.h>

#include <nlohmann/json.hpp>

#include <kiln/log.hpp>

namespace kiln {

namespace {

// The event header each forge sends, and its value for a push.
struct ForgeEvent {
    std::vector<const char *> headers; // the first present one counts
    const char *push;
};

ForgeEvent event_of(const std::string &forge)
{
    if (forge == "github")
        return {{"x-github-event"}, "push"};
    if (forge == "gitlab")
        return {{"x-gitlab-event"}, "Push Hook"};
    return {{"x-gitea-event", "x-forgejo-event", "x-gogs-event"}, "push"};
}

const std::string *first_header(const WebhookDelivery &d, const std::vector<const char *> &names)
{
    for (const char *name : names)
        if (const std::string *value = d.header(name))
            return value;
    return nullptr;
}

bool signed_correctly(const WebhookConfig &hook, const WebhookDelivery &d)
{
    if (hook.forge == "gitlab") {
        const std::string *token = d.header("x-gitlab-token");
        return token && token_ok(hook.secret, *token);
    }
    if (const std::string *sig = d.header("x-hub-signature-256"))
        return hub_signature_ok(hook.secret, d.body, *sig);
    // Gitea and Forgejo also send the bare hex digest under their own name.
    if (const std::string *sig = first_header(d, {"x-gitea-signature", "x-forgejo-signature"}))
        return hub_signature_ok(hook.secret, d.body, "sha256=" + *sig);
    return false;
}

// The branch a push event names ("refs/heads/main" → "main"); "" when the
// body says nothing usable (every branch is then polled); nullopt for a
// ref that is no branch (a tag: nothing to test).
std::optional<std::string> pushed_branch(const std::string &body)
{
    auto json = nlohmann::json::parse(body, nullptr, false);
    if (json.is_discarded() || !json.is_object() || !json.contains("ref") ||
        !json["ref"].is_string())
        return std::string();
    std::string ref = json["ref"].get<std::string>();
    const std::string heads = "refs/heads/";
    if (ref.compare(0, heads.size(), heads) == 0)
        return ref.substr(heads.size());
    return std::nullopt;
}

} // namespace

std::string hub_signature(const std::string &secret, const std::string &body)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char *>(secret.data()),
                                secret.size());
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char *>(body.data()),
                                  body.size());
    crypto_auth_hmacsha256_final(&state, mac);
    char hex[sizeof mac * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
    return std::string("sha256=") + hex;
}

bool hub_signature_ok(const std::string &secret, const std::string &body,
                      const std::string &received)
{
    const std::string prefix = "sha256=";
    if (received.compare(0, prefix.size(), prefix) != 0)
        return false;
    unsigned char got[crypto_auth_hmacsha256_BYTES];
    size_t got_len = 0;
    const char *end = nullptr;
    std::string hex = received.substr(prefix.size());
    if (sodium_hex2bin(got, sizeof got, hex.data(), hex.size(), nullptr, &got_len, &end) != 0 ||
        got_len != sizeof got || end != hex.data() + hex.size())
        return false;
    unsigned char want[crypto_auth_hmacsha256_BYTES];
    sodium_hex2bin(want, sizeof want, hub_signature(secret, body).c_str() + prefix.size(),
                   sizeof want * 2, nullptr, nullptr, nullptr);
    return sodium_memcmp(got, want, sizeof got) == 0;
}

bool token_ok(const std::string &secret, const std::string &received)
{
    // Hash both to a fixed length first: the comparison then takes the same
    // time whatever the received token's length or content.
    unsigned char a[crypto_generichash_BYTES], b[crypto_generichash_BYTES];
    crypto_generichash(a, sizeof a, reinterpret_cast<const unsigned char *>(secret.data()),
                       secret.size(), nullptr, 0);
    crypto_generichash(b, sizeof b, reinterpret_cast<const unsigned char *>(received.data()),
                       received.size(), nullptr, 0);
    return sodium_memcmp(a, b, sizeof a) == 0;
}

WebhookAnswer answer_webhook(const std::vector<WebhookConfig> &hooks, const WebhookDelivery &d)
{
    std::string forge = normalized_forge(d.forge);
    const WebhookConfig *hook = nullptr;
    for (const auto &h : hooks)
        if (!forge.empty() && h.forge == forge && h.repo == d.repo)
            hook = &h;
    if (!hook) {
        log_warning("webhook %s/%s: peer %s: no [[webhook]] for this forge and repository",
                    d.forge.c_str(), d.repo.c_str(), d.peer.c_str());
        return {404, "no [[webhook]] for " + d.forge + " repository '" + d.repo + "'\n", {}};
    }
    if (!signed_correctly(*hook, d)) {
        log_warning("webhook %s/%s: peer %s: bad or missing %s", d.forge.c_str(), d.repo.c_str(),
                    d.peer.c_str(),
                    forge == "gitlab" ? "X-Gitlab-Token" : "signature (X-Hub-Signature-256)");
        return {401, "bad signature\n", {}};
    }
    ForgeEvent event = event_of(forge);
    const std::string *name = first_header(d, event.headers);
    if (!name || *name != event.push) {
        log_debug("webhook %s/%s: peer %s: event '%s' ignored", d.forge.c_str(), d.repo.c_str(),
                  d.peer.c_str(), name ? name->c_str() : "");
        return {200, "ignored: not a push event\n", {}};
    }
    std::optional<std::string> branch = pushed_branch(d.body);
    if (!branch) {
        log_debug("webhook %s/%s: peer %s: push of a tag ignored", d.forge.c_str(),
                  d.repo.c_str(), d.peer.c_str());
        return {200, "ignored: not a branch\n", {}};
    }
    Notify notify;
    notify.repo = d.repo;
    notify.branch = *branch;
    return {202, "accepted\n", notify};
}

} // namespace kiln
