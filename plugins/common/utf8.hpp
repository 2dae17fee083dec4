#pragma once
// Text from tests is arbitrary bytes; what the report plugins write (mail,
// XML) must be valid UTF-8.  These helpers make it so: a malformed sequence
// becomes U+FFFD, and the caller decides what an ASCII control character
// becomes (mail headers: a space; XML: dropped or kept).  Header-only, like
// the rest of plugins/common: a plugin links nothing of Kiln.
#include <cstddef>
#include <string>

namespace kiln_utf8 {

// Length of the well-formed UTF-8 sequence at s (n bytes left), or 0 when
// it is malformed (bad lead, truncated, overlong, surrogate, > U+10FFFF).
inline size_t sequence_length(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                          : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) || // overlong, surrogate
        (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))   // overlong, > U+10FFFF
        return 0;
    return len;
}

constexpr char kReplacement[] = "\xEF\xBF\xBD"; // U+FFFD

// Appends p[0..n) to out as valid UTF-8.  Each byte below 0x20 and 0x7F is
// handed to control(c, out), which appends what stands for it (or nothing);
// every other ASCII byte and each well-formed sequence is copied;
// `multibyte(seq, len, out)` may veto a well-formed sequence (return false:
// U+FFFD is written instead).
template <class Control, class Multibyte>
void clean(std::string &out, const char *p, size_t n, Control &&control, Multibyte &&multibyte)
{
    const unsigned char *s = reinterpret_cast<const unsigned char *>(p);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x20 || c == 0x7F) {
            control(static_cast<char>(c), out);
            i++;
        } else if (c < 0x80) {
            out += static_cast<char>(c);
            i++;
        } else if (size_t len = sequence_length(s + i, n - i)) {
            if (multibyte(p + i, len))
                out.append(p + i, len);
            else
                out += kReplacement;
            i += len;
        } else {
            out += kReplacement;
            i++;
        }
    }
}

template <class Control> void clean(std::string &out, const char *p, size_t n, Control &&control)
{
    clean(out, p, n, control, [](const char *, size_t) { return true; });
}

// The longest prefix of the valid UTF-8 string s that is at most max bytes
// and does not end inside a sequence.
inline size_t cut(const std::string &s, size_t max)
{
    if (s.size() <= max)
        return s.size();
    size_t n = max;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
        n--;
    return n;
}

} // namespace kiln_utf8
