// The running jobs' log tails and their followers (live_logs.hpp), and
// kilnctl's "log" query.
#include "live_logs.hpp"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include <msgpack.hpp>

#include <kiln/log.hpp>

namespace kiln {

void LiveLogs::on_chunk(Connection &conn, const LogChunk &c)
{
    conn.send(Ack{c.id, c.job_id, append(conn.name, c)});
}

uint64_t LiveLogs::append(const std::string &runner, const LogChunk &c)
{
    const Job *job = jobs_.find(c.job_id);
    if (!job || job->state != JobState::assigned || job->runner != runner ||
        job->attempt != c.attempt) {
        // A chunk of an attempt that is over (requeued, cancelled, done):
        // normal after a reconnect, nothing to keep, the connection stays.
        log_debug("job %llu: log chunk of attempt %u from %s ignored: not its running attempt",
                  static_cast<unsigned long long>(c.job_id), c.attempt, runner.c_str());
        return 0;
    }
    Tail &tail = tails_[c.job_id];
    if (tail.attempt != c.attempt || c.offset > tail.end()) {
        // "resumes at offset N" is what test_live_logs looks for after a restart.
        if (c.offset > 0)
            log_info("job %llu: live log of attempt %u resumes at offset %llu",
                     static_cast<unsigned long long>(c.job_id), c.attempt,
                     static_cast<unsigned long long>(c.offset));
        total_ -= tail.bytes.size();
        tail = Tail{c.attempt, c.offset, {}};
    }
    const uint64_t chunk_end = c.offset + c.bytes.size();
    if (chunk_end <= tail.end())
        return tail.end(); // all of it held already: a resend
    std::string_view fresh(c.bytes);
    fresh.remove_prefix(tail.end() - c.offset);
    const uint64_t at = tail.end();
    tail.bytes.append(fresh);
    total_ += fresh.size();
    if (tail.bytes.size() > kTailBytes) {
        size_t cut = tail.bytes.size() - kTailBytes;
        tail.bytes.erase(0, cut);
        tail.start += cut;
        total_ -= cut;
    }
    const uint64_t end = tail.end();
    trim_total();
    // Followers may unfollow from their callback: walk a copy of the tokens.
    std::vector<uint64_t> tokens;
    for (const auto &[token, entry] : followers_)
        if (entry.job_id == c.job_id)
            tokens.push_back(token);
    for (uint64_t token : tokens)
        if (auto it = followers_.find(token); it != followers_.end()) {
            auto on_append = it->second.follower.on_append; // it may unfollow while it runs
            on_append(c.attempt, at, fresh);
        }
    return end;
}

// Over the total: the longest tails lose their oldest bytes first, so one
// chatty job cannot evict the quiet ones.
void LiveLogs::trim_total()
{
    while (total_ > kTotalBytes) {
        auto longest = std::max_element(tails_.begin(), tails_.end(), [](auto &a, auto &b) {
            return a.second.bytes.size() < b.second.bytes.size();
        });
        Tail &t = longest->second;
        size_t cut = std::min(total_ - kTotalBytes, std::max<size_t>(t.bytes.size() / 2, 1));
        t.bytes.erase(0, cut);
        t.start += cut;
        total_ -= cut;
    }
}

void LiveLogs::end(uint64_t job_id)
{
    if (auto it = tails_.find(job_id); it != tails_.end()) {
        total_ -= it->second.bytes.size();
        tails_.erase(it);
    }
    std::vector<uint64_t> tokens;
    for (const auto &[token, entry] : followers_)
        if (entry.job_id == job_id)
            tokens.push_back(token);
    for (uint64_t token : tokens) {
        auto it = followers_.find(token);
        if (it == followers_.end())
            continue;
        Follower f = std::move(it->second.follower);
        followers_.erase(it);
        if (f.on_end)
            f.on_end();
    }
}

const LiveLogs::Tail *LiveLogs::find(uint64_t job_id) const
{
    auto it = tails_.find(job_id);
    return it == tails_.end() ? nullptr : &it->second;
}

uint64_t LiveLogs::follow(uint64_t job_id, Follower follower)
{
    uint64_t token = next_token_++;
    followers_[token] = Entry{job_id, std::move(follower)};
    return token;
}

void LiveLogs::unfollow(uint64_t token) { followers_.erase(token); }

std::string LiveLogs::answer(const std::string &arg, std::string &error) const
{
    // "COMMIT@OFFSET": the offset in decimal, at most 20 digits.
    std::string commit = arg;
    uint64_t offset = 0;
    if (size_t at = arg.find('@'); at != std::string::npos) {
        commit = arg.substr(0, at);
        std::string digits = arg.substr(at + 1);
        if (digits.empty() || digits.size() > 20 ||
            digits.find_first_not_of("0123456789") != std::string::npos) {
            error = "log: '" + digits.substr(0, 24) + "' is not an offset";
            return {};
        }
        offset = std::strtoull(digits.c_str(), nullptr, 10);
    }
    const Job *job = jobs_.find_commit(commit);
    if (!job) {
        error = "no job for commit '" + commit + "' (unknown, ambiguous or shorter than 4)";
        return {};
    }
    const bool done = job->state == JobState::done;
    std::string_view text;
    uint64_t from = offset;
    if (done) {
        const std::string &log = job->result.log;
        from = std::min<uint64_t>(offset, log.size());
        text = std::string_view(log).substr(from);
    } else if (const Tail *tail = find(job->id); tail && tail->attempt == job->attempt) {
        from = std::clamp<uint64_t>(offset, tail->start, tail->end());
        text = std::string_view(tail->bytes).substr(from - tail->start);
    }
    const bool more = text.size() > kMaxReply;
    text = text.substr(0, kMaxReply);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(9);
    pk.pack("job_id"), pk.pack(job->id);
    pk.pack("commit"), pk.pack(job->spec.commit);
    pk.pack("attempt"), pk.pack(job->attempt);
    pk.pack("state"), pk.pack(job_state_name(job->state));
    pk.pack("done"), pk.pack(done);
    pk.pack("offset"), pk.pack(from);
    pk.pack("text"), pk.pack_str(static_cast<uint32_t>(text.size()));
    pk.pack_str_body(text.data(), static_cast<uint32_t>(text.size()));
    pk.pack("end"), pk.pack(from + text.size());
    pk.pack("more"), pk.pack(more);
    return std::string(buf.data(), buf.size());
}

} // namespace kiln
