#pragma once
// kiln-observer's outbox: the commits handed to the dispatcher but not yet
// acknowledged, in the order they were enqueued, and for each watch the rule
// that decides what counts as handed over.
//
// A watch's handed-over commit may advance to C only when C and every commit
// enqueued before it for that watch are acknowledged: then a restart that
// lists the commits after the handed-over one cannot skip an earlier commit
// whose ack was lost.  Acks normally come in order, but a dispatcher may
// answer out of order (it persists in batches), so an acked commit behind
// an unacked one is remembered until the gap closes.
//
// Pure bookkeeping, no I/O: the Observer sends and receives.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <kiln/messages.hpp>

namespace kiln {

class Outbox {
  public:
    // Enqueue a commit of watch `watch` (the caller's index); returns the
    // request id it is sent under.  Ids increase, so they also give the
    // order in which commits are sent.
    uint64_t push(size_t watch, JobSpec spec);

    // Commits not yet acknowledged.
    size_t size() const { return entries_.size(); }
    // Commits of one watch not yet acknowledged.
    size_t pending(size_t watch) const;
    // True when some commit was sent on the current connection and its ack
    // has not come.
    bool awaiting_ack() const { return sent_ > 0; }

    // The commits not sent on the current connection, oldest first; they are
    // marked sent.
    std::vector<Commit> take_unsent();
    // The connection is gone: every unacknowledged commit is to be sent again.
    void mark_all_unsent();

    // The dispatcher refused request `id` (an error frame answering it, e.g.
    // max_queued_per_repo): it stays in the outbox, no longer awaited on this
    // connection, and is sent again after the next reconnect.  Returns the
    // commit, or nullptr when `id` is not a commit sent on this connection.
    const Commit *refuse(uint64_t id);
    // Commits refused on the current connection.
    size_t refused() const { return refused_; }

    struct Advance {
        size_t watch;
        std::string commit; // the watch's new handed-over commit
    };
    struct AckResult {
        bool known = false;            // the id was in the outbox
        std::string commit;            // the commit acknowledged
        std::optional<Advance> advance; // set when the watch's handed-over commit moved
        bool was_refused = false;       // refused on an earlier connection, accepted now
    };
    // Record the ack of request `id`.
    AckResult ack(uint64_t id);

  private:
    struct Entry {
        size_t watch;
        Commit commit;
        bool sent = false;
        bool refused = false;   // on the current connection
        uint32_t refusals = 0;  // over all connections
    };
    struct Step { // one commit in a watch's enqueue order
        uint64_t id;
        std::string commit;
        bool acked = false;
    };

    uint64_t next_id_ = 1;
    std::map<uint64_t, Entry> entries_;             // unacknowledged, by id (= enqueue order)
    std::map<size_t, std::deque<Step>> windows_;    // per watch: from the oldest unacked on
    size_t sent_ = 0;                               // entries sent and awaiting an answer
    size_t refused_ = 0;                            // entries with refused == true
};

} // namespace kiln
