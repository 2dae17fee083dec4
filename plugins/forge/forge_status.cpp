// Commit statuses for GitHub, Gitea/Forgejo and GitLab (see forge_status.hpp).
// API references: GitHub "Create a commit status" (REST 2022-11-28), Gitea
// "CreateStatus" (/api/v1), GitLab "Set the pipeline status of a commit"
// (/api/v4).
#include "forge_status.hpp"

#include <cstdio>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "commit_id.hpp"
#include "http_delivery.hpp"
#include "http_report.hpp"

namespace kiln_forge {

namespace {

constexpr size_t kMaxDescription = 140; // GitHub refuses longer ones (422)

bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

// GitLab takes a project's path as one URL-encoded path segment
// ("group/sub/demo" -> "group%2Fsub%2Fdemo").
std::string encode_segment(const std::string &s)
{
    char *escaped = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
    std::string out = escaped ? escaped : "";
    curl_free(escaped);
    return out;
}

std::string duration_text(int64_t ms)
{
    int64_t s = ms > 0 ? (ms + 500) / 1000 : 0;
    char buf[48];
    if (s < 60)
        snprintf(buf, sizeof buf, "%lld s", static_cast<long long>(s));
    else if (s < 3600)
        snprintf(buf, sizeof buf, "%lld min %lld s", static_cast<long long>(s / 60),
                 static_cast<long long>(s % 60));
    else
        snprintf(buf, sizeof buf, "%lld h %lld min", static_cast<long long>(s / 3600),
                 static_cast<long long>(s / 60 % 60));
    return buf;
}

// "212 passed, 1 failed" (outcomes with a count only, in enum order).
std::string counts_text(const kiln_report_event &ev)
{
    std::string out;
    for (int o = KILN_PASSED; o <= KILN_CANCELLED; o++) {
        if (!ev.counts[o])
            continue;
        out += (out.empty() ? "" : ", ") + std::to_string(ev.counts[o]) + " " + kiln_outcome_name(o);
    }
    return out;
}

} // namespace

bool forge_named(const std::string &name, Forge &out)
{
    if (name == "github")
        out = Forge::GitHub;
    else if (name == "gitea")
        out = Forge::Gitea;
    else if (name == "gitlab")
        out = Forge::GitLab;
    else
        return false;
    return true;
}

std::string default_api_url(Forge forge)
{
    switch (forge) {
    case Forge::GitHub: return "https://api.github.com";
    case Forge::GitLab: return "https://gitlab.com/api/v4";
    case Forge::Gitea: break;
    }
    return "";
}

std::string repository_problem(Forge forge, const std::string &repo)
{
    if (forge != Forge::GitLab) {
        size_t slash = repo.find('/');
        if (slash == std::string::npos || slash == 0 || slash + 1 == repo.size() ||
            repo.find('/', slash + 1) != std::string::npos)
            return "expected OWNER/NAME";
    }
    if (repo.empty() || repo.size() > 255)
        return "expected a project id or its path (GROUP/NAME)";
    std::string segment;
    for (size_t i = 0; i <= repo.size(); i++) {
        if (i == repo.size() || repo[i] == '/') {
            if (segment.empty() || segment == "." || segment == "..")
                return "an empty, \".\" or \"..\" part";
            segment.clear();
        } else if (!name_char(repo[i])) {
            return "only letters, digits, '.', '_', '-' and '/' may appear";
        } else {
            segment += repo[i];
        }
    }
    return "";
}

std::string state_of(Forge forge, const kiln_report_event &ev)
{
    bool gitlab = forge == Forge::GitLab;
    switch (ev.kind) {
    case KILN_EVENT_QUEUED: return "pending";
    case KILN_EVENT_STARTED: return gitlab ? "running" : "pending";
    // GitLab's failed is final: a run that goes on stays running there.
    case KILN_EVENT_FAILING: return gitlab ? "running" : "failure";
    default: break;
    }
    switch (ev.report->outcome) {
    case KILN_PASSED:
    case KILN_SKIPPED: return "success";
    case KILN_FAILED: return gitlab ? "failed" : "failure";
    case KILN_CANCELLED: return gitlab ? "canceled" : "error";
    default: return gitlab ? "failed" : "error"; // error, timeout
    }
}

std::string description_of(const kiln_report_event &ev)
{
    const kiln_report &rep = *ev.report;
    std::string on = rep.runner ? std::string(" on ") + rep.runner : "";
    std::string text;
    switch (ev.kind) {
    case KILN_EVENT_QUEUED: text = "queued"; break;
    case KILN_EVENT_STARTED: text = rep.runner ? "running" + on : "running"; break;
    case KILN_EVENT_FAILING: {
        uint32_t failed = ev.counts[KILN_FAILED] + ev.counts[KILN_ERROR] + ev.counts[KILN_TIMEOUT];
        if (!failed)
            failed = static_cast<uint32_t>(rep.n_tests);
        text = std::to_string(failed) + " failed so far" + on;
        break;
    }
    default: {
        std::string counts = counts_text(ev);
        bool plain = rep.outcome == KILN_PASSED || rep.outcome == KILN_FAILED;
        if (!plain) // what went wrong first: "timeout: ..." / "error: could not clone"
            text = std::string(kiln_outcome_name(rep.outcome)) +
                   (rep.error && *rep.error ? std::string(": ") + rep.error : "") +
                   (counts.empty() ? "" : "; ");
        text += counts.empty() && plain ? "no tests" : counts;
        int64_t ms = rep.finished_unix_ms - rep.started_unix_ms;
        if (rep.started_unix_ms > 0 && ms >= 0)
            text += " in " + duration_text(ms);
    }
    }
    return kiln_http::one_line(text, kMaxDescription);
}

bool status_request(const Target &t, const kiln_report_event &ev, kiln_http::Request &out,
                    std::string &why)
{
    const kiln_report &rep = *ev.report;
    if (!rep.commit || !kiln_commit::is_full_id(rep.commit)) {
        why = "not a commit id";
        return false;
    }
    nlohmann::json body;
    body["state"] = state_of(t.forge, ev);
    body["description"] = description_of(ev);
    if (ev.url && *ev.url)
        body["target_url"] = ev.url;
    out = kiln_http::Request();
    out.timeout_ms = t.timeout_ms;
    out.ca_file = t.ca_file;
    out.headers = {kiln_http::user_agent_header(), "Content-Type: application/json"};
    switch (t.forge) {
    case Forge::GitHub:
    case Forge::Gitea:
        body["context"] = t.context;
        out.url = t.api_url + "/repos/" + t.repository + "/statuses/" + rep.commit;
        if (t.forge == Forge::GitHub) {
            out.headers.push_back("Accept: application/vnd.github+json");
            out.headers.push_back("X-GitHub-Api-Version: 2022-11-28");
            out.headers.push_back("Authorization: Bearer " + t.token);
        } else {
            out.headers.push_back("Accept: application/json");
            out.headers.push_back("Authorization: token " + t.token);
        }
        break;
    case Forge::GitLab:
        body["name"] = t.context;
        out.url = t.api_url + "/projects/" + encode_segment(t.repository) + "/statuses/" + rep.commit;
        out.headers.push_back("Accept: application/json");
        out.headers.push_back("PRIVATE-TOKEN: " + t.token);
        break;
    }
    // Test names and messages are arbitrary bytes: replace, never throw.
    out.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return true;
}

} // namespace kiln_forge
