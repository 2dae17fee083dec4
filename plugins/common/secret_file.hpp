#pragma once
// A secret (a forge token, an HMAC key) read at init from a file named by a
// config key.  The file must be a regular file nobody but its owner can
// read or write (mode 600 or stricter); otherwise the plugin refuses to
// start, naming the key, the file and its mode.  Trailing white space (the
// newline an editor adds) is dropped; the secret itself is never logged.
#include <string>

#include <kiln/plugin.h>

namespace kiln_http {

// 0 with `out` set; -ENOENT when the key is absent (nothing logged);
// -EINVAL (logged) when the file is unusable.  `printable`: refuse control
// characters (a secret that goes into an HTTP header).
int read_secret_file(const kiln_host *host, const char *key, bool printable, std::string &out);

} // namespace kiln_http
