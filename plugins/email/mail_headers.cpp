// Header values, addresses and quoted-printable: the parts of the message
// where data from outside (repository and branch names, test output) meets
// RFC 5322's syntax.  See mail_message.hpp.
#include "mail_message.hpp"

#include "utf8.hpp"

namespace kiln_mail {
namespace {

constexpr size_t kMaxHeaderText = 600; // bytes of one header's text, before encoding
constexpr size_t kFoldAt = 76;

std::string base64(const std::string &in)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < in.size(); i += 3) {
        uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size())
            v |= static_cast<unsigned char>(in[i + 1]) << 8;
        if (i + 2 < in.size())
            v |= static_cast<unsigned char>(in[i + 2]);
        out += abc[(v >> 18) & 63];
        out += abc[(v >> 12) & 63];
        out += i + 1 < in.size() ? abc[(v >> 6) & 63] : '=';
        out += i + 2 < in.size() ? abc[v & 63] : '=';
    }
    return out;
}

// Plain ASCII folded at spaces: a line break goes before a space, which
// then starts the continuation line (RFC 5322 folding).
std::string fold(const std::string &text, size_t used)
{
    std::string out;
    size_t column = used;
    size_t i = 0;
    while (i < text.size()) {
        size_t next = text.find(' ', i + 1);
        size_t word_end = next == std::string::npos ? text.size() : next;
        size_t len = word_end - i;
        if (column + len > kFoldAt && column > used && text[i] == ' ') {
            out += '\n';
            column = 0;
        }
        out.append(text, i, len);
        column += len;
        i = word_end;
    }
    return out;
}

// RFC 2047 encoded words, each at most 45 bytes of text (60 of base64) and
// never splitting a UTF-8 sequence, one per line after the first.
std::string encoded_words(const std::string &text)
{
    std::string out;
    for (size_t i = 0; i < text.size();) {
        std::string rest = text.substr(i);
        size_t n = kiln_utf8::cut(rest, 45);
        if (n == 0) // cannot happen with valid UTF-8; never loop forever
            n = rest.size() < 45 ? rest.size() : 45;
        out += (i ? "\n " : "") + std::string("=?UTF-8?B?") + base64(rest.substr(0, n)) + "?=";
        i += n;
    }
    return out;
}

} // namespace

std::string header_value(const std::string &name, const std::string &text)
{
    std::string clean;
    kiln_utf8::clean(clean, text.data(), text.size(), [](char, std::string &o) { o += ' '; });
    clean.resize(kiln_utf8::cut(clean, kMaxHeaderText));
    bool ascii = true;
    for (char c : clean)
        ascii &= static_cast<unsigned char>(c) < 0x80;
    return ascii ? fold(clean, name.size() + 2) : encoded_words(clean);
}

bool valid_address(const std::string &a)
{
    size_t at = a.rfind('@');
    if (a.empty() || a.size() > 254 || a[0] == '-' || at == std::string::npos || at == 0 ||
        at + 1 == a.size())
        return false;
    for (char c : a)
        if (c <= ' ' || c >= 0x7f || std::string("<>()[]\\,;:\"").find(c) != std::string::npos)
            return false;
    return true;
}

bool parse_addresses(const std::string &list, std::vector<std::string> &out, std::string &bad)
{
    out.clear();
    size_t i = 0;
    while (i <= list.size()) {
        size_t comma = list.find(',', i);
        if (comma == std::string::npos)
            comma = list.size();
        std::string a = list.substr(i, comma - i);
        size_t b = a.find_first_not_of(" \t"), e = a.find_last_not_of(" \t");
        a = b == std::string::npos ? "" : a.substr(b, e - b + 1);
        if (!valid_address(a)) {
            bad = a;
            return false;
        }
        out.push_back(a);
        i = comma + 1;
    }
    return !out.empty();
}

std::string quoted_printable(const std::string &text)
{
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    size_t column = 0;
    for (size_t i = 0; i < text.size(); i++) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == '\n') {
            out += '\n';
            column = 0;
            continue;
        }
        bool line_end = i + 1 == text.size() || text[i + 1] == '\n';
        std::string token;
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !line_end))
            token = static_cast<char>(c);
        else
            token = {'=', hex[c >> 4], hex[c & 15]};
        if (column + token.size() > kFoldAt - 1) { // room for the soft break's '='
            out += "=\n";
            column = 0;
        }
        out += token;
        column += token.size();
    }
    return out;
}

} // namespace kiln_mail
