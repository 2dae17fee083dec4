#pragma once
// Pure helpers of the git plugin: validating what reaches git's argv, naming
// mirrors, wording errors.  No state, no I/O, so git.cpp reads as the flow
// of the operations only.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <kiln/plugin.h>

namespace kiln_git {

// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.  Ids
// are checked before they go on a command line, so none can read as an option.
inline bool is_commit_id(const std::string &s)
{
    if (s.size() != 40 && s.size() != 64)
        return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

// A branch name we are willing to put into a refspec: the rules of
// git-check-ref-format that matter here (no glob or refspec characters, no
// "..", no leading '-' or '/', no control characters, no "@{").
inline bool is_branch_name(const std::string &b)
{
    if (b.empty() || b[0] == '-' || b[0] == '/' || b.back() == '/' || b.back() == '.')
        return false;
    if (b.find("..") != std::string::npos || b.find("@{") != std::string::npos ||
        b.find("//") != std::string::npos)
        return false;
    for (unsigned char c : b)
        if (c <= ' ' || c == 0x7f || c == '~' || c == '^' || c == ':' || c == '?' || c == '*' ||
            c == '[' || c == '\\')
            return false;
    return b.size() < 5 || b.compare(b.size() - 5, 5, ".lock") != 0;
}

// The mirror directory of a URL.  The URL is never used as a path: it is
// hashed (FNV-1a, 64 bits) and only a sanitized short tail of it is kept
// so an operator can tell the mirrors apart ("9c1d…-kiln.git").
inline std::string mirror_name(const std::string &url)
{
    uint64_t h = 14695981039346656037ull;
    for (unsigned char c : url) {
        h ^= c;
        h *= 1099511628211ull;
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));

    std::string tail = url;
    while (!tail.empty() && tail.back() == '/')
        tail.pop_back();
    if (tail.size() > 4 && tail.compare(tail.size() - 4, 4, ".git") == 0)
        tail.resize(tail.size() - 4);
    size_t cut = tail.find_last_of("/:");
    if (cut != std::string::npos)
        tail.erase(0, cut + 1);
    std::string clean;
    for (char c : tail) {
        if (clean.size() >= 32)
            break;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (clean.empty() && (c == '.' || c == '-'))
            continue; // no hidden names, nothing that looks like an option
        clean += ok ? c : '_';
    }
    return std::string(hex) + "-" + (clean.empty() ? "repo" : clean) + ".git";
}

// The URL as it may appear in a log line: a password in the user-info part
// ("https://user:token@host/...") is replaced by "***".
inline std::string redact_url(const std::string &url)
{
    size_t scheme = url.find("://");
    if (scheme == std::string::npos)
        return url;
    size_t start = scheme + 3;
    size_t end = url.find('/', start);
    size_t at = url.rfind('@', end == std::string::npos ? url.size() : end);
    if (at == std::string::npos || at < start)
        return url;
    size_t colon = url.find(':', start);
    if (colon == std::string::npos || colon > at)
        return url;
    return url.substr(0, colon + 1) + "***" + url.substr(at);
}

// "exit status 128: fatal: repository not found" — how a finished git
// command failed, with the first line of its stderr when it wrote one.
inline std::string describe_failure(const kiln_spawn_result &r)
{
    std::string why;
    if (r.timed_out)
        why = "timed out after " + std::to_string(r.duration_ms) + " ms";
    else if (r.term_signal)
        why = "killed by signal " + std::to_string(r.term_signal);
    else
        why = "exit status " + std::to_string(r.exit_status);
    std::string line(r.err ? r.err : "", r.err ? r.err_len : 0);
    size_t nl = line.find('\n');
    if (nl != std::string::npos)
        line.resize(nl);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
        line.pop_back();
    if (line.size() > 200)
        line.resize(200);
    return line.empty() ? why : why + ": " + line;
}

// The lines of a command's stdout, without empty ones.
inline std::vector<std::string> output_lines(const kiln_spawn_result &r)
{
    std::vector<std::string> lines;
    std::string cur;
    for (size_t i = 0; i < r.out_len; i++) {
        if (r.out[i] == '\n') {
            if (!cur.empty())
                lines.push_back(cur);
            cur.clear();
        } else if (r.out[i] != '\r') {
            cur += r.out[i];
        }
    }
    if (!cur.empty())
        lines.push_back(cur);
    return lines;
}

// The directories from the top down to `dir` ("/a", "/a/b", "/a/b/c"), the
// steps of a mkdir -p.
inline std::vector<std::string> path_prefixes(const std::string &dir)
{
    std::vector<std::string> out;
    for (size_t i = 1; i <= dir.size(); i++)
        if (i == dir.size() || dir[i] == '/')
            if (dir[i - 1] != '/')
                out.push_back(dir.substr(0, i));
    return out;
}

} // namespace kiln_git
