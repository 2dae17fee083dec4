// zstd for stored results: compressed on the Store's writer thread, decoded
// wherever a result is read back.  See log_codec.hpp for the format.
#include "log_codec.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>

#include <zstd.h>

namespace kiln {

namespace {

std::runtime_error bad(const std::string &why)
{
    return std::runtime_error("stored result: " + why);
}

} // namespace

std::string pack_stored_result(std::string_view frame, int level)
{
    std::string out(kStoredMagic);
    size_t bound = ZSTD_compressBound(frame.size());
    out.resize(kStoredMagic.size() + bound);
    std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx *)> ctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    if (!ctx)
        throw bad("out of memory");
    // A checksum (4 bytes): a flipped bit on disk is an error, not a wrong log.
    ZSTD_CCtx_setParameter(ctx.get(), ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(ctx.get(), ZSTD_c_checksumFlag, 1);
    size_t n = ZSTD_compress2(ctx.get(), out.data() + kStoredMagic.size(), bound, frame.data(),
                              frame.size());
    if (ZSTD_isError(n))
        throw bad(std::string("cannot compress: ") + ZSTD_getErrorName(n));
    out.resize(kStoredMagic.size() + n);
    return out;
}

std::string unpack_stored_result(std::string_view blob, size_t max)
{
    if (blob.substr(0, kStoredMagic.size()) != kStoredMagic)
        return std::string(blob); // written before compression: as it came
    blob.remove_prefix(kStoredMagic.size());
    if (blob.empty())
        throw bad("empty zstd frame");
    // Streaming, growing the output as bytes really come out: a header
    // claiming a huge content size costs nothing, a decompression bomb stops
    // at `max`.
    std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx *)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    if (!ctx)
        throw bad("out of memory");
    std::string out;
    ZSTD_inBuffer in{blob.data(), blob.size(), 0};
    size_t last = 1; // not yet at a frame's end
    const size_t step = ZSTD_DStreamOutSize();
    while (in.pos < in.size || last != 0) {
        size_t have = out.size();
        if (have >= max)
            throw bad("decompresses to more than " + std::to_string(max) + " bytes");
        size_t room = std::min(step, max - have);
        out.resize(have + room);
        ZSTD_outBuffer o{out.data() + have, room, 0};
        last = ZSTD_decompressStream(ctx.get(), &o, &in);
        out.resize(have + o.pos);
        if (ZSTD_isError(last))
            throw bad(std::string("corrupt: ") + ZSTD_getErrorName(last));
        if (last != 0 && in.pos == in.size && o.pos < room)
            throw bad("truncated zstd frame");
        if (last == 0 && in.pos < in.size)
            throw bad("trailing bytes after the zstd frame");
    }
    return out;
}

} // namespace kiln
