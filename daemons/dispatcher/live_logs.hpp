#pragma once
// The output of the running jobs, as their runners stream it (the `log`
// message), for followers: kilnctl log -f and the HTTP log stream.  Only a
// tail is kept per job — the last kTailBytes — and all tails together stay
// under kTotalBytes (the longest are cut first), so a chatty test or a
// thousand running jobs cannot grow the dispatcher without bound.  A tail
// is dropped when its job ends: the final Result.log, which holds the same
// bytes from offset 0, is then the source.  Tails are memory only: after a
// restart they start again at the offset each runner resumes from.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include <kiln/messages.hpp>
#include <kiln/net.hpp>

#include "job_table.hpp"

namespace kiln {

class LiveLogs {
  public:
    static constexpr size_t kTailBytes = 1u << 20;   // per running job
    static constexpr size_t kTotalBytes = 64u << 20; // all running jobs
    static constexpr size_t kMaxReply = 1u << 20;    // text per "log" answer

    struct Tail {
        uint32_t attempt = 0;
        uint64_t start = 0; // offset of bytes[0] in the attempt's log
        std::string bytes;
        uint64_t end() const { return start + bytes.size(); }
    };
    // A follower of one job: called with each append (the attempt, the
    // offset of `bytes`), and once with `ended` when the job's tail goes.
    struct Follower {
        std::function<void(uint32_t attempt, uint64_t offset, std::string_view bytes)> on_append;
        std::function<void()> on_end;
    };

    explicit LiveLogs(const JobTable &jobs) : jobs_(jobs) {}

    // A runner's chunk: kept when the job is assigned to that runner in that
    // attempt, and acked (Ack.offset) with the end of what is held.  A chunk
    // that overlaps what is held adds only its new bytes (a resend after a
    // reconnect); one past the end starts the tail again there (we
    // restarted and lost the bytes before: the final result has them).
    void on_chunk(Connection &conn, const LogChunk &chunk);
    // The same without the connection: the offset to ack (0: ignored).
    uint64_t append(const std::string &runner, const LogChunk &chunk);
    // The job ended or was requeued: its tail and followers go.
    void end(uint64_t job_id);

    const Tail *find(uint64_t job_id) const;
    size_t memory() const { return total_; }

    uint64_t follow(uint64_t job_id, Follower follower);
    void unfollow(uint64_t token);

    // kilnctl's "log" query; arg "COMMIT" or "COMMIT@OFFSET": a map with
    // job_id, attempt, state, done (the result is in: text comes from its
    // log), offset (where text starts: later than asked when the tail no
    // longer holds those bytes), text (at most kMaxReply bytes), end
    // (offset + its length) and more (text was cut at kMaxReply).  A split
    // (sharded) commit has no live log: text stays empty until it is done.
    std::string answer(const std::string &arg, std::string &error) const;

  private:
    void trim_total();

    const JobTable &jobs_;
    std::map<uint64_t, Tail> tails_; // by job id
    size_t total_ = 0;
    struct Entry {
        uint64_t job_id;
        Follower follower;
    };
    std::map<uint64_t, Entry> followers_; // by token
    uint64_t next_token_ = 1;
};

} // namespace kiln
