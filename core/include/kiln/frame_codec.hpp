#pragma once
// Wire framing: a 4-byte big-endian length, then that many bytes of one
// msgpack map.  The decoder is incremental: bytes arrive in whatever pieces
// TCP gives them, a frame may span many reads and a read may hold many frames.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

namespace kiln {

constexpr size_t kDefaultMaxFrame = 16u * 1024 * 1024;
constexpr size_t kFrameHeaderSize = 4;

// Prefix `payload` with its length.
std::string encode_frame(std::string_view payload);

class FrameDecoder {
  public:
    explicit FrameDecoder(size_t max_frame = kDefaultMaxFrame);

    // Take bytes from the peer.  Returns false once the stream is broken: a
    // length of zero or over max_frame (refused from the 4 header bytes
    // alone, before any body is buffered).  After that, error() says why and
    // every later feed() returns false.
    bool feed(const char *data, size_t len);

    // Pop the next complete frame's payload; false when none is complete.
    bool next(std::string &payload);

    bool failed() const { return !error_.empty(); }
    const std::string &error() const { return error_; }
    // Bytes held that are not yet a complete frame (for tests and limits).
    size_t buffered() const { return buffer_.size() - consumed_; }

  private:
    // Refuse a zero or oversized length: sets error_ and drops the buffer.
    bool check_length(uint32_t n);
    // Forget the (fully consumed) buffer, returning a big one's memory.
    void drop_buffer();

    size_t max_frame_;
    std::string buffer_; // unread bytes start at consumed_
    size_t consumed_ = 0;
    std::deque<std::string> ready_;
    std::string error_;
};

} // namespace kiln
