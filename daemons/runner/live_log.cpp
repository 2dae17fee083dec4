// A running job's output on its way to the dispatcher (live_log.hpp).
#include "live_log.hpp"

#include <algorithm>

#include <kiln/log.hpp>

namespace kiln {

LiveLog::LiveLog(uv_loop_t *loop, uint64_t job_id, uint32_t attempt, size_t max_log, Send send)
    : loop_(loop), job_id_(job_id), attempt_(attempt), max_log_(max_log), send_(std::move(send)),
      timer_(new uv_timer_t)
{
    uv_timer_init(loop, timer_);
    timer_->data = this;
}

LiveLog::~LiveLog()
{
    // The handle outlives us until libuv has closed it.
    timer_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t *>(timer_),
             [](uv_handle_t *h) noexcept { delete reinterpret_cast<uv_timer_t *>(h); });
}

void LiveLog::append(std::string_view more)
{
    if (more.empty() || finished_)
        return;
    // The start of a log says what the run was, its end why it failed
    // (as JobRun::bounded_log keeps them): the first quarter of max_log is
    // streamed, the output after it is held back, and finish() appends its
    // last three quarters.
    const size_t head = max_log_ / 4;
    if (dropped_ > 0 || bytes_.size() + more.size() > head) {
        size_t room = bytes_.size() < head ? head - bytes_.size() : 0;
        size_t take = dropped_ > 0 ? 0 : std::min(room, more.size());
        bytes_.append(more.substr(0, take));
        if (dropped_ == 0)
            bytes_ += "\n[kiln: output beyond max_log / 4 (" + std::to_string(head) +
                      " bytes) is held back; its last " + std::to_string(max_log_ - head) +
                      " bytes follow when the tests end]\n";
        more.remove_prefix(take);
        dropped_ += more.size();
        // Keep the newest bytes only, trimming now and then rather than at
        // every append.
        tail_.append(more);
        const size_t keep = max_log_ - head;
        if (tail_.size() > 2 * keep)
            tail_.erase(0, tail_.size() - keep);
    } else {
        bytes_.append(more);
    }
    if (bytes_.size() - sent_ >= kCoalesceBytes)
        return flush();
    if (timer_running_)
        return; // sent at the window's end
    // At most one chunk per kCoalesceMs: the first bytes after a quiet
    // spell go at once (a line a second is seen at once), what follows
    // within the window waits for its end.
    const uint64_t now = uv_now(loop_);
    if (now >= last_flush_ms_ + kCoalesceMs)
        return flush();
    timer_running_ = true;
    uv_timer_start(timer_, on_timer, last_flush_ms_ + kCoalesceMs - now, 0);
}

void LiveLog::on_timer(uv_timer_t *timer) noexcept
{
    auto *self = static_cast<LiveLog *>(timer->data);
    if (!self)
        return;
    self->timer_running_ = false;
    guarded("live log", [self] { self->flush(); });
}

void LiveLog::flush()
{
    if (timer_running_) {
        uv_timer_stop(timer_);
        timer_running_ = false;
    }
    if (sent_ < bytes_.size())
        last_flush_ms_ = uv_now(loop_);
    while (sent_ < bytes_.size()) {
        size_t n = std::min<size_t>(bytes_.size() - sent_, kMaxChunk);
        LogChunk chunk{0, job_id_, attempt_, sent_, bytes_.substr(sent_, n)};
        if (!send_(std::move(chunk)))
            return; // not connected: resume() sends it
        sent_ += n;
    }
}

void LiveLog::finish()
{
    if (finished_)
        return;
    finished_ = true;
    if (dropped_ > 0) {
        const size_t keep = max_log_ - max_log_ / 4;
        if (tail_.size() > keep)
            tail_.erase(0, tail_.size() - keep);
        bytes_ += "[kiln: " + std::to_string(dropped_ - tail_.size()) +
                  " bytes of log dropped]\n" + tail_;
        tail_.clear();
        tail_.shrink_to_fit();
    }
    flush();
}

void LiveLog::acked(uint64_t offset)
{
    // An ack may be for less than we sent (chunks in flight) but never for
    // more than we have: that would be a confused dispatcher, and resending
    // from there would skip bytes.
    acked_ = std::max(acked_, std::min<uint64_t>(offset, sent_));
}

void LiveLog::resume()
{
    sent_ = acked_;
    flush();
}

} // namespace kiln
