// A config key that holds a list (email's `to`, webhook's `events`): a TOML
// array of strings from a host that reads lists (host->config_strings, grown
// after ABI 1.0), else one string of items separated by commas.  Either way
// the plugin gets one comma-separated string for its own parser, so both
// spellings mean the same: to = ["a@x", "b@y"] and to = "a@x, b@y".
#pragma once

#include <cerrno>
#include <string>

#include <kiln/plugin.h>

namespace kiln_config {

// 0 with `joined` set, -ENOENT when absent, -EINVAL (logged by the host)
// when of another type.  An item holding a comma is refused: it would read
// as two.
inline int read_list(const kiln_host *host, const char *key, std::string &joined)
{
    if (!KILN_HOST_HAS(host, config_strings)) {
        const char *text = nullptr;
        int rc = host->config_string(host, key, &text);
        if (rc == 0)
            joined = text;
        return rc;
    }
    const char *const *items = nullptr;
    size_t n = 0;
    int rc = host->config_strings(host, key, &items, &n);
    if (rc != 0)
        return rc;
    joined.clear();
    for (size_t i = 0; i < n; i++) {
        if (n > 1 && std::string(items[i]).find(',') != std::string::npos) {
            host->log(host, KILN_LOG_ERR, "%s: \"%s\": one item per string, no commas", key,
                      items[i]);
            return -EINVAL;
        }
        joined += i ? ", " : "";
        joined += items[i];
    }
    return 0;
}

} // namespace kiln_config
