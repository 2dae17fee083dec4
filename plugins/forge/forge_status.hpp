#pragma once
// A commit status as each forge's API wants it, from a report event: the
// request (path, headers, JSON body), the state names and the description.
// No I/O here: forge.cpp sends what status_request() builds.
#include <string>

#include <kiln/plugin.h>

#include "http_client.hpp"

namespace kiln_forge {

enum class Forge { GitHub, Gitea, GitLab };

struct Target {
    Forge forge = Forge::GitHub;
    std::string api_url;    // no trailing '/'
    std::string repository; // "owner/name", or a GitLab project id or path
    std::string token;
    std::string context = "kiln";
    uint64_t timeout_ms = 0;
    std::string ca_file;
};

// "github", "gitea", "gitlab"; false for another name.
bool forge_named(const std::string &name, Forge &out);
// Where the public instance's API is ("" for Gitea: there is none).
std::string default_api_url(Forge forge);
// "" when `repository` suits `forge`, else why not.
std::string repository_problem(Forge forge, const std::string &repository);

// The state the forge shows for the event: GitHub and Gitea pending,
// failure, success, error; GitLab pending, running, success, failed,
// canceled.
std::string state_of(Forge forge, const kiln_report_event &ev);
// "queued", "running on runner-1", "2 failed so far on runner-1",
// "212 passed, 1 failed in 41 s": at most 140 bytes (GitHub's limit).
std::string description_of(const kiln_report_event &ev);

// The whole request; false (and `why`) when the event cannot be one (a
// commit that is not a hex id).
bool status_request(const Target &t, const kiln_report_event &ev, kiln_http::Request &out,
                    std::string &why);

} // namespace kiln_forge
