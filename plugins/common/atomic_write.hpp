#pragma once
// Writing a result file so that a reader sees the old one or the new one,
// never half of either: a temp file in the same directory, fsync, rename,
// fsync the directory.  Blocking calls: for the libuv thread pool only
// (uv_queue_work), never the loop.  The same steps as files.cpp's.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

namespace kiln_atomic_write {

inline int failed(std::string &why, const std::string &what, int err)
{
    why = what + ": " + std::strerror(err);
    return -err;
}

// mkdir -p dir (0755); 0 or -errno with `why`.
inline int make_dirs(const std::string &dir, std::string &why)
{
    for (size_t i = 1; i <= dir.size(); i++) {
        if (i < dir.size() && dir[i] != '/')
            continue;
        std::string part = dir.substr(0, i);
        if (mkdir(part.c_str(), 0755) < 0 && errno != EEXIST && i == dir.size())
            return failed(why, "mkdir " + dir, errno);
    }
    struct stat st;
    if (stat(dir.c_str(), &st) < 0)
        return failed(why, "mkdir " + dir, errno);
    return S_ISDIR(st.st_mode) ? 0 : failed(why, "mkdir " + dir, ENOTDIR);
}

// DIR/NAME gets exactly `data` (mode 0644), or stays as it was.  When
// `cancelled` turns true before the rename, nothing changes: -ECANCELED.
inline int write_file(const std::string &dir, const std::string &name, const std::string &data,
                      const std::atomic<bool> &cancelled, std::string &why)
{
    std::string path = dir + "/" + name;
    std::string tmp = dir + "/." + name + ".XXXXXX";
    int fd = mkostemp(&tmp[0], O_CLOEXEC);
    if (fd < 0)
        return failed(why, "create " + tmp, errno);
    int rc = 0;
    for (size_t off = 0; off < data.size() && rc == 0;) {
        ssize_t n = write(fd, data.data() + off, data.size() - off);
        if (n < 0 && errno != EINTR)
            rc = failed(why, "write " + tmp, errno);
        else if (n > 0)
            off += static_cast<size_t>(n);
    }
    if (rc == 0 && fchmod(fd, 0644) < 0) // mkstemp makes 0600; results are for readers
        rc = failed(why, "chmod " + tmp, errno);
    if (rc == 0 && fsync(fd) < 0)
        rc = failed(why, "fsync " + tmp, errno);
    if (close(fd) < 0 && rc == 0)
        rc = failed(why, "close " + tmp, errno);
    if (rc == 0 && cancelled.load())
        rc = -ECANCELED; // last point where giving up leaves no trace
    if (rc == 0 && rename(tmp.c_str(), path.c_str()) < 0)
        rc = failed(why, "rename to " + path, errno);
    if (rc < 0) {
        unlink(tmp.c_str());
        return rc;
    }
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); // the rename, durable
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

} // namespace kiln_atomic_write
