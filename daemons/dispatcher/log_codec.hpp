#pragma once
// A stored result (the results table's frame column) compressed with zstd.
// The column holds either a frame as it came from the runner (databases
// written before compression: it starts with the frame's 4-byte big-endian
// length, at most max_frame's cap of 1 GiB, so its first byte is below 0x40)
// or kStoredMagic followed by one zstd frame of that frame.  Readers call
// unpack_stored_result and never see the difference.
#include <cstddef>
#include <string>
#include <string_view>

namespace kiln {

// "KZS1": its first byte (0x4B) can never start an uncompressed row.
constexpr std::string_view kStoredMagic = "KZS1";
// No stored result decompresses to more than this, whatever its zstd header
// claims: the largest frame a dispatcher accepts (max_frame's upper bound).
constexpr size_t kMaxStoredResult = size_t(1) << 30;

// Compress a result's frame for the database (the Store's writer thread).
std::string pack_stored_result(std::string_view frame, int level = 3);
// The frame back, from either form.  Throws std::runtime_error ("stored
// result: ...") on a corrupt or truncated blob or one that would exceed
// `max` bytes; never allocates more than what it has actually decoded.
std::string unpack_stored_result(std::string_view blob, size_t max = kMaxStoredResult);

} // namespace kiln
