// What the delivery engine shows: per receiver for kilnctl reports, the
// status page and /metrics (deliveries.hpp).
#include "deliveries.hpp"

#include <algorithm>

namespace kiln {

std::vector<ReceiverStatus> Deliveries::status(int64_t now_unix_ms) const
{
    std::vector<ReceiverStatus> out;
    auto add = [&](const std::string &identity, const Queue *q) {
        ReceiverStatus s;
        s.receiver = identity;
        const Receiver *r = reporter_.find(identity);
        s.configured = r != nullptr;
        s.plugin = r ? r->table.plugin : identity.substr(0, identity.find('#'));
        if (q) {
            s.pending = q->pending.size();
            s.in_flight = q->in_flight.size();
            s.rejected = q->rejected;
            s.delivered = q->delivered;
            s.failed = q->failed;
            s.refused = q->refused;
            s.last_error = q->last_error;
            if (q->paused_until > now_unix_ms && !q->pending.empty())
                s.next_attempt_unix_ms = q->paused_until;
            else // rows restored with their own next attempt
                for (const auto &[id, row] : q->pending)
                    if (row.next_attempt_unix_ms > now_unix_ms && !q->in_flight.count(id))
                        s.next_attempt_unix_ms =
                            s.next_attempt_unix_ms
                                ? std::min(s.next_attempt_unix_ms, row.next_attempt_unix_ms)
                                : row.next_attempt_unix_ms;
        }
        out.push_back(std::move(s));
    };
    for (const Receiver &r : *reporter_.current()) {
        auto it = queues_.find(r.table.identity);
        add(r.table.identity, it == queues_.end() ? nullptr : &it->second);
    }
    for (const auto &[identity, q] : queues_)
        if (!reporter_.find(identity))
            add(identity, &q);
    return out;
}

size_t Deliveries::backlog() const
{
    size_t n = 0;
    for (const auto &[identity, q] : queues_)
        n += q.pending.size();
    return n;
}

} // namespace kiln
