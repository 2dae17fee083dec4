// The runner's live log (live_log.hpp): chunks coalesced to one per 100 ms
// unless 16 KiB wait, bounded by max_log with one note, resent from the
// acknowledged offset after a reconnect; and the filter that keeps the
// unittest plugin's records out of the log.
#include <string>
#include <vector>

#include <uv.h>

#include "live_log.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

struct Sink {
    std::vector<LogChunk> chunks;
    bool connected = true;
};

// Runs the loop until `n` chunks were sent or `ms` passed.
void run_until(uv_loop_t *loop, Sink &sink, size_t n, uint64_t ms = 2000)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, [](uv_timer_t *) noexcept {}, ms, 0);
    while (sink.chunks.size() < n && uv_is_active(reinterpret_cast<uv_handle_t *>(&guard)))
        uv_run(loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t *>(&guard), nullptr);
    uv_run(loop, UV_RUN_NOWAIT);
}

LiveLog::Send to(Sink &sink)
{
    return [&sink](LogChunk &&c) {
        if (!sink.connected)
            return false;
        sink.chunks.push_back(std::move(c));
        return true;
    };
}

std::string filtered(RecordFilter &f, const std::string &in)
{
    std::string out;
    f.feed(in.data(), in.size(), [&](std::string_view s) { out.append(s); });
    return out;
}

} // namespace

static void test_coalescing(void **)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    Sink sink;
    {
        LiveLog log(&loop, 7, 2, 1 << 20, to(sink));
        log.append("first\n"); // after a quiet spell: at once
        assert_int_equal(sink.chunks.size(), 1);
        assert_true(sink.chunks[0].bytes == "first\n" && sink.chunks[0].offset == 0);
        assert_true(sink.chunks[0].job_id == 7 && sink.chunks[0].attempt == 2);
        log.append("second\n"); // within 100 ms: waits for the window's end
        log.append("third\n");
        assert_int_equal(sink.chunks.size(), 1);
        uint64_t t0 = uv_now(&loop);
        run_until(&loop, sink, 2);
        assert_int_equal(sink.chunks.size(), 2);
        assert_true(sink.chunks[1].bytes == "second\nthird\n" && sink.chunks[1].offset == 6);
        assert_true(uv_now(&loop) - t0 <= 150);
        // 16 KiB waiting: sent now, not at the window's end; 100 KiB in frames of 64 KiB.
        log.append(std::string(100 * 1024, 'x'));
        assert_int_equal(sink.chunks.size(), 4);
        assert_int_equal(sink.chunks[2].bytes.size(), LiveLog::kMaxChunk);
        assert_int_equal(sink.chunks[3].offset, 19 + LiveLog::kMaxChunk);
        assert_int_equal(log.sent(), 19 + 100 * 1024);
        assert_true(log.bytes() == "first\nsecond\nthird\n" + std::string(100 * 1024, 'x'));
    }
    uv_run(&loop, UV_RUN_DEFAULT); // the timer's close
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_max_log(void **)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    Sink sink;
    {
        LiveLog log(&loop, 1, 1, 1024, to(sink));
        log.append(std::string(200, 'a'));
        log.append(std::string(100, 'b')); // 56 fit in the streamed quarter (256)
        const std::string held = "\n[kiln: output beyond max_log / 4 (256 bytes) is held back; "
                                 "its last 768 bytes follow when the tests end]\n";
        assert_true(log.bytes() == std::string(200, 'a') + std::string(56, 'b') + held);
        log.append(std::string(1000, 'c'));
        log.append(std::string(500, 'd'));
        assert_int_equal(log.dropped(), 44 + 1000 + 500);
        log.flush(); // what was held back stays back until the tests end
        assert_true(log.bytes() == std::string(200, 'a') + std::string(56, 'b') + held);
        log.finish();
        log.append("late"); // after the end: ignored
        // The head, then how much was dropped, then the last 768 bytes.
        assert_true(log.bytes() == std::string(200, 'a') + std::string(56, 'b') + held +
                                       "[kiln: 776 bytes of log dropped]\n" +
                                       std::string(268, 'c') + std::string(500, 'd'));
        std::string streamed;
        for (const LogChunk &c : sink.chunks)
            streamed += c.bytes;
        assert_true(streamed == log.bytes()); // the stream is the result's log
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_resume_from_acked(void **)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    Sink sink;
    {
        LiveLog log(&loop, 3, 1, 1 << 20, to(sink));
        log.append("one\n");
        log.flush();
        log.acked(4);
        log.append("two\n");
        run_until(&loop, sink, 2);
        assert_int_equal(log.sent(), 8); // sent, not acknowledged: the connection dropped
        sink.connected = false;
        log.append("three\n");
        run_until(&loop, sink, 3, 300); // nothing goes out while disconnected
        assert_int_equal(sink.chunks.size(), 2);
        assert_int_equal(log.sent(), 8);
        sink.connected = true;
        log.acked(100); // never past what was sent
        assert_int_equal(log.acknowledged(), 8);
        log.resume(); // from the acknowledged offset, not from 0 or from `sent`
        assert_int_equal(sink.chunks.size(), 3);
        assert_int_equal(sink.chunks[2].offset, 8);
        assert_true(sink.chunks[2].bytes == "three\n");
        log.acked(4); // a late ack does not go back
        assert_int_equal(log.acknowledged(), 8);
        sink.connected = false;
        log.resume();
        sink.connected = true;
        log.resume();
        assert_int_equal(sink.chunks.back().offset, 8); // everything past the ack, again
        assert_true(sink.chunks.back().bytes == "three\n");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_record_filter(void **)
{
    RecordFilter f;
    assert_true(filtered(f, "ok\n\x1ekiln\tt1\tpassed\nmore\n") == "ok\nmore\n");
    // A record split over reads, and one at the very start of a read.
    assert_true(filtered(f, "a\n\x1ekil") == "a\n");
    assert_true(filtered(f, "n\tt2\tfailed\n") == "");
    assert_true(filtered(f, "\x1ekiln\tt3\n") == "");
    // Not at the start of a line: ordinary output, kept.
    assert_true(filtered(f, "x\x1ey\n") == "x\x1ey\n");
    // A partial line is not held back.
    assert_true(filtered(f, "partial") == "partial");
    assert_true(filtered(f, " line\n") == " line\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coalescing),
        cmocka_unit_test(test_max_log),
        cmocka_unit_test(test_resume_from_acked),
        cmocka_unit_test(test_record_filter),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
