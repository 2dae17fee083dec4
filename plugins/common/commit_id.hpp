#pragma once
// A commit id from the host is still checked before it becomes a file name
// (files, junit), a mail header (email) or part of a URL (forge): hex only,
// so no '/', "..", CR/LF or '?' can ride in on it.
#include <string>

namespace kiln_commit {

inline bool is_hex_id(const std::string &s)
{
    if (s.empty() || s.size() > 128)
        return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    return true;
}

// A full id: SHA-1 (40) or SHA-256 (64) hex digits, as forges expect.
inline bool is_full_id(const std::string &s)
{
    return (s.size() == 40 || s.size() == 64) && is_hex_id(s);
}

} // namespace kiln_commit
