// FrameDecoder: frames split anywhere, many frames per read, a bad length
// refused from the 4 header bytes alone, and a buffer that never holds more
// than the one frame in flight.
#include "test.hpp"

#include <kiln/frame_codec.hpp>

#include <vector>

using kiln::encode_frame;
using kiln::FrameDecoder;

// A payload of n bytes whose content depends on seed (so frames differ).
static std::string payload_of(size_t n, int seed)
{
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 31 + seed) & 0xff);
    return s;
}

static void test_encode_header(void **)
{
    std::string f = encode_frame("abc");
    assert_int_equal(f.size(), 7);
    assert_memory_equal(f.data(), "\0\0\0\3abc", 7);

    // 0x01_02_03 bytes: every header byte is significant, big-endian.
    f = encode_frame(std::string(0x010203, 'x'));
    assert_int_equal(f.size(), 4 + 0x010203);
    assert_memory_equal(f.data(), "\0\1\2\3", 4);
}

static void test_single_frame(void **)
{
    FrameDecoder d;
    std::string f = encode_frame("hello"), out;
    assert_false(d.next(out));
    assert_true(d.feed(f.data(), f.size()));
    assert_true(d.next(out));
    assert_string_equal(S(out), "hello");
    assert_false(d.next(out));
    assert_int_equal(d.buffered(), 0);
    assert_false(d.failed());
}

static void test_byte_by_byte(void **)
{
    const std::vector<std::string> payloads = {payload_of(1, 1), payload_of(300, 2),
                                               payload_of(70000, 3), payload_of(5, 4)};
    std::string wire;
    for (const auto &p : payloads)
        wire += encode_frame(p);

    FrameDecoder d;
    std::string out;
    size_t frame = 0, frame_end = 4 + payloads[0].size();
    for (size_t i = 0; i < wire.size(); ++i) {
        assert_true(d.feed(&wire[i], 1));
        if (i + 1 < frame_end) {
            // Nothing is complete until the frame's last byte arrives.
            assert_false(d.next(out));
            assert_true(d.buffered() <= 4 + payloads[frame].size());
            continue;
        }
        assert_true(d.next(out));
        assert_true(out == payloads[frame]);
        assert_false(d.next(out));
        assert_int_equal(d.buffered(), 0);
        if (++frame < payloads.size())
            frame_end += 4 + payloads[frame].size();
    }
    assert_int_equal(frame, payloads.size());
}

static void test_coalesced(void **)
{
    std::string wire;
    for (int i = 0; i < 1000; ++i)
        wire += encode_frame(payload_of(1 + i % 37, i));
    FrameDecoder d;
    assert_true(d.feed(wire.data(), wire.size()));
    assert_int_equal(d.buffered(), 0);
    std::string out;
    for (int i = 0; i < 1000; ++i) {
        assert_true(d.next(out));
        assert_true(out == payload_of(1 + i % 37, i));
    }
    assert_false(d.next(out));
}

// Odd-sized reads that cut headers and bodies at every possible offset.
static void test_ragged_reads(void **)
{
    std::string wire;
    for (int i = 0; i < 200; ++i)
        wire += encode_frame(payload_of(1 + (i * 7) % 23, i));
    for (size_t step = 1; step <= 11; ++step) {
        FrameDecoder d;
        std::string out;
        int got = 0;
        for (size_t at = 0; at < wire.size(); at += step) {
            assert_true(d.feed(wire.data() + at, std::min(step, wire.size() - at)));
            // Only the frame in flight is held: never more than header + 23.
            assert_true(d.buffered() < 4 + 23);
            while (d.next(out)) {
                assert_true(out == payload_of(1 + (got * 7) % 23, got));
                ++got;
            }
        }
        assert_int_equal(got, 200);
        assert_int_equal(d.buffered(), 0);
    }
}

