#pragma once
// A running job's output, streamed to the dispatcher while its tests run
// (the `log` message): every byte the tests write is appended here, up to
// max_log, and sent in chunks: at most one per 100 ms (the first bytes
// after a quiet spell at once, the rest at the window's end) unless 16 KiB
// wait, so a test that prints a line a second is seen at once and one that
// prints a megabyte costs a few dozen frames.  The dispatcher acks
// each chunk with the offset it holds; after a reconnect the runner resends
// from the last acknowledged offset.  bytes() is what the final
// Result.log carries: the same bytes, in the same order.  Over max_log,
// the head is streamed and the end of the output follows at finish().
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <uv.h>

#include <kiln/messages.hpp>

namespace kiln {

class LiveLog {
  public:
    // Hands a chunk to the connection; false when there is none (the
    // bytes stay unsent until resume()).
    using Send = std::function<bool(LogChunk &&)>;
    static constexpr uint64_t kCoalesceMs = 100;
    static constexpr size_t kCoalesceBytes = 16 * 1024;
    static constexpr size_t kMaxChunk = 64 * 1024; // per frame, far below max_frame

    LiveLog(uv_loop_t *loop, uint64_t job_id, uint32_t attempt, size_t max_log, Send send);
    ~LiveLog();
    LiveLog(const LiveLog &) = delete;
    LiveLog &operator=(const LiveLog &) = delete;

    // More output.  The first quarter of max_log is streamed; beyond it
    // the log says once that the rest is held back, and only the newest
    // three quarters of max_log of it are kept, for finish().
    void append(std::string_view bytes);
    // The tests ended: append what was held back (the dropped byte count,
    // then the end of the output) and send everything.  Later output is
    // ignored.
    void finish();
    // Send everything not yet sent, now (a reconnect, the coalescing timer).
    void flush();
    // The dispatcher holds the log up to `offset`.
    void acked(uint64_t offset);
    // Reconnected: what the dispatcher did not acknowledge is sent again.
    void resume();

    const std::string &bytes() const { return bytes_; }
    uint64_t sent() const { return sent_; }
    uint64_t acknowledged() const { return acked_; }
    uint64_t dropped() const { return dropped_; }
    uint64_t job_id() const { return job_id_; }
    uint32_t attempt() const { return attempt_; }

  private:
    static void on_timer(uv_timer_t *timer) noexcept;

    uv_loop_t *loop_;
    uint64_t job_id_;
    uint32_t attempt_;
    size_t max_log_;
    Send send_;
    uv_timer_t *timer_;
    bool timer_running_ = false;
    uint64_t last_flush_ms_ = 0; // uv_now() of the last chunk sent
    std::string bytes_;   // from offset 0, all of it (max_log bounds it)
    uint64_t sent_ = 0;   // bytes handed to a connection
    uint64_t acked_ = 0;  // bytes the dispatcher said it holds
    uint64_t dropped_ = 0; // bytes beyond the streamed head (tail_ included)
    std::string tail_;     // the newest of them, for finish()
    bool finished_ = false;
};

// The unittest plugin's records (result lines on stdout that begin with
// the ASCII record separator 0x1E) are data for the plugin, not output for
// a reader: this drops them from a process's stdout as it streams, without
// holding back any other byte.
class RecordFilter {
  public:
    // Calls out(piece) for each run of bytes that is not part of a record.
    template <class Out> void feed(const char *data, size_t len, Out &&out)
    {
        size_t start = 0;
        for (size_t i = 0; i < len; i++) {
            if (line_start_ && data[i] == '\x1e') {
                if (i > start)
                    out(std::string_view(data + start, i - start));
                in_record_ = true;
            }
            line_start_ = data[i] == '\n';
            if (in_record_ && line_start_) {
                in_record_ = false;
                start = i + 1;
            } else if (in_record_) {
                start = i + 1;
            }
        }
        if (start < len && !in_record_)
            out(std::string_view(data + start, len - start));
    }

  private:
    bool line_start_ = true;
    bool in_record_ = false;
};

} // namespace kiln
