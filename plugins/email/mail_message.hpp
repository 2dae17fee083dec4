#pragma once
// The mail about one commit's result: when it is due (the mode), and the
// message itself, headers and quoted-printable UTF-8 body, ready for
// `sendmail -t -oi`.  Pure string building: the tests call it directly.
#include <cstdint>
#include <string>
#include <vector>

#include "report_copy.hpp"

namespace kiln_mail {

enum class Mode {
    change,  // a branch broke (passed/none -> failed) or was fixed (failed -> passed)
    failing, // every failed result
    all,     // every result
};

// "change", "failing", "all" -> mode; false for anything else.
bool parse_mode(const std::string &text, Mode &mode);

// What happened to the branch: "broken by", "fixed by", "still failing at",
// "passed at", or "<outcome> at"; empty when `mode` sends no mail for it.
std::string verdict(Mode mode, int previous_outcome, int outcome);

// An addr-spec we put in a header and hand to sendmail: local@domain,
// printable ASCII without spaces, quotes, brackets or separators, not
// starting with '-'.  Display names are not supported (nothing to escape).
bool valid_address(const std::string &address);

// "a@x, b@y" -> {"a@x", "b@y"}; false (with `bad` the culprit) when one
// is not valid_address or the list is empty.
bool parse_addresses(const std::string &list, std::vector<std::string> &out, std::string &bad);

struct Envelope {
    std::string from;
    std::vector<std::string> to;
    std::string hostname; // for Message-ID, and named in the body
    std::string mode;     // named in the body
};

// One header's value from arbitrary bytes: valid UTF-8, control characters
// (CR and LF above all: no header injection) turned into spaces, RFC 2047
// encoded words when not plain ASCII, folded below 78 columns.  `name` is
// the header's name (its length counts in the first line).
std::string header_value(const std::string &name, const std::string &text);

// Quoted-printable (RFC 2045) of UTF-8 text with "\n" line ends.
std::string quoted_printable(const std::string &text);

// The whole message ("\n" line ends, as sendmail reads them); `verdict` from
// verdict(), `now_unix_ms` for the Date header.
std::string build_message(const kiln_report_copy::Report &rep, const Envelope &env,
                          const std::string &verdict, int64_t now_unix_ms);

} // namespace kiln_mail
