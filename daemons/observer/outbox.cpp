// kiln-observer's outbox and the per-watch ack-order rule.
#include "outbox.hpp"

namespace kiln {

uint64_t Outbox::push(size_t watch, JobSpec spec)
{
    uint64_t id = next_id_++;
    Entry e;
    e.watch = watch;
    e.commit.id = id;
    e.commit.spec = std::move(spec);
    windows_[watch].push_back(Step{id, e.commit.spec.commit});
    entries_.emplace(id, std::move(e));
    return id;
}

size_t Outbox::pending(size_t watch) const
{
    auto it = windows_.find(watch);
    if (it == windows_.end())
        return 0;
    size_t n = 0;
    for (const Step &s : it->second)
        n += s.acked ? 0 : 1;
    return n;
}

std::vector<Commit> Outbox::take_unsent()
{
    std::vector<Commit> out;
    for (auto &[id, e] : entries_)
        if (!e.sent) {
            e.sent = true;
            sent_++;
            out.push_back(e.commit);
        }
    return out;
}

void Outbox::mark_all_unsent()
{
    for (auto &[id, e] : entries_)
        e.sent = e.refused = false;
    sent_ = 0;
    refused_ = 0;
}

const Commit *Outbox::refuse(uint64_t id)
{
    auto it = entries_.find(id);
    if (it == entries_.end() || !it->second.sent || it->second.refused)
        return nullptr;
    Entry &e = it->second;
    e.refused = true; // still `sent`: not offered again on this connection
    e.refusals++;
    sent_--;
    refused_++;
    return &e.commit;
}

Outbox::AckResult Outbox::ack(uint64_t id)
{
    AckResult r;
    auto it = entries_.find(id);
    if (it == entries_.end())
        return r; // a duplicate ack, or one for a request that is not a commit
    r.known = true;
    r.commit = it->second.commit.spec.commit;
    size_t watch = it->second.watch;
    r.was_refused = it->second.refusals > 0;
    if (it->second.refused)
        refused_--;
    else if (it->second.sent)
        sent_--;
    entries_.erase(it);

    std::deque<Step> &window = windows_[watch];
    for (Step &s : window)
        if (s.id == id) {
            s.acked = true;
            break;
        }
    // Everything up to the first unacked step is handed over for good.
    while (!window.empty() && window.front().acked) {
        r.advance = Advance{watch, std::move(window.front().commit)};
        window.pop_front();
    }
    if (window.empty())
        windows_.erase(watch);
    return r;
}

} // namespace kiln
