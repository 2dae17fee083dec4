#pragma once
// dispatcher.toml's [[webhook]] tables: which forge may announce pushes to
// which repository, and the secret it signs them with.  See kiln.toml(5).
#include <string>
#include <vector>

#include <kiln/config.hpp>

namespace kiln {

struct WebhookConfig {
    std::string repo;  // an observer's [[repo]] name: what the notify names
    std::string forge; // "github", "gitea" (also Forgejo) or "gitlab"
    std::string secret; // the contents of secret_file (mode 600)
};

// The forges a webhook may name; "forgejo" is read as "gitea" (same headers).
std::string normalized_forge(const std::string &forge);

// root's [[webhook]] tables.  Throws ConfigError naming file, line, column
// and key: a missing key, an unknown forge, an unreadable or group-readable
// secret file, a second table for the same forge and repository.
std::vector<WebhookConfig> webhooks_from(const ConfigTable &root);

} // namespace kiln
