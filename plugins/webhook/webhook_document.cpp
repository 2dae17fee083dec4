// Builds the webhook document (see webhook_document.hpp).  Field by field
// it is what kiln-plugin(7) documents; a field is added, never renamed or
// retyped, without raising kiln_webhook.
#include "webhook_document.hpp"

#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "http_report.hpp"
#include "iso8601.hpp"

namespace kiln_webhook {

namespace {

using nlohmann::json;

json text_or_null(const char *s) { return s ? json(s) : json(nullptr); }

json outcome_or_null(int outcome)
{
    return outcome == KILN_OUTCOME_NONE ? json(nullptr) : json(kiln_outcome_name(outcome));
}

// "2024-05-01T12:34:56.789Z", or null for a time not known (0).
json iso8601(int64_t unix_ms)
{
    std::string text = kiln_time::iso8601_ms(unix_ms);
    return text.empty() ? json(nullptr) : json(text);
}

json counts_of(const kiln_report_event &ev)
{
    if (ev.kind != KILN_EVENT_FINISHED && ev.kind != KILN_EVENT_FAILING)
        return nullptr;
    json c = json::object();
    for (int o = KILN_PASSED; o <= KILN_CANCELLED; o++)
        c[kiln_outcome_name(o)] = ev.counts[o];
    return c;
}

json failing_tests(const kiln_report &rep, size_t &omitted)
{
    json list = json::array();
    omitted = 0;
    for (size_t i = 0; i < rep.n_tests; i++) {
        const kiln_test_result &t = rep.tests[i];
        if (!kiln_http::is_failure(t.outcome))
            continue;
        if (list.size() >= kMaxFailingTests) {
            omitted++;
            continue;
        }
        json message = nullptr;
        if (t.message) {
            std::string m(t.message);
            if (m.size() > kMaxMessageBytes)
                m.resize(kMaxMessageBytes); // a cut character becomes U+FFFD below
            message = m;
        }
        list.push_back({{"name", t.name ? t.name : ""},
                        {"outcome", kiln_outcome_name(t.outcome)},
                        {"message", message},
                        {"duration_ms", t.duration_ms}});
    }
    return list;
}

} // namespace

const char *event_name(int kind)
{
    switch (kind) {
    case KILN_EVENT_QUEUED: return "queued";
    case KILN_EVENT_STARTED: return "started";
    case KILN_EVENT_FAILING: return "failing";
    case KILN_EVENT_FINISHED: return "finished";
    default: return nullptr;
    }
}

int event_kind(const std::string &name)
{
    for (int k = KILN_EVENT_QUEUED; k <= KILN_EVENT_FINISHED; k++)
        if (name == event_name(k))
            return k;
    return 0;
}

unsigned parse_events(const std::string &list, std::string &why)
{
    unsigned set = 0;
    std::string name;
    for (size_t i = 0; i <= list.size(); i++) {
        char c = i < list.size() ? list[i] : ',';
        if (c != ',' && c != ' ' && c != '\t') {
            name += c;
            continue;
        }
        if (name.empty())
            continue;
        int kind = event_kind(name);
        if (!kind) {
            why = "unknown event \"" + name + "\" (queued, started, failing, finished)";
            return 0;
        }
        set |= 1u << kind;
        name.clear();
    }
    if (!set)
        why = "names no event (queued, started, failing, finished)";
    return set;
}

std::string document(const kiln_report_event &ev)
{
    const kiln_report &rep = *ev.report;
    bool finished = ev.kind == KILN_EVENT_FINISHED;
    size_t omitted = 0;
    json failing = ev.kind >= KILN_EVENT_FAILING ? failing_tests(rep, omitted) : json::array();
    int64_t duration = rep.finished_unix_ms - rep.started_unix_ms;
    json d = {
        {"kiln_webhook", kDocumentVersion},
        {"event", event_name(ev.kind)},
        {"delivery_id", ev.delivery_id},
        {"repository", text_or_null(rep.repo)},
        {"branch", text_or_null(rep.branch)},
        {"commit", rep.commit},
        {"job_id", rep.job_id},
        {"attempt", rep.attempt},
        {"runner", text_or_null(ev.kind >= KILN_EVENT_STARTED ? rep.runner : nullptr)},
        {"outcome", finished ? json(kiln_outcome_name(rep.outcome)) : json(nullptr)},
        {"previous_outcome", outcome_or_null(ev.previous_outcome)},
        {"error", text_or_null(finished ? rep.error : nullptr)},
        {"counts", counts_of(ev)},
        {"failing_tests", failing},
        {"failing_tests_omitted", omitted},
        {"duration_ms", finished && rep.started_unix_ms > 0 && duration >= 0 ? json(duration)
                                                                              : json(nullptr)},
        {"event_at", iso8601(ev.event_unix_ms)},
        {"queued_at", iso8601(ev.queued_unix_ms)},
        {"started_at", iso8601(ev.kind >= KILN_EVENT_STARTED ? rep.started_unix_ms : 0)},
        {"finished_at", iso8601(finished ? rep.finished_unix_ms : 0)},
        {"url", text_or_null(ev.url)},
    };
    return d.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string signature(const std::string &secret, const std::string &body)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
              reinterpret_cast<const unsigned char *>(body.data()), body.size(), mac, &len))
        return "";
    static const char hex[] = "0123456789abcdef";
    std::string out = "sha256=";
    for (unsigned i = 0; i < len; i++) {
        out += hex[mac[i] >> 4];
        out += hex[mac[i] & 15];
    }
    return out;
}

} // namespace kiln_webhook
