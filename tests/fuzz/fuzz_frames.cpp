// libFuzzer target: kiln::FrameDecoder against a reference parse.
//
// Input layout: byte 0 picks max_frame (below 0x80: 1..64, small so lengths
// over it and frames spanning many chunks are both common; from 0x80: up to
// 4065 in steps of 32, room for real messages, as in the seed corpus); then repeatedly one control
// byte c followed by a chunk of (c & 0x3f) bytes that is fed to the decoder
// (bit 6 of c: pop the ready frames after this chunk; bit 7: feed the chunk
// as bytes one at a time).  Invariants checked:
//  - buffered() never exceeds max_frame + 4;
//  - feed() returns false exactly when the decoder has failed; a failed
//    decoder stays failed, keeps its error and holds nothing;
//  - the frames popped are exactly those a one-shot parse of all bytes fed
//    finds before the stream breaks, and the decoder fails exactly when that
//    parse meets a length of 0 or over max_frame.
#include "kiln/frame_codec.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            std::fprintf(stderr, "fuzz_frames: invariant failed: %s (line %d)\n", #cond,        \
                         __LINE__);                                                              \
            std::abort();                                                                        \
        }                                                                                        \
    } while (0)

uint32_t be32(const std::string &s, size_t at)
{
    const auto *u = reinterpret_cast<const unsigned char *>(s.data() + at);
    return (uint32_t(u[0]) << 24) | (uint32_t(u[1]) << 16) | (uint32_t(u[2]) << 8) | uint32_t(u[3]);
}

// The frames in `stream` up to the first bad length; `broken` when there is one.
std::vector<std::string> reference(const std::string &stream, size_t max_frame, bool &broken)
{
    std::vector<std::string> frames;
    size_t pos = 0;
    broken = false;
    while (stream.size() - pos >= kiln::kFrameHeaderSize) {
        const uint32_t n = be32(stream, pos);
        if (n == 0 || n > max_frame) {
            broken = true;
            break;
        }
        if (stream.size() - pos - kiln::kFrameHeaderSize < n)
            break;
        frames.push_back(stream.substr(pos + kiln::kFrameHeaderSize, n));
        pos += kiln::kFrameHeaderSize + n;
    }
    return frames;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const size_t max_frame = data[0] < 0x80 ? 1 + (data[0] % 64) : 1 + size_t(data[0] - 0x80) * 32;
    kiln::FrameDecoder dec(max_frame);
    std::string stream; // every byte given to the decoder
    std::vector<std::string> got;
    std::string error_when_failed;

    auto check_after_feed = [&](bool ok) {
        CHECK(ok == !dec.failed());
        CHECK(dec.buffered() <= max_frame + kiln::kFrameHeaderSize);
        if (dec.failed()) {
            CHECK(!dec.error().empty());
            CHECK(dec.buffered() == 0);
            if (error_when_failed.empty())
                error_when_failed = dec.error();
            CHECK(dec.error() == error_when_failed);
        }
    };
    auto pop_all = [&]() {
        std::string p;
        while (dec.next(p)) {
            CHECK(!p.empty() && p.size() <= max_frame);
            got.push_back(p);
        }
    };

    size_t i = 1;
    while (i < size) {
        const uint8_t c = data[i++];
        size_t n = c & 0x3f;
        if (n > size - i)
            n = size - i;
        const char *chunk = reinterpret_cast<const char *>(data + i);
        i += n;
        const bool was_failed = dec.failed();
        if (c & 0x80) {
            for (size_t k = 0; k < n; ++k) {
                const bool before = dec.failed();
                const bool ok = dec.feed(chunk + k, 1);
                if (!before)
                    stream.push_back(chunk[k]);
                check_after_feed(ok);
            }
        } else {
            const bool ok = dec.feed(chunk, n);
            if (!was_failed)
                stream.append(chunk, n);
            check_after_feed(ok);
        }
        if (was_failed)
            CHECK(dec.failed());
        if (c & 0x40)
            pop_all();
    }
    // A feed of nothing changes nothing.
    const bool failed = dec.failed();
    const size_t held = dec.buffered();
    CHECK(dec.feed("", 0) == !failed);
    CHECK(dec.buffered() == held && dec.failed() == failed);
    pop_all();

    bool broken = false;
    const auto want = reference(stream, max_frame, broken);
    CHECK(broken == dec.failed());
    CHECK(got == want);
    // encode_frame is the inverse: the frames re-encoded are a prefix of the stream.
    std::string again;
    for (auto &f : got)
        again += kiln::encode_frame(f);
    CHECK(stream.compare(0, again.size(), again) == 0);
    if (!broken)
        CHECK(dec.buffered() == stream.size() - again.size());
    return 0;
}
