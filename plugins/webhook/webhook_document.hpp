#pragma once
// The webhook plugin's JSON document, version 1 (kiln-plugin(7), WEBHOOK
// DOCUMENT), its event names and its signature.  No I/O here.
#include <cstdint>
#include <string>

#include <kiln/plugin.h>

namespace kiln_webhook {

constexpr int kDocumentVersion = 1;
// Failing tests listed in one document, and bytes of each one's message.
constexpr size_t kMaxFailingTests = 100;
constexpr size_t kMaxMessageBytes = 4096;

// "queued", "started", "failing", "finished"; nullptr for another kind.
const char *event_name(int kind);
// The kind named, or 0.
int event_kind(const std::string &name);

// The `events` key's value ("queued, finished" or "finished started": names
// separated by commas and/or spaces) as a bit set (1 << kind); 0 and `why`
// when a name is unknown or none is given.
unsigned parse_events(const std::string &list, std::string &why);

// The document for one event (compact JSON, valid UTF-8).
std::string document(const kiln_report_event &ev);

// "sha256=" and the hex HMAC-SHA256 of `body` keyed with `secret`.
std::string signature(const std::string &secret, const std::string &body);

} // namespace kiln_webhook
