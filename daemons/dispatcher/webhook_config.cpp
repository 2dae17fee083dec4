#include "webhook_config.hpp"

#include <kiln/auth.hpp>

namespace kiln {

std::string normalized_forge(const std::string &forge)
{
    if (forge == "github" || forge == "gitea" || forge == "gitlab")
        return forge;
    if (forge == "forgejo")
        return "gitea";
    return "";
}

std::vector<WebhookConfig> webhooks_from(const ConfigTable &root)
{
    std::vector<WebhookConfig> hooks;
    for (const ConfigTable &t : root.tables("webhook")) {
        WebhookConfig w;
        w.repo = t.required_string("repo");
        if (w.repo.find('/') != std::string::npos)
            throw ConfigError(t.error_at("repo", "must be a [[repo]] name, without '/'"));
        std::string forge = t.required_string("forge");
        w.forge = normalized_forge(forge);
        if (w.forge.empty())
            throw ConfigError(t.error_at("forge", "unknown forge '" + forge +
                                                      "' (expected github, gitea, forgejo or gitlab)"));
        t.required_string("secret_file"); // secret_from_config() takes an absent key for "none"
        w.secret = secret_from_config(t, "secret_file");
        for (const auto &other : hooks)
            if (other.repo == w.repo && other.forge == w.forge)
                throw ConfigError(t.error_at("repo", "a second [[webhook]] for " + w.forge + " and '" +
                                                         w.repo + "'"));
        t.reject_unknown_keys();
        hooks.push_back(std::move(w));
    }
    return hooks;
}

} // namespace kiln
