// libFuzzer target: kiln::decode_message on one frame payload.
//
// decode_message must never throw or crash, and must say why it refused.
// When it accepts, the round trip must hold: encode_message of the message
// is a well-formed frame whose payload decodes again, to a message of the
// same type, which encodes to the very same bytes (the encoding of a decoded
// message is a fixed point).
#include "kiln/frame_codec.hpp"
#include "kiln/messages.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            std::fprintf(stderr, "fuzz_messages: invariant failed: %s (line %d)\n", #cond,      \
                         __LINE__);                                                              \
            std::abort();                                                                        \
        }                                                                                        \
    } while (0)

namespace {

// The payload of an encoded frame, checked against its length prefix.
std::string_view payload_of(const std::string &frame)
{
    CHECK(frame.size() > kiln::kFrameHeaderSize);
    const auto *u = reinterpret_cast<const unsigned char *>(frame.data());
    const uint32_t n = (uint32_t(u[0]) << 24) | (uint32_t(u[1]) << 16) | (uint32_t(u[2]) << 8) |
                       uint32_t(u[3]);
    CHECK(n == frame.size() - kiln::kFrameHeaderSize);
    return std::string_view(frame).substr(kiln::kFrameHeaderSize);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const std::string_view input(reinterpret_cast<const char *>(data), size);
    kiln::Message msg;
    std::string error;
    if (!kiln::decode_message(input, msg, error)) {
        CHECK(!error.empty());
        return 0;
    }
    const std::string frame = kiln::encode_message(msg);
    kiln::Message again;
    std::string error2;
    if (!kiln::decode_message(payload_of(frame), again, error2)) {
        std::fprintf(stderr, "fuzz_messages: re-encoded %s does not decode: %s\n",
                     kiln::message_type(msg), error2.c_str());
        std::abort();
    }
    CHECK(again.index() == msg.index());
    CHECK(std::strcmp(kiln::message_type(again), kiln::message_type(msg)) == 0);
    CHECK(kiln::encode_message(again) == frame);
    return 0;
}
