// Crash-safe file replacement and small file helpers.
#include <kiln/atomic_file.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

#include <kiln/log.hpp>

namespace kiln {

namespace {

std::string parent_of(const std::string &path)
{
    size_t slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

int write_all(int fd, const std::string &data)
{
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        done += static_cast<size_t>(n);
    }
    return 0;
}

template <typename Fn> struct PoolJob {
    uv_work_t work;
    Fn fn;
    std::function<void(int)> done;
    int status = 0;
};

// Run `fn` (returning 0 or -errno) on the thread pool, `done` on the loop.
template <typename Fn> void on_pool(uv_loop_t *loop, Fn fn, std::function<void(int)> done)
{
    auto *job = new PoolJob<Fn>{{}, std::move(fn), std::move(done)};
    job->work.data = job;
    int rc = uv_queue_work(
        loop, &job->work,
        [](uv_work_t *w) noexcept {
            auto *j = static_cast<PoolJob<Fn> *>(w->data);
            j->status = -EIO; // what a throwing `fn` amounts to
            guarded("write file", [&] { j->status = j->fn(); });
        },
        [](uv_work_t *w, int status) noexcept {
            std::unique_ptr<PoolJob<Fn>> j(static_cast<PoolJob<Fn> *>(w->data));
            if (j->done)
                guarded("write file: done",
                        [&] { j->done(status == UV_ECANCELED ? status : j->status); });
        });
    if (rc != 0) { // cannot happen with a valid loop; keep the exactly-once promise anyway
        auto done_cb = std::move(job->done);
        delete job;
        if (done_cb)
            done_cb(rc);
    }
}

} // namespace

int make_dirs(const std::string &path, unsigned mode)
{
    if (path.empty())
        return -EINVAL;
    struct stat st;
    if (stat(path.c_str(), &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
    std::string parent = parent_of(path);
    if (parent != path) {
        int rc = make_dirs(parent, mode);
        if (rc != 0)
            return rc;
    }
    if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int write_file_atomic(const std::string &path, const std::string &data)
{
    std::string dir = parent_of(path);
    int rc = make_dirs(dir);
    if (rc != 0)
        return rc;
    std::string tmp = path + ".tmp-XXXXXX";
    int fd = mkostemp(tmp.data(), O_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = write_all(fd, data);
    if (rc == 0 && fchmod(fd, 0640) != 0)
        rc = -errno;
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp.c_str(), path.c_str()) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp.c_str());
        return rc;
    }
    // The rename itself must reach the disk, or a crash could bring back the old file.
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int read_whole_file(const std::string &path, std::string &data)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    data.clear();
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        if (n == 0)
            break;
        data.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return 0;
}

void write_file_atomic_async(uv_loop_t *loop, std::string path, std::string data,
                             std::function<void(int)> done)
{
    on_pool(
        loop,
        [path = std::move(path), data = std::move(data)] { return write_file_atomic(path, data); },
        std::move(done));
}

void remove_file_async(uv_loop_t *loop, std::string path, std::function<void(int)> done)
{
    on_pool(
        loop, [path = std::move(path)] { return unlink(path.c_str()) == 0 ? 0 : -errno; },
        std::move(done));
}

} // namespace kiln
