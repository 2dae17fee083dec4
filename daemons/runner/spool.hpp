#pragma once
// The runner's spool: what each finished job owes the dispatcher — its
// Result, or for a listing job its TestList — on disk until the dispatcher
// has acknowledged it, so that neither a dispatcher outage nor a runner
// restart loses it.
//
// One file per delivery, WORK_DIR/spool/job-<job_id>-<attempt>.result (or
// .list), holding exactly one frame as it goes on the wire (encode_message:
// 4-byte length, msgpack map).  Files are replaced atomically (tmp, fsync, rename), so a
// crash leaves the old file, the new one or a "*.tmp-XXXXXX" leftover; a file
// damaged any other way (truncated, extended, not a result) is told apart by
// its frame length and the strict decoder, set aside as "*.corrupt" and never
// delivered.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

#include <kiln/messages.hpp>

#include "delivery.hpp"

namespace kiln {

// "job-<job_id>-<attempt>.result" (".list" for a test list): one file per
// attempt, so a late result of an earlier attempt and the current one never
// overwrite each other.
std::string spool_file_name(uint64_t job_id, uint32_t attempt, bool list = false);

// The bytes of a spool file → its Result or TestList.  False with `error`
// set ("empty file", "truncated: ...", "N bytes after the frame", the
// decoder's reason, "holds a <type>, not a result") when they are anything
// but one whole frame of those two.
bool decode_spool_file(std::string_view bytes, Delivery &out, std::string &error);

class Spool {
  public:
    // `dir` is created by load() (or by the first save()) when missing.
    Spool(uv_loop_t *loop, std::string dir) : loop_(loop), dir_(std::move(dir)) {}

    // Blocking, for start-up only: the deliveries waiting in the spool, in
    // file name order.  Logs and renames each damaged file to "<name>.corrupt",
    // deletes "*.tmp-*" leftovers of interrupted writes.  A spool directory
    // that cannot be created or read is logged and yields nothing.
    std::vector<Delivery> load();

    // Write the delivery's file on the thread pool; done(0 or -errno) runs on
    // the loop, once, after the file is on disk.
    void save(const Delivery &what, std::function<void(int status)> done);
    // Delete a delivery's file on the thread pool (done may be empty).
    void remove(uint64_t job_id, uint32_t attempt, bool list,
                std::function<void(int status)> done = {});

    std::string path(uint64_t job_id, uint32_t attempt, bool list = false) const
    {
        return dir_ + "/" + spool_file_name(job_id, attempt, list);
    }
    const std::string &dir() const { return dir_; }

  private:
    uv_loop_t *loop_;
    std::string dir_;
};

} // namespace kiln
