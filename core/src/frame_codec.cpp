// Length-prefixed framing.  The decoder holds at most one incomplete frame:
// whole frames are cut straight out of the caller's bytes, and only the tail
// of a frame still in flight is copied into buffer_.  So memory is bounded by
// max_frame plus the frames the caller has not popped yet, and a hostile
// length is refused from its 4 header bytes before any body is kept.
#include "kiln/frame_codec.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace kiln {

namespace {

// Above this, a drained buffer gives its memory back instead of keeping the
// capacity of the largest frame ever seen for the life of the connection.
constexpr size_t kKeepCapacity = 64 * 1024;

uint32_t read_be32(const char *p)
{
    const auto *u = reinterpret_cast<const unsigned char *>(p);
    return (uint32_t(u[0]) << 24) | (uint32_t(u[1]) << 16) | (uint32_t(u[2]) << 8) |
           uint32_t(u[3]);
}

} // namespace

std::string encode_frame(std::string_view payload)
{
    // The prefix is 32 bits; a bigger payload is a caller bug (every peer's
    // max_frame is far smaller), not a run-time condition to carry on from.
    if (payload.size() > std::numeric_limits<uint32_t>::max())
        throw std::length_error("encode_frame: payload over 4 GiB");
    const auto n = static_cast<uint32_t>(payload.size());
    std::string out;
    out.reserve(kFrameHeaderSize + payload.size());
    out.push_back(static_cast<char>((n >> 24) & 0xff));
    out.push_back(static_cast<char>((n >> 16) & 0xff));
    out.push_back(static_cast<char>((n >> 8) & 0xff));
    out.push_back(static_cast<char>(n & 0xff));
    out.append(payload.data(), payload.size());
    return out;
}

FrameDecoder::FrameDecoder(size_t max_frame) : max_frame_(max_frame) {}

bool FrameDecoder::check_length(uint32_t n)
{
    char msg[128];
    if (n == 0)
        std::snprintf(msg, sizeof msg, "frame of 0 bytes (empty frames are not allowed)");
    else if (n > max_frame_)
        std::snprintf(msg, sizeof msg, "frame of %lu bytes exceeds max_frame %zu",
                      static_cast<unsigned long>(n), max_frame_);
    else
        return true;
    error_ = msg;
    // A broken stream cannot be resynchronised: drop everything held.
    std::string().swap(buffer_);
    consumed_ = 0;
    return false;
}

void FrameDecoder::drop_buffer()
{
    if (buffer_.capacity() > kKeepCapacity)
        std::string().swap(buffer_);
    else
        buffer_.clear();
    consumed_ = 0;
}

bool FrameDecoder::feed(const char *data, size_t len)
{
    if (failed())
        return false;
    while (len > 0) {
        if (buffered() == 0) {
            // Fast path: nothing pending, cut whole frames from the input.
            if (len < kFrameHeaderSize) {
                buffer_.append(data, len);
                return true;
            }
            const uint32_t n = read_be32(data);
            if (!check_length(n))
                return false;
            if (len - kFrameHeaderSize >= n) {
                ready_.emplace_back(data + kFrameHeaderSize, n);
                data += kFrameHeaderSize + n;
                len -= kFrameHeaderSize + n;
                continue;
            }
            // No reserve(n) here: a peer announcing max_frame and sending one
            // byte should not pin max_frame of memory per connection.
            buffer_.append(data, len);
            return true;
        }

        // A frame is in flight: first complete its header, then its body.
        size_t have = buffered();
        if (have < kFrameHeaderSize) {
            const size_t take = std::min(kFrameHeaderSize - have, len);
            buffer_.append(data, take);
            data += take;
            len -= take;
            if (buffered() < kFrameHeaderSize)
                return true;
            if (!check_length(read_be32(buffer_.data() + consumed_)))
                return false;
            have = buffered();
        }
        const uint32_t n = read_be32(buffer_.data() + consumed_);
        const size_t want = kFrameHeaderSize + n - have;
        const size_t take = std::min(want, len);
        buffer_.append(data, take);
        data += take;
        len -= take;
        if (take < want)
            return true;
        ready_.emplace_back(buffer_, consumed_ + kFrameHeaderSize, n);
        // The buffer never holds more than the one frame, so it is now empty.
        drop_buffer();
    }
    return true;
}

bool FrameDecoder::next(std::string &payload)
{
    if (ready_.empty())
        return false;
    payload = std::move(ready_.front());
    ready_.pop_front();
    return true;
}

} // namespace kiln
