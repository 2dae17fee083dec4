// The checks on a message's names, ids and outcomes (messages.hpp), which
// the decoder applies to every field and the config and store reuse.
#include "kiln/messages.hpp"

#include <kiln/plugin.h>

#include <algorithm>
#include <cstring>

namespace kiln {

bool valid_commit_id(std::string_view s)
{
    return (s.size() == 40 || s.size() == 64) && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
}

bool valid_auth_token(std::string_view s) { return s.size() == 64 && valid_commit_id(s); }

bool valid_name(std::string_view s)
{
    if (s.empty() || s.size() > 64 || s[0] == '.' || s[0] == '-')
        return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

bool valid_branch(std::string_view s)
{
    // git check-ref-format's rules that matter for argv and path safety.
    if (s.empty() || s.size() > 200 || s[0] == '-' || s[0] == '/' || s.back() == '/' ||
        s.find("..") != s.npos || s.find("@{") != s.npos ||
        (s.size() >= 5 && s.substr(s.size() - 5) == ".lock"))
        return false;
    return std::none_of(s.begin(), s.end(), [](char c) {
        return (unsigned char)c <= 0x20 || c == 0x7f || std::strchr("~^:?*[\\", c) != nullptr;
    });
}

kiln_outcome outcome_from_plugin(int outcome)
{
    return outcome >= KILN_PASSED && outcome <= KILN_CANCELLED ? static_cast<kiln_outcome>(outcome)
                                                                : KILN_ERROR;
}

int outcome_from_name(std::string_view name)
{
    for (int o = KILN_PASSED; o <= KILN_CANCELLED; ++o)
        if (name == kiln_outcome_name(o))
            return o;
    return -1;
}

} // namespace kiln