static void test_oversized_from_header(void **)
{
    FrameDecoder d;
    // Only the header: the 2 GiB body never has to arrive to be refused.
    assert_false(d.feed("\x80\0\0\0", 4));
    assert_true(d.failed());
    assert_string_equal(S(d.error()), "frame of 2147483648 bytes exceeds max_frame 16777216");
    assert_int_equal(d.buffered(), 0);
    // Broken for good.
    std::string good = encode_frame("x"), out;
    assert_false(d.feed(good.data(), good.size()));
    assert_false(d.next(out));
}

static void test_oversized_split_header(void **)
{
    FrameDecoder d(16);
    std::string wire = encode_frame(std::string(17, 'a'));
    assert_true(d.feed(wire.data(), 2));
    assert_int_equal(d.buffered(), 2);
    // The rest of the header plus the body in one read: refused, nothing kept.
    assert_false(d.feed(wire.data() + 2, wire.size() - 2));
    assert_string_equal(S(d.error()), "frame of 17 bytes exceeds max_frame 16");
    assert_int_equal(d.buffered(), 0);
}

static void test_limit_is_inclusive(void **)
{
    FrameDecoder d(16);
    std::string ok = encode_frame(std::string(16, 'a')), out;
    assert_true(d.feed(ok.data(), ok.size()));
    assert_true(d.next(out));
    assert_int_equal(out.size(), 16);
}

static void test_zero_length(void **)
{
    FrameDecoder d;
    std::string wire = std::string("\0\0\0\0", 4) + encode_frame("x");
    assert_false(d.feed(wire.data(), wire.size()));
    assert_string_equal(S(d.error()), "frame of 0 bytes (empty frames are not allowed)");
    std::string out;
    assert_false(d.next(out));
}

// Frames complete before the bad header are still handed out.
static void test_good_then_bad(void **)
{
    FrameDecoder d(100);
    std::string wire = encode_frame("one") + encode_frame("two") + std::string("\xff\xff\xff\xff");
    assert_false(d.feed(wire.data(), wire.size()));
    std::string out;
    assert_true(d.next(out));
    assert_string_equal(S(out), "one");
    assert_true(d.next(out));
    assert_string_equal(S(out), "two");
    assert_false(d.next(out));
    assert_string_equal(S(d.error()), "frame of 4294967295 bytes exceeds max_frame 100");
}

// Garbage is just a length to the framer: big garbage trips max_frame.
static void test_garbage_bytes(void **)
{
    FrameDecoder d;
    const char junk[] = "GET / HTTP/1.1\r\n\r\n";
    assert_false(d.feed(junk, sizeof junk - 1));
    // "GET " read as big-endian is 0x47455420.
    assert_string_equal(S(d.error()), "frame of 1195725856 bytes exceeds max_frame 16777216");
}

// A large frame trickling in, then small ones: buffered() tracks exactly
// what is held, and drops to zero between frames.
static void test_buffer_bounded(void **)
{
    FrameDecoder d;
    std::string big = encode_frame(payload_of(1 << 20, 9)), out;
    for (size_t at = 0; at < big.size(); at += 4096) {
        size_t n = std::min<size_t>(4096, big.size() - at);
        assert_true(d.feed(big.data() + at, n));
        if (at + n < big.size())
            assert_int_equal(d.buffered(), at + n);
    }
    assert_int_equal(d.buffered(), 0);
    assert_true(d.next(out));
    assert_true(out == payload_of(1 << 20, 9));
    for (int i = 0; i < 10000; ++i) {
        std::string f = encode_frame(payload_of(10, i));
        assert_true(d.feed(f.data(), 3));
        assert_true(d.feed(f.data() + 3, f.size() - 3));
        assert_true(d.next(out));
        assert_int_equal(d.buffered(), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_header),
        cmocka_unit_test(test_single_frame),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_coalesced),
        cmocka_unit_test(test_ragged_reads),
        cmocka_unit_test(test_oversized_from_header),
        cmocka_unit_test(test_oversized_split_header),
        cmocka_unit_test(test_limit_is_inclusive),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_good_then_bad),
        cmocka_unit_test(test_garbage_bytes),
        cmocka_unit_test(test_buffer_bounded),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
