// Reads a secret file at plugin init (see secret_file.hpp).  Blocking file
// I/O is fine here: init runs while the daemon starts, before its loop does.
#include "secret_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace kiln_http {

namespace {

constexpr size_t kMaxSecret = 4096;

int refuse(const kiln_host *host, const char *key, const std::string &path, const std::string &why)
{
    host->log(host, KILN_LOG_ERR, "%s: %s: %s", key, path.c_str(), why.c_str());
    return -EINVAL;
}

} // namespace

int read_secret_file(const kiln_host *host, const char *key, bool printable, std::string &out)
{
    const char *path_c = nullptr;
    int rc = host->config_string(host, key, &path_c);
    if (rc < 0)
        return rc;
    std::string path = path_c;
    if (path.empty())
        return refuse(host, key, "\"\"", "empty file name");
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return refuse(host, key, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return refuse(host, key, path, "not a regular file");
    }
    if (st.st_mode & 077) {
        close(fd);
        char mode[8];
        snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
        return refuse(host, key, path, std::string("mode ") + mode +
                                           " lets others read it: chmod 600 it (owner only)");
    }
    std::string data;
    char buf[1024];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || data.size() + static_cast<size_t>(n) > kMaxSecret) {
            int err = n < 0 ? errno : EFBIG;
            close(fd);
            return refuse(host, key, path, n < 0 ? strerror(err) : "larger than 4096 bytes");
        }
        data.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    while (!data.empty() && (data.back() == '\n' || data.back() == '\r' || data.back() == ' ' ||
                             data.back() == '\t'))
        data.pop_back();
    if (data.empty())
        return refuse(host, key, path, "empty");
    if (printable)
        for (unsigned char c : data)
            if (c < 0x20 || c == 0x7f)
                return refuse(host, key, path, "holds a control character (one line expected)");
    out = std::move(data);
    return 0;
}

} // namespace kiln_http
