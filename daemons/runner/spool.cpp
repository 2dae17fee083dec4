// The runner's spool of unacknowledged results.  See spool.hpp.
#include "spool.hpp"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <kiln/atomic_file.hpp>
#include <kiln/frame_codec.hpp>
#include <kiln/log.hpp>

namespace kiln {

namespace {

constexpr std::string_view kSuffix = ".result";
constexpr std::string_view kListSuffix = ".list";
constexpr std::string_view kCorrupt = ".corrupt";

bool ends_with(std::string_view s, std::string_view end)
{
    return s.size() >= end.size() && s.substr(s.size() - end.size()) == end;
}

// The file names in dir, sorted; -errno when it cannot be read.
int list_dir(const std::string &dir, std::vector<std::string> &names)
{
    DIR *d = opendir(dir.c_str());
    if (!d)
        return -errno;
    while (dirent *e = readdir(d))
        if (e->d_name[0] != '.')
            names.emplace_back(e->d_name);
    closedir(d);
    std::sort(names.begin(), names.end());
    return 0;
}

} // namespace

std::string spool_file_name(uint64_t job_id, uint32_t attempt, bool list)
{
    return "job-" + std::to_string(job_id) + "-" + std::to_string(attempt) +
           std::string(list ? kListSuffix : kSuffix);
}

bool decode_spool_file(std::string_view bytes, Delivery &out, std::string &error)
{
    if (bytes.empty()) {
        error = "empty file";
        return false;
    }
    if (bytes.size() < kFrameHeaderSize) {
        error = "truncated: " + std::to_string(bytes.size()) + " bytes, less than a frame header";
        return false;
    }
    const auto *p = reinterpret_cast<const unsigned char *>(bytes.data());
    size_t len = (size_t(p[0]) << 24) | (size_t(p[1]) << 16) | (size_t(p[2]) << 8) | size_t(p[3]);
    size_t have = bytes.size() - kFrameHeaderSize;
    if (len == 0) {
        error = "frame of length 0";
        return false;
    }
    if (have < len) {
        error = "truncated: frame of " + std::to_string(len) + " bytes, " + std::to_string(have) +
                " present";
        return false;
    }
    if (have > len) {
        error = std::to_string(have - len) + " bytes after the frame";
        return false;
    }
    // The wire decoder, with its limits and strict field checks: a spool file
    // gets no more trust than a frame from the network.
    FrameDecoder decoder(len);
    std::string payload;
    if (!decoder.feed(bytes.data(), bytes.size()) || !decoder.next(payload)) {
        error = decoder.failed() ? decoder.error() : "no complete frame";
        return false;
    }
    Message msg;
    if (!decode_message(payload, msg, error))
        return false;
    if (auto *result = std::get_if<Result>(&msg))
        out = std::move(*result);
    else if (auto *list = std::get_if<TestList>(&msg))
        out = std::move(*list);
    else {
        error = std::string("holds a ") + message_type(msg) + ", not a result";
        return false;
    }
    return true;
}

std::vector<Delivery> Spool::load()
{
    std::vector<Delivery> results;
    int rc = make_dirs(dir_);
    std::vector<std::string> names;
    if (rc == 0)
        rc = list_dir(dir_, names);
    if (rc != 0) {
        log_err("spool %s: %s; results of earlier runs are not delivered", dir_.c_str(),
                strerror(-rc));
        return results;
    }
    for (const auto &name : names) {
        std::string path = dir_ + "/" + name;
        if (name.find(".tmp-") != std::string::npos) {
            // A write that a crash interrupted before its rename: the result
            // it carried was never sent, and its job was requeued.
            log_info("spool: removing %s, left by an interrupted write", path.c_str());
            unlink(path.c_str());
            continue;
        }
        if (!ends_with(name, kSuffix) && !ends_with(name, kListSuffix)) {
            if (!ends_with(name, kCorrupt))
                log_debug("spool: ignoring %s", path.c_str());
            continue;
        }
        std::string bytes, error;
        Delivery r;
        rc = read_whole_file(path, bytes);
        if (rc != 0)
            error = strerror(-rc);
        else if (decode_spool_file(bytes, r, error) &&
                 spool_file_name(delivery_job_id(r), delivery_attempt(r), is_test_list(r)) != name)
            // Removal after the ack goes by job, attempt and kind: a misnamed
            // file would be delivered again at every start.
            error = std::string("holds the ") + (is_test_list(r) ? "test list" : "result") +
                    " of job " + std::to_string(delivery_job_id(r)) + " attempt " +
                    std::to_string(delivery_attempt(r));
        if (error.empty()) {
            results.push_back(std::move(r));
            continue;
        }
        std::string aside = path + std::string(kCorrupt);
        log_warning("spool: %s: %s; not delivered, moved to %s", path.c_str(), error.c_str(),
                    aside.c_str());
        if (rename(path.c_str(), aside.c_str()) != 0)
            log_err("spool: rename %s: %s", path.c_str(), strerror(errno));
    }
    return results;
}

void Spool::save(const Delivery &what, std::function<void(int)> done)
{
    std::string file = path(delivery_job_id(what), delivery_attempt(what), is_test_list(what));
    write_file_atomic_async(loop_, file, encode_message(to_message(what)), std::move(done));
}

void Spool::remove(uint64_t job_id, uint32_t attempt, bool list, std::function<void(int)> done)
{
    remove_file_async(loop_, path(job_id, attempt, list), std::move(done));
}

} // namespace kiln
