// Writes the seed corpus (tests/fuzz/corpus/{messages,frames}) from real
// messages made by kiln::encode_message:
//   build-fuzz/gen_corpus tests/fuzz/corpus
// messages/NAME: one frame payload (no length prefix) per message type;
// frames/NAME: fuzz_frames input (see fuzz_frames.cpp for the layout).
#include "kiln/frame_codec.hpp"
#include "kiln/messages.hpp"

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace {

void write(const std::string &path, const std::string &bytes)
{
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f)
        std::fprintf(stderr, "cannot write %s\n", path.c_str());
}

// fuzz_frames input: max_frame byte, then `stream` in chunks of `chunk`
// bytes (at most 63), popping after each when `pop`; bytewise when `bytewise`.
std::string frames_input(unsigned char max_byte, const std::string &stream, size_t chunk, bool pop,
                         bool bytewise)
{
    std::string out(1, static_cast<char>(max_byte));
    for (size_t i = 0; i < stream.size(); i += chunk) {
        const size_t n = std::min(chunk, stream.size() - i);
        out.push_back(static_cast<char>(n | (pop ? 0x40 : 0) | (bytewise ? 0x80 : 0)));
        out.append(stream, i, n);
    }
    return out;
}

} // namespace

int main(int argc, char **argv)
{
    const std::string dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    const std::string sha1(40, 'a'), sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    kiln::JobSpec spec;
    spec.repo = "kiln";
    spec.url = "/srv/git/kiln.git";
    spec.branch = "main";
    spec.commit = sha1;
    spec.labels = {"linux", "x86_64"};
    spec.shards = 2;
    spec.cancel_superseded = true;

    std::vector<std::pair<std::string, kiln::Message>> msgs;
    msgs.emplace_back("hello", kiln::Hello{1, kiln::kProtocolVersion, "runner", "runner-1", "", ""});
    // The authenticated exchange (auth.hpp): nonces and proofs are 64 hex digits.
    msgs.emplace_back("hello-nonce",
                      kiln::Hello{1, kiln::kProtocolVersion, "dispatcher", "d", sha256, sha256});
    msgs.emplace_back("auth", kiln::Auth{2, sha256});
    msgs.emplace_back("ack", kiln::Ack{2, 17});
    msgs.emplace_back("error", kiln::Error{3, "commit: missing field 'branch'"});
    msgs.emplace_back("commit", kiln::Commit{4, spec});
    msgs.emplace_back("register", kiln::Register{5, "runner-1", 4, {"linux", "gpu"}, ""});
    msgs.emplace_back("heartbeat", kiln::Heartbeat{6, {17, 18}});
    {
        kiln::Assign a;
        a.job_id = 17;
        a.attempt = 2;
        a.spec = spec;
        a.tests = {"test_a", "test_b"};
        a.shard_index = 1;
        a.shard_count = 2;
        msgs.emplace_back("assign", a);
        kiln::Assign l;
        l.job_id = 18;
        l.spec = spec;
        l.spec.commit = sha256;
        l.list = true;
        msgs.emplace_back("assign-list", l);
    }
    {
        kiln::Result r;
        r.id = 7;
        r.job_id = 17;
        r.commit = sha1;
        r.outcome = KILN_FAILED;
        r.tests = {{"test_a", KILN_PASSED, 12, ""}, {"test_b", KILN_FAILED, 40, "assert 1 == 2"}};
        r.log = "running 2 tests\n";
        r.started_unix_ms = 1700000000000;
        r.finished_unix_ms = 1700000000052;
        msgs.emplace_back("result", r);
        kiln::Result e;
        e.id = 8;
        e.job_id = 19;
        e.commit = sha256;
        e.outcome = KILN_ERROR;
        e.error = "cannot run cmake";
        msgs.emplace_back("result-error", e);
    }
    msgs.emplace_back("query", kiln::Query{9, "result", "aaaa"});
    msgs.emplace_back("reply", kiln::Reply{10, std::string("\x81\xa2ok\xc3", 5)});
    msgs.emplace_back("testlist", kiln::TestList{11, 18, 1, sha1, {"test_a", "test_b"}, ""});
    msgs.emplace_back("cancel", kiln::Cancel{17, 2});
    msgs.emplace_back("notify", kiln::Notify{12, "kiln", "main"});
    msgs.emplace_back("log", kiln::LogChunk{13, 18, 1, 4096, std::string("tick 3\n\0\xff", 9)});
    msgs.emplace_back("ack-log", kiln::Ack{13, 18, 4105});

    std::string all;
    for (auto &[name, m] : msgs) {
        const std::string frame = kiln::encode_message(m);
        kiln::Message back;
        std::string error;
        if (!kiln::decode_message(std::string_view(frame).substr(kiln::kFrameHeaderSize), back, error))
            std::fprintf(stderr, "seed %s does not decode: %s\n", name.c_str(), error.c_str());
        write(dir + "/messages/" + name, frame.substr(kiln::kFrameHeaderSize));
        write(dir + "/frames/" + name, frames_input(0xff, frame, 63, true, false));
        all += frame;
    }
    // Many frames in one stream, in odd chunk sizes, some bytewise.
    write(dir + "/frames/stream", frames_input(0xff, all, 37, false, false));
    write(dir + "/frames/stream-bytewise", frames_input(0xff, all.substr(0, 200), 50, true, true));
    // Small max_frame: little frames, one too big, one of zero bytes.
    const std::string small = kiln::encode_frame("abc") + kiln::encode_frame("0123456789");
    write(dir + "/frames/small", frames_input(15, small, 5, true, false));
    write(dir + "/frames/too-big", frames_input(7, small, 3, true, false));
    write(dir + "/frames/zero", frames_input(63, kiln::encode_frame("x") + std::string(4, '\0'), 2, false, false));
    return 0;
}
