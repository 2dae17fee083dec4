// kiln-bench-log-codec: how stored results compress (log_codec.cpp) on real
// logs.  Each FILE is taken as a job's log, wrapped in a Result as the
// dispatcher stores it, packed and unpacked (repeated for at least half a
// second each); prints bytes in and out, the ratio, and MB/s both ways.
//
//   kiln-bench-log-codec [--level N] FILE...
//
// A real log: the output of this repository's own unit tests,
//   ctest --test-dir build -L unit -V > unit-v.log
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include <kiln/messages.hpp>

#include "log_codec.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// Run `fn` until at least 0.5 s have passed; seconds per call.
template <typename Fn> double time_per_call(Fn &&fn)
{
    int calls = 0;
    auto start = Clock::now();
    double elapsed = 0;
    do {
        fn();
        calls++;
        elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < 0.5);
    return elapsed / calls;
}

} // namespace

int main(int argc, char **argv)
{
    int level = 3; // what the Store uses
    int first = 1;
    if (argc > 2 && std::strcmp(argv[1], "--level") == 0) {
        level = std::atoi(argv[2]);
        first = 3;
    }
    if (first >= argc) {
        std::fprintf(stderr, "usage: kiln-bench-log-codec [--level N] FILE...\n");
        return 2;
    }
    std::printf("%-32s %12s %12s %8s %12s %12s\n", "file (level)", "bytes in", "bytes out",
                "ratio", "pack MB/s", "unpack MB/s");
    for (int i = first; i < argc; i++) {
        std::ifstream in(argv[i], std::ios::binary);
        if (!in) {
            std::fprintf(stderr, "kiln-bench-log-codec: %s: cannot read\n", argv[i]);
            return 1;
        }
        kiln::Result r;
        r.job_id = 1;
        r.commit = std::string(40, 'a');
        r.outcome = KILN_PASSED;
        r.log.assign(std::istreambuf_iterator<char>(in), {});
        std::string frame = kiln::encode_message(r);
        std::string packed = kiln::pack_stored_result(frame, level);
        if (kiln::unpack_stored_result(packed) != frame) {
            std::fprintf(stderr, "kiln-bench-log-codec: %s: round trip differs\n", argv[i]);
            return 1;
        }
        double pack_s = time_per_call([&] { packed = kiln::pack_stored_result(frame, level); });
        double unpack_s = time_per_call([&] { (void)kiln::unpack_stored_result(packed); });
        double mb = static_cast<double>(frame.size()) / 1e6;
        std::string name = std::string(argv[i]);
        if (name.size() > 26)
            name = "..." + name.substr(name.size() - 23);
        name += " (" + std::to_string(level) + ")";
        std::printf("%-32s %12zu %12zu %7.1fx %12.0f %12.0f\n", name.c_str(), frame.size(),
                    packed.size(), static_cast<double>(frame.size()) / packed.size(),
                    mb / pack_s, mb / unpack_s);
    }
    return 0;
}
